"""CIFAR-10 probe runs for the `cifar` profile search (issue 11): one setting per call, logged as JSON lines.

Usage: python scripts/cifar_probe.py --summarize docs/cifar-trials.jsonl runs/probes   (the table of all trials)
       python scripts/cifar_probe.py --tag NAME --model resnet18 --width 16 --epochs 16 --eps 16 \
         --lr 0.2 --lr-schedule onecycle --wd 5e-4 [--attack-eps 8] [--xi 8] [--seed 0]

Each run trains FGSM-AT exactly as Algorithm 1 (eval-mode FGSM, no random start, alpha = eps) with the
kit's own `fit`, checkpointing every epoch (a killed probe resumes), and evaluates on a class-mixed
validation split carved from the *training* images every epoch; after the last epoch it measures the
first --n-test test images once (clean, FGSM, PGD-20, TPAP), and appends everything to the log.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tpap_nb import build_model, get_profile, load_dataset, set_seed  # noqa: E402
from tpap_nb.data import Dataset  # noqa: E402
from tpap_nb.evaluate import evaluate_epoch  # noqa: E402
from tpap_nb.plots import git_commit  # noqa: E402
from tpap_nb.runtime import runtime_for  # noqa: E402
from tpap_nb.train import fit  # noqa: E402


def split_validation(data: Dataset, n_train: int | None, n_val: int, seed: int) -> tuple[Dataset, Dataset]:
    """(train, val): n_val training images held out (seeded, `Dataset.validation_split`), then n_train of the rest.

    `train` keeps the real test split (for the final report), `val` has the held-out images as its test split.
    """
    train, val = data.validation_split(n_val, seed=seed)
    if n_train is not None and n_train < len(train.y_train):
        train = train.subset(n_train=n_train, seed=seed)
        val = Dataset(val.name, train.x_train, train.y_train, val.x_test, val.y_test, val.classes, val.augment,
                      val.source)
    return train, val


def overfits(h: dict) -> bool:
    """Issue 18's target on the validation split: PGD-20 <= 10 % while FGSM >= clean - 10 points."""
    return h["test_pgd20"] <= 0.10 and h["test_fgsm"] >= h["test_clean"] - 0.10


def collapse(evals: list[dict]) -> str:
    """Whether the run ends overfitted (and since which epoch, without a break), and its transient collapses."""
    hit = [h["epoch"] for h in evals if overfits(h)]
    if not hit:
        return "no"
    streak = []
    for h in reversed(evals):
        if not overfits(h):
            break
        streak.append(h["epoch"])
    transient = [e for e in hit if e not in streak]
    text = f"**yes, from epoch {streak[-1]}**" if streak else "no"
    if transient:
        text += f"; transient at epoch{'s' if len(transient) > 1 else ''} {', '.join(map(str, transient))}"
    return text


def _pct(v) -> str:
    return f"{100 * v:.1f}"


def trial_row(tag: str, args: dict, history: list[dict], test: dict | None, status: str) -> str:
    import statistics

    evals = [h for h in history if "test_clean" in h]
    last = evals[-1] if evals else {}
    sec = statistics.median(h["train_seconds"] for h in history) if history else float("nan")
    sched = (f"one-cycle to {args['lr']}" if args.get("lr_schedule") == "onecycle"
             else f"{args['lr']}, x0.1 at {args.get('milestones') or '-'}")
    images = args.get("n_train_used") or args.get("n_train") or 50000 - int(args.get("n_val") or 0)
    cells = [tag, f"{args['model']} w{args['width']}", str(images),
             f"{args['eps']:g} / {args['attack_eps']:g}", f"{sched}, wd {args['wd']:g}, bs {args['bs']}"
             + (", clean BN" if args.get("clean_bn") else ""),
             f"{len(history)} of {args['epochs']}", f"{sec:.0f}"]
    if last:
        cells += [" / ".join(_pct(last[f"train_{k}"]) for k in ("clean", "fgsm", "pgd20")),
                  " / ".join(_pct(last[f"test_{k}"]) for k in ("clean", "fgsm", "pgd20")),
                  " / ".join(_pct(last[f"tpap_{k}"]) for k in ("clean", "pgd20"))]
    else:
        cells += ["-", "-", "-"]
    cells.append(" / ".join(_pct(test[k]) for k in ("test_clean", "test_fgsm", "test_pgd20", "tpap_clean",
                                                     "tpap_pgd20")) if test else "-")
    cells += [collapse(evals), status]
    return "| " + " | ".join(cells) + " |"


HEAD = ("| trial (commit) | network | train images | train / attack eps (/255) | schedule | epochs | s/epoch | "
        "last epoch train clean / FGSM / PGD-20 | val clean / FGSM / PGD-20 | TPAP val clean / PGD-20 | "
        "test (1,000) clean / FGSM / PGD-20 / TPAP clean / TPAP PGD-20 | overfits FGSM on val | status |\n|"
        + "---|" * 13)


def summarize(log: Path, runs: Path) -> str:
    """The markdown table of every trial: finished ones from the log, stopped ones from their checkpoints."""
    rows, seen = [], set()
    for line in log.read_text().splitlines() if log.exists() else []:
        r = json.loads(line)
        key = f"{r['tag']}-s{r['args']['seed']}"
        seen.add(key)
        args = r["args"] | {"n_train_used": r.get("n_train_used", "")}
        rows.append(trial_row(f"{key} ({r.get('commit', '-')})", args, r["history"], r.get("test"), "done"))
    for ckpt in sorted(Path(runs).glob("*.pt")):
        if ckpt.stem in seen:
            continue
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        m = state["meta"]
        args = {"model": m["model"], "width": m["width"], "n_train": m["n_train"], "eps": round(m["eps"] * 255, 2),
                "attack_eps": round((m.get("attack_eps") or m["eps"]) * 255, 2), "lr": m["lr"],
                "lr_schedule": m.get("lr_schedule"), "milestones": m["milestones"], "wd": m["weight_decay"],
                "bs": m["batch_size"], "clean_bn": m.get("clean_bn_forward"), "epochs": m["epochs"],
                "n_val": m.get("n_val")}
        rows.append(trial_row(ckpt.stem, args, state["history"], None, "stopped (resumable)"))
    return "\n".join([HEAD, *rows])


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--summarize":
        print(summarize(Path(sys.argv[2]), Path(sys.argv[3])))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--tag", required=True)
    p.add_argument("--data", default="cifar10", help="dataset name (cifar10: the pickles or the JPEG copy)")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--n-train", type=int, default=None, help="default: every training image not held out")
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-eval", type=int, default=None,
                   help="validation (and training) images measured every evaluated epoch (default: all of --n-val)")
    p.add_argument("--n-test", type=int, default=1000, help="test images measured once, after the last epoch")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--milestones", default="")
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--lr-schedule", default="onecycle", choices=("multistep", "onecycle"))
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--eps", type=float, default=8, help="training eps in 1/255 units")
    p.add_argument("--attack-eps", type=float, default=8, help="test attacks' eps in 1/255 units")
    p.add_argument("--xi", type=float, default=8, help="in 1/255 units")
    p.add_argument("--clean-bn", action="store_true", help="the authors' clean BatchNorm forward")
    p.add_argument("--precision", default="auto")
    p.add_argument("--attack-precision", default="auto")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default=str(Path(__file__).resolve().parent.parent / "runs" / "probes"))
    p.add_argument("--log", default=str(Path(__file__).resolve().parent.parent / "docs" / "cifar-trials.jsonl"))
    a = p.parse_args(argv)
    t0 = time.time()
    full = load_dataset(a.data)
    train, val = split_validation(full, a.n_train, a.n_val, a.seed)
    # Every setting a trial varies, on top of the `cifar` profile (its attack and bench settings are not used here).
    # n_train / n_val as the profile means them (runs.run_data: n_val held out with the seed, then n_train drawn), so
    # a trial with the profile's settings is the profile's own run (its checkpoint can be exported, tpap_nb.runs).
    cfg = get_profile("cifar") | dict(
        recipe="fgsm", eps=a.eps / 255, attack_eps=a.attack_eps / 255, xi=a.xi / 255, epochs=a.epochs,
        batch_size=a.bs, lr=a.lr, milestones=tuple(int(m) for m in a.milestones.split(",") if m),
        lr_schedule=a.lr_schedule, momentum=0.9, weight_decay=a.wd, n_eval=a.n_eval or a.n_val,
        eval_every=a.eval_every, seed=a.seed, dataset=val.name, model=a.model, width=a.width,
        n_train=a.n_train, n_val=a.n_val, clean_bn_forward=a.clean_bn, precision=a.precision,
        attack_precision=a.attack_precision, profile="probe", status=None)
    rt = runtime_for(cfg)
    print(f"{a.tag}: {len(train.y_train)} training images, {a.n_val} validation, runtime {rt.describe()}", flush=True)
    set_seed(a.seed)
    model = build_model(a.model, val.num_classes, val.in_channels, a.width)
    ckpt = Path(a.runs) / f"{a.tag}-s{a.seed}.pt"
    history = fit(model, val, cfg, ckpt=ckpt, progress=True, evaluate=evaluate_epoch)
    t1 = time.time()
    with rt.scope():  # the final measurement: all validation images, then the first n_test test images
        final_val = evaluate_epoch(model, val, cfg | {"n_eval": a.n_val})
        test = evaluate_epoch(model, train, cfg | {"n_eval": a.n_test})
    test = {k: v for k, v in test.items() if not k.startswith("train_")}
    final_val = {k: v for k, v in final_val.items() if not k.startswith("train_")}
    print(json.dumps({"tag": a.tag, "test": test, "test_seconds": time.time() - t1}), flush=True)
    log = Path(a.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps({"tag": a.tag, "args": vars(a), "n_train_used": len(train.y_train), "runtime": rt.record(),
                            "commit": git_commit(), "history": history, "val": final_val, "test": test,
                            "n_test": a.n_test, "wall_seconds": time.time() - t0}) + "\n")


if __name__ == "__main__":
    main()
