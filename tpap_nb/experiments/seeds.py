"""Seed checks: how robust a profile's result is to the seed (how the `quick` setting was chosen)."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..attacks.base import fgsm, pgd
from ..config import get_device, set_seed
from ..data import load_dataset
from ..evaluate import robust_accuracy
from ..models import build_model
from ..train import fit


def seed_check(cfg: dict, seeds=(0, 1, 2), xi_fractions=(0.5, 0.6, 0.7, 0.8, 1.0), progress: bool = True) -> list[dict]:
    """FGSM-RO runs per seed, bare and TPAP at several xi/eps, on cfg['device'].

    One record per (seed, xi): bare clean/FGSM/PGD-20 and TPAP clean/PGD-20 on the first n_eval
    test examples (PGD-20 with step eps/4, random start).
    """
    device = get_device(cfg.get("device") or "auto")
    data = load_dataset(cfg["dataset"]).to(device)  # the whole training split, as when `quick` was chosen
    x, y = data.test_batch(cfg["n_eval"])
    eps, out = cfg["eps"], []
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        set_seed(seed)
        model = build_model(cfg["model"], data.num_classes, data.in_channels, cfg["width"]).to(device)
        history = fit(model, data, cfg | {"seed": seed, "eval_every": 0}, progress=False)
        torch.manual_seed(0)
        x_pgd = pgd(model, x, y, eps, eps / 4, 20)
        bare = {k: 100 * robust_accuracy(model, a, y)["bare"]
                for k, a in {"clean": x, "fgsm": fgsm(model, x, y, eps), "pgd20": x_pgd}.items()}
        for f in xi_fractions:
            tpap = {k: 100 * robust_accuracy(model, a, y, xi=f * eps)["tpap"] for k, a in
                    {"clean": x, "pgd20": x_pgd}.items()}
            out.append({"seed": seed, "xi/eps": f, "train_seconds": sum(h["train_seconds"] for h in history),
                        "device": str(device),
                        **{f"bare_{k}": v for k, v in bare.items()}, **{f"tpap_{k}": v for k, v in tpap.items()}})
    return out
