"""Seed checks: how robust a profile's result is to the seed, and the choice of xi on a validation split.

`quick`'s xi was chosen this way (docs/quick-profile.md): FGSM-RO runs on the training split minus
a held-out validation set, every candidate xi measured on the validation images, `choose_xi`'s rule
applied. The test images are never looked at.
"""
from __future__ import annotations

from collections.abc import Mapping

from tqdm.auto import tqdm

from ..attacks.base import fgsm
from ..config import get_device, set_seed
from ..data import load_dataset
from ..evaluate import pgd20_attack, robust_accuracy
from ..models import build_model
from ..plots import git_commit
from ..runtime import Runtime, runtime_for
from ..train import fit


def seed_check(cfg: Mapping, seeds=(0, 1, 2), xi_fractions=(0.5, 0.6, 0.7, 0.8, 1.0), progress: bool = True,
               split: str = "validation", n_val: int | None = None, val_seed: int = 0,
               also_test: bool = False) -> list[dict]:
    """FGSM-RO runs per seed, bare and TPAP at several xi / eps, on cfg['device'].

    split="validation" (the default, for choosing settings): n_val training images (default
    cfg['n_val'], else cfg['n_eval']) are held out (`Dataset.validation_split(n_val, val_seed)`), the network trains
    on the rest and is measured on them. split="test": trains on the whole training split and
    measures the first n_eval test images (for reporting a setting already chosen).
    also_test=True (with split="validation"): the same networks, which saw neither the validation nor
    the test images, are also measured on the first n_eval test images (records with split "test"
    and held_out n_val): xi is chosen on the validation records and reported on the test ones
    without training every seed twice. cfg['n_train'] (if set) draws that many training images per
    seed (`Dataset.subset`, seeded with the run's seed, as `get_or_train` does).
    One record per (seed, xi): bare clean/FGSM/PGD-20 and TPAP clean/PGD-20 (PGD-20: the kit's
    one, `evaluate.pgd20_attack`, seeded with the run's seed), attacks at the attack eps; xi is given as
    fractions of the attack eps (the training eps may be larger: `config.attack_eps`).
    """
    if split not in ("validation", "test"):
        raise ValueError(f"split={split!r}: use 'validation' (to choose a setting) or 'test' (to report one).")
    device = get_device(cfg.get("device") or "auto")
    if also_test and split != "validation":
        raise ValueError("also_test=True measures the test images beside a validation split: use split='validation'.")
    full = load_dataset(cfg["dataset"]).to(device)
    n = n_val or cfg["n_val"] or cfg["n_eval"]
    data = full.validation_split(n, val_seed)[1] if split == "validation" else full
    sets = {split: data.test_batch(n if split == "validation" else cfg["n_eval"])}
    if also_test:
        sets["test"] = full.test_batch(cfg["n_eval"])
    out = []
    rt = runtime_for(cfg, device)
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        set_seed(seed)
        train = data.subset(n_train=cfg["n_train"], seed=seed) if cfg.get("n_train") else data
        model = build_model(cfg["model"], data.num_classes, data.in_channels, cfg["width"]).to(device)
        history = fit(model, train, cfg | {"seed": seed, "eval_every": 0}, progress=progress)
        run = {"n_train": len(train.y_train), "held_out": n if split == "validation" else 0,
               "train_seconds": sum(h["train_seconds"] for h in history)}
        out += measure(model, sets, cfg | {"seed": seed}, xi_fractions, run, rt)
    return out


def measure(model, sets: Mapping, cfg: Mapping, xi_fractions, run: Mapping, rt: Runtime) -> list[dict]:
    """One record per (split, xi) for a trained network: bare clean/FGSM/PGD-20 and TPAP clean/PGD-20 in percent.

    sets: {split name: (x, y)}; PGD-20 is the kit's one (`evaluate.pgd20_attack`, seeded with cfg['seed']), the
    attacks at cfg['attack_eps'], xi as fractions of it; `run` (the network's training facts) joins each record.
    """
    eps, out = cfg["attack_eps"], []
    for name, (x, y) in sets.items():
        with rt.attacking():
            x_pgd = pgd20_attack(model, cfg)(x, y)
            x_fgsm = fgsm(model, x, y, eps)
        bare = {k: 100 * robust_accuracy(model, a, y, runtime=rt)["bare"]
                for k, a in {"clean": x, "fgsm": x_fgsm, "pgd20": x_pgd}.items()}
        for f in xi_fractions:
            tpap = {k: 100 * robust_accuracy(model, a, y, xi=f * eps, runtime=rt)["tpap"] for k, a in
                    {"clean": x, "pgd20": x_pgd}.items()}
            out.append({"seed": cfg["seed"], "xi/eps": f, "xi": f * eps, "split": name, "n": len(y),
                        "train_eps": cfg["eps"], "attack_eps": eps, **run,
                        "profile": cfg.get("profile"), "clean_bn_forward": bool(cfg.get("clean_bn_forward")),
                        "device": str(rt.device), "runtime": rt.describe(), "precision": rt.precision,
                        "attack_precision": rt.attack_precision, "threads": rt.threads, "commit": git_commit(),
                        **{f"bare_{k}": v for k, v in bare.items()},
                        **{f"tpap_{k}": v for k, v in tpap.items()}})
    return out


def checkpoint_check(paths, cfg: Mapping, n_val: int, n_test: int, xi_fractions=(0.5, 0.75, 1.0),
                     progress: bool = True) -> list[dict]:
    """`seed_check`'s records for networks already trained on a validation split (scripts/cifar_probe.py's
    checkpoints): each checkpoint's held-out images (`Dataset.validation_split(n_val, seed)` with its own seed,
    as the probe drew them) and the first n_test test images, neither of which it trained on.

    cfg gives the attacks (attack eps, PGD-20) and the profile name recorded; the training settings (eps, seed,
    clean BatchNorm forward) come from each checkpoint's metadata, which must match cfg's data set.
    """
    from pathlib import Path

    from ..train import read_checkpoint

    device = get_device(cfg.get("device") or "auto")
    full = load_dataset(cfg["dataset"]).to(device)
    rt, out = runtime_for(cfg, device), []
    for path in tqdm([Path(p) for p in paths], desc="checkpoints", disable=not progress):
        state = read_checkpoint(path)
        meta, history = state["meta"], state["history"]
        if meta["dataset"] != full.name:
            raise ValueError(f"{path} was trained on {meta['dataset']}, not {full.name} (cfg's data set).")
        if len(history) < meta["epochs"]:
            raise ValueError(f"{path} has {len(history)} of {meta['epochs']} epochs: finish its training first.")
        val = full.validation_split(n_val, seed=meta["seed"])[1]
        model = build_model(meta["model"], full.num_classes, full.in_channels, meta["width"]).to(device)
        model.load_state_dict(state["model"])
        model.eval()
        run_cfg = cfg | {"seed": meta["seed"], "eps": meta["eps"],
                         "clean_bn_forward": bool(meta.get("clean_bn_forward"))}
        sets = {"validation": val.test_batch(n_val), "test": full.test_batch(n_test)}
        run = {"n_train": meta["n_train"], "held_out": n_val, "checkpoint": path.name, "epochs": meta["epochs"],
               "train_seconds": sum(h["train_seconds"] for h in history),
               "train_precision": (meta.get("runtime") or {}).get("precision")}
        out += measure(model, sets, run_cfg, xi_fractions, run, rt)
    return out


def choose_xi(records: list[dict], max_clean_drop: float = 5.0) -> dict:
    """The rule that picks xi from `seed_check` records (of the validation split, never the test split).

    Among the xi / eps whose TPAP clean accuracy is within `max_clean_drop` points of the bare
    model's on every seed, the one with the highest mean TPAP PGD-20 accuracy (ties: the smaller
    xi). Returns {'xi/eps', 'xi', 'mean_tpap_pgd20', 'mean_clean_drop', 'split', 'candidates'}.
    """
    if not records:
        raise ValueError("No seed_check records to choose from.")
    if any(r.get("split") == "test" for r in records):
        raise ValueError("These records were measured on the test split; choose xi on seed_check(split='validation').")
    rows = []
    for f in sorted({r["xi/eps"] for r in records}):
        rs = [r for r in records if r["xi/eps"] == f]
        drops = [r["bare_clean"] - r["tpap_clean"] for r in rs]
        rows.append({"xi/eps": f, "xi": rs[0]["xi"], "mean_tpap_pgd20": sum(r["tpap_pgd20"] for r in rs) / len(rs),
                     "mean_clean_drop": sum(drops) / len(drops), "max_clean_drop": max(drops),
                     "ok": max(drops) <= max_clean_drop})
    ok = [r for r in rows if r["ok"]]
    if not ok:
        raise ValueError(f"No xi keeps clean accuracy within {max_clean_drop} points on every seed: {rows}")
    best = max(ok, key=lambda r: (round(r["mean_tpap_pgd20"], 6), -r["xi/eps"]))
    return {k: best[k] for k in ("xi/eps", "xi", "mean_tpap_pgd20", "mean_clean_drop")} | {
        "split": records[0].get("split", "validation"), "candidates": rows}


def main(argv=None) -> None:
    """python -m tpap_nb.experiments.seeds --profile cifar --split validation --out FILE.jsonl

    One seed at a time, each seed's records appended to FILE as soon as it is done (a stopped run
    resumes with the seeds not yet in FILE); then the records as a table and, on the validation split,
    `choose_xi`'s pick (or why no xi meets its rule)."""
    import argparse
    import json
    from pathlib import Path

    import pandas as pd

    from ..config import get_profile

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--split", default="validation", choices=("validation", "test"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--xi-fractions", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 1.0])
    ap.add_argument("--also-test", action="store_true",
                    help="with --split validation: measure the same networks on the test images too")
    ap.add_argument("--precision", default=None, help="auto | float32 | bf16 (default: the profile's, auto)")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines file (appended to)")
    ap.add_argument("--checkpoints", type=Path, nargs="+", default=None,
                    help="measure these validation-split checkpoints (scripts/cifar_probe.py) instead of training")
    ap.add_argument("--n-val", type=int, default=1000, help="with --checkpoints: the held-out images per run")
    ap.add_argument("--n-test", type=int, default=1000, help="with --checkpoints: the first test images")
    a = ap.parse_args(argv)
    cfg = get_profile(a.profile, precision=a.precision)
    if a.checkpoints:
        rows = checkpoint_check(a.checkpoints, cfg, a.n_val, a.n_test, tuple(a.xi_fractions))
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with a.out.open("a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        val = [r for r in rows if r["split"] == "validation"]
        print(pd.DataFrame(rows).drop(columns=["device", "runtime", "commit"], errors="ignore").round(1)
              .to_string(index=False))
        try:
            print(choose_xi(val))
        except ValueError as err:
            print(f"choose_xi: {err}")
        return
    precision = runtime_for(cfg).precision
    done = set()
    if a.out.exists():
        done = {(r["seed"], r["split"]) for r in map(json.loads, a.out.read_text().splitlines())
                if r.get("profile") == a.profile and r.get("precision", "float32") == precision}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        if (seed, a.split) in done:
            print(f"seed {seed}: already in {a.out}")
            continue
        rows = seed_check(cfg, seeds=(seed,), xi_fractions=tuple(a.xi_fractions), split=a.split,
                          also_test=a.also_test)
        with a.out.open("a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    records = [r for r in map(json.loads, a.out.read_text().splitlines()) if r.get("profile") == a.profile
               and r.get("precision", "float32") == precision]
    print(pd.DataFrame(records).drop(columns=["device", "runtime"], errors="ignore").round(1).to_string(index=False))
    records = [r for r in records if r["split"] == a.split]
    if a.split == "validation":
        try:
            print(choose_xi(records))
        except ValueError as err:
            print(f"choose_xi: {err}")


if __name__ == "__main__":
    main()
