"""Do reported robust accuracies depend on the attack's precision? PGD-20 and AutoAttack in float32 and in bf16.

    python -m tpap_nb.experiments.precision --checkpoint runs/probes/NAME.pt --n 1000 \
        --out docs/measurements/attack-precision.jsonl

One trained network (a checkpoint of `fit`), the first n test images of its data set, each attack of
`ATTACKS` crafted on the bare network and then purified (the paper's protocol, Sec. 4.1.3), once per
precision: the whole chain (attack, purification, classification) in float32, then in bf16 autocast with
channels_last inputs (`tpap_nb.runtime`). One record per (attack, precision): bare and TPAP accuracy, and
per pair of precisions the images whose verdict differs (the two runs see the same images, so the
difference of two accuracies is decided by these discordant images, McNemar's view). The kit's rule
(issue 18): if an accuracy differs by more than one point, attacks and reported numbers run in float32
(`runtime.ATTACK_PRECISION_AUTO`).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from ..attacks.registry import attack_label, build_attack
from ..checkpoints import load_model
from ..config import get_device
from ..data import load_dataset
from ..evaluate import attack_overrides, robust_predictions
from ..plots import git_commit
from ..runtime import resolve

ATTACKS = ("clean", "pgd20", "aa")
PRECISIONS = ("float32", "bf16")
LIMIT_POINTS = 1.0


def measure(model, x, y, cfg: Mapping, attacks=ATTACKS, precisions=PRECISIONS, device=None) -> list[dict]:
    """One record per (attack, precision) on (x, y); per-image verdicts kept under '_bare' / '_tpap'."""
    device = device or x.device
    out = []
    for name in attacks:
        for precision in precisions:
            rt = resolve(device, precision=precision, attack_precision=precision,
                         memory_format="channels_last" if precision == "bf16" else "contiguous")
            over = attack_overrides(name, cfg) if name != "clean" else {}
            attack = None if name == "clean" else build_attack(name, model, **over)
            t0 = time.perf_counter()
            res = robust_predictions(model, x, y, attack, xi=cfg["xi"], runtime=rt)
            out.append({"attack": name, "precision": precision, "n": len(y),
                        "label": "clean" if attack is None else attack_label(name, attack.settings, len(y)),
                        "runtime": rt.describe(), "acc_bare": 100 * res["bare"].float().mean().item(),
                        "acc_tpap": 100 * res["tpap"].float().mean().item(), "seconds": time.perf_counter() - t0,
                        "_bare": res["bare"].cpu(), "_tpap": res["tpap"].cpu()})
    return out


def compare(records: list[dict], limit: float = LIMIT_POINTS) -> list[dict]:
    """Per attack: accuracy differences bf16 - float32 (points), the discordant images, and whether within limit."""
    rows = []
    for name in dict.fromkeys(r["attack"] for r in records):
        by = {r["precision"]: r for r in records if r["attack"] == name}
        if not {"float32", "bf16"} <= set(by):
            continue
        a, b = by["float32"], by["bf16"]
        row = {"attack": name, "n": a["n"]}
        for key in ("bare", "tpap"):
            row[f"diff_{key}"] = b[f"acc_{key}"] - a[f"acc_{key}"]
            row[f"discordant_{key}"] = int((a[f"_{key}"] != b[f"_{key}"]).sum())
        row["within_limit"] = all(abs(row[f"diff_{k}"]) <= limit for k in ("bare", "tpap"))
        rows.append(row)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tpap_nb.experiments.precision", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", default=None, help="default: the checkpoint's")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--xi", type=float, default=8, help="in 1/255 units")
    p.add_argument("--eps", type=float, default=8, help="attack eps in 1/255 units")
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON lines file, appended to")
    a = p.parse_args(argv)
    dev = get_device(a.device)
    model, _ = load_model(a.checkpoint, device=dev)
    meta = model.meta
    data = load_dataset(a.dataset or meta["dataset"]).to(dev)
    x, y = data.test_batch(a.n)
    cfg = {"eps": a.eps / 255, "attack_eps": a.eps / 255, "xi": a.xi / 255, "seed": 0}
    records = measure(model, x, y, cfg, tuple(s for s in a.attacks.split(",") if s), device=dev)
    rows = compare(records)
    common = {"checkpoint": Path(a.checkpoint).name, "dataset": meta["dataset"], "model": meta["model"],
              "width": meta.get("width"), "train_eps": meta.get("eps"), "attack_eps": cfg["attack_eps"],
              "xi": cfg["xi"], "commit": git_commit(), "threads": torch.get_num_threads()}
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} | common for r in records]
    for r in clean:
        print(f"{r['attack']:>6} {r['precision']:>8}: bare {r['acc_bare']:5.1f}  TPAP {r['acc_tpap']:5.1f}  "
              f"({r['seconds']:.0f} s, {r['runtime']})")
    for r in rows:
        print(f"{r['attack']:>6} bf16 - float32: bare {r['diff_bare']:+.1f} ({r['discordant_bare']} images differ), "
              f"TPAP {r['diff_tpap']:+.1f} ({r['discordant_tpap']}); within {LIMIT_POINTS} point: {r['within_limit']}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "a") as f:
            for r in clean:
                f.write(json.dumps({"kind": "accuracy"} | r) + "\n")
            for r in rows:
                f.write(json.dumps({"kind": "comparison"} | r | common) + "\n")
    return {"records": clean, "comparison": rows}


if __name__ == "__main__":
    main()
