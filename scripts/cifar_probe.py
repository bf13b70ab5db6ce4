"""CIFAR-10 probe runs for the `cifar` profile search (issue 11): one setting per call, logged as JSON lines.

Usage: python scripts/cifar_probe.py --summarize RUNS_DIR OUT.jsonl   (table of all probes so far)
       python scripts/cifar_probe.py --tag NAME --data DIR --model small_cnn --width 64 --n-train 10000 \
         --epochs 40 --milestones 30 --lr 0.05 --eps 8 [--xi 8] [--seed 0] --log docs/probes/cifar.jsonl

Each run trains FGSM-AT exactly as Algorithm 1 (eval-mode FGSM, no random start, alpha = eps) with the
kit's own `fit`, checkpointing every epoch (a killed probe resumes), and evaluates on a class-mixed
validation split carved from the *training* images (never the test images the README reports).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tpap_nb import build_model, load_dataset, set_seed  # noqa: E402
from tpap_nb.data import Dataset  # noqa: E402
from tpap_nb.runtime import runtime_for  # noqa: E402
from tpap_nb.train import evaluate_epoch, fit  # noqa: E402


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
    """Issue 11's target on the validation split: PGD-20 <= 10 % while FGSM >= clean - 10 points."""
    return h["test_pgd20"] <= 0.10 and h["test_fgsm"] >= h["test_clean"] - 0.10


def first_overfit(evals: list[dict]) -> str:
    hit = [h["epoch"] for h in evals if overfits(h)]
    return f"yes, epoch {hit[0]}" if hit else "no"


def summarize(folder: Path, out: Path) -> str:
    """Per-epoch records of every probe checkpoint in `folder` -> JSON lines in `out`; a markdown table back."""
    import statistics

    rows, lines = [], []
    for ckpt in sorted(Path(folder).glob("*.pt")):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        m, hist = state["meta"], state["history"]
        evals = [h for h in hist if "test_clean" in h]
        for h in evals:
            rows.append({"tag": ckpt.stem, **{k: m.get(k) for k in ("model", "width", "n_train", "eps", "epochs", "lr",
                                                                   "milestones", "batch_size", "weight_decay", "seed")},
                         **h})
        if not evals:
            continue
        last = evals[-1]
        sec = statistics.median(h["train_seconds"] for h in hist)
        lines.append(
            f"| {ckpt.stem} | {m['model']} w{m['width']} | {m['n_train']} | {m['eps'] * 255:.0f}/255 | "
            f"{m['lr']}, x0.1 at {','.join(map(str, m['milestones'])) or '-'} | "
            f"{len(hist)} of {m['epochs']} | {sec:.0f} | "
            f"{100 * last['train_clean']:.0f} / {100 * last['train_fgsm']:.0f} / {100 * last['train_pgd20']:.0f} | "
            f"{100 * last['test_clean']:.0f} / {100 * last['test_fgsm']:.0f} / {100 * last['test_pgd20']:.0f} | "
            f"{100 * last['tpap_clean']:.0f} / {100 * last['tpap_pgd20']:.0f} | "
            f"{first_overfit(evals)} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    head = ("| run | network | train images | eps = xi | lr, drop | epochs run | s/epoch | "
            "train clean / FGSM / PGD-20 | val clean / FGSM / PGD-20 | TPAP val clean / PGD-20 | overfits FGSM |\n|"
            + "---|" * 11)
    return "\n".join([head, *lines])


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
    cfg = dict(recipe="fgsm", eps=a.eps / 255, attack_eps=a.attack_eps / 255, xi=a.xi / 255, epochs=a.epochs,
               batch_size=a.bs, lr=a.lr, milestones=tuple(int(m) for m in a.milestones.split(",") if m),
               lr_schedule=a.lr_schedule, momentum=0.9, weight_decay=a.wd, n_eval=a.n_val, eval_every=a.eval_every,
               seed=a.seed, dataset=val.name, model=a.model, width=a.width, n_train=len(train.y_train),
               clean_bn_forward=a.clean_bn, precision=a.precision, attack_precision=a.attack_precision,
               profile="probe")
    rt = runtime_for(cfg)
    print(f"{a.tag}: {len(train.y_train)} training images, {a.n_val} validation, runtime {rt.describe()}", flush=True)
    set_seed(a.seed)
    model = build_model(a.model, val.num_classes, val.in_channels, a.width)
    ckpt = Path(a.runs) / f"{a.tag}-s{a.seed}.pt"
    history = fit(model, val, cfg, ckpt=ckpt, progress=True)
    t1 = time.time()
    test = evaluate_epoch(model, train, cfg | {"n_eval": a.n_test})
    test = {k: v for k, v in test.items() if not k.startswith("train_")}
    print(json.dumps({"tag": a.tag, "test": test, "test_seconds": time.time() - t1}), flush=True)
    log = Path(a.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps({"tag": a.tag, "args": vars(a), "runtime": rt.record(), "history": history,
                            "test": test, "n_test": a.n_test, "wall_seconds": time.time() - t0}) + "\n")


if __name__ == "__main__":
    main()
