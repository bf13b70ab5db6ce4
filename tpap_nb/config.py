"""Profiles, paths, seeding and device: the one place settings come from."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

# A profile fixes every value a notebook needs; single parameters override it.
# `paper` is the authors' setting (Sec. 4.1.2, Tab. 2); `quick` is the CPU setting that
# shows the paper's phenomenon in minutes (see README "The quick profile");
# `smoke` only proves that every cell runs.
PROFILES: dict[str, dict] = {
    "smoke": dict(
        dataset="digits", model="small_cnn", width=8, epochs=3, batch_size=64, lr=0.05,
        milestones=(2,), momentum=0.9, weight_decay=1e-3, eps=0.3, xi=0.15,
        n_train=512, n_eval=64, eval_every=1, device="cpu", seed=0,
        attack_scale=0.1, eval_pgd_alpha=None, pgd_alpha=0.075, pgd_steps=10, beta=6.0,
        n_attack=32, n_adaptive=32, baselines="pgd,trades,mart,fgsm_trades,fgsm_mart", sweep_epochs=2, amp=None,
        channels_last=False, compile=False,
    ),
    "quick": dict(
        dataset="digits", model="small_cnn", width=32, epochs=60, batch_size=64, lr=0.05,
        milestones=(55,), momentum=0.9, weight_decay=1e-3, eps=0.3, xi=0.21,
        n_train=None, n_eval=360, eval_every=5, device="auto", seed=0,
        attack_scale=0.5, eval_pgd_alpha=None, pgd_alpha=0.075, pgd_steps=5, beta=6.0,
        n_attack=200, n_adaptive=100, baselines="pgd", sweep_epochs=15, amp=None, channels_last=False, compile=False,
    ),
    "paper": dict(
        dataset="cifar10", model="resnet18", width=64, epochs=150, batch_size=128, lr=0.01,
        milestones=(75, 90, 140), momentum=0.9, weight_decay=1e-3, eps=8 / 255, xi=8 / 255,
        n_train=None, n_eval=1000, eval_every=1, device="auto", seed=0,
        attack_scale=1.0, eval_pgd_alpha=0.003, pgd_alpha=0.007, pgd_steps=10, beta=6.0,
        n_attack=10000, n_adaptive=1000, baselines="pgd,trades,mart,fgsm_trades,fgsm_mart",
        sweep_epochs=150, amp=None,
        channels_last=False, compile=False,
    ),
}
# eval_pgd_alpha: PGD-20 step of the per-epoch evaluation (None: eps / 4; the authors used 0.003).
# pgd_alpha, pgd_steps, beta: the baselines' training attack (PGD-AT/TRADES/MART: PGD-10, step
# 0.007 for eps 8/255 in the authors' script; eps / 4 on the CPU profiles) and TRADES/MART beta.
# n_attack: test examples in the attack benchmark; n_adaptive: in the adaptive-attack table (07);
# baselines: the recipes notebook 03 trains beside TPAP; sweep_epochs: epochs of each short run
# in the Fig. 5 sweep. To fit a 2-core CPU in 20 minutes, `quick` trains its baselines with
# PGD-5 (paper: PGD-10), trains only PGD-AT as a baseline, runs every attack at half its
# iterations (attack_scale 0.5) and 100 examples in 07. Its schedule (lr
# 0.05, x0.1 at epoch 55 of 60) and xi = 0.7 eps were measured on 3 seeds (README).
# amp ('bf16' or None), channels_last and compile (False, True or a torch.compile backend): the
# GPU fast path of training (train.fit).


# Sec. 4.1.2: the paper's batch size depends on model and data set, and the authors' CIFAR-100
# script trains with eps 12/255; `paper` applies these unless batch_size / eps are overridden.
PAPER_BATCH = {("resnet18", "tiny-imagenet"): 64, ("wrn34_10", "cifar10"): 64, ("wrn34_10", "cifar100"): 64,
               ("wrn34_10", "svhn"): 64, ("wrn34_10", "tiny-imagenet"): 32}
PAPER_TRAIN_EPS = {"cifar100": 12 / 255}


def get_profile(name: str = "quick", **overrides) -> dict:
    """The full set of values of profile `name`, with any non-None overrides applied."""
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; choose one of {sorted(PROFILES)}.")
    cfg = dict(PROFILES[name], profile=name)
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"Unknown setting(s) {sorted(unknown)}; a profile has {sorted(cfg)}.")
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg.update(given)
    if name == "paper":
        if "batch_size" not in given:
            cfg["batch_size"] = PAPER_BATCH.get((cfg["model"], cfg["dataset"]), 128)
        if "eps" not in given:
            cfg["eps"] = PAPER_TRAIN_EPS.get(cfg["dataset"], cfg["eps"])
    if isinstance(cfg["milestones"], list):
        cfg["milestones"] = tuple(cfg["milestones"])
    return cfg


def _env_path(var: str, default: Path) -> Path:
    return Path(os.environ.get(var) or default).expanduser()


def data_root() -> Path:
    """All data sets live here: $TPAP_DATA, else ./data in the repository."""
    return _env_path("TPAP_DATA", REPO / "data")


def runs_root() -> Path:
    """Checkpoints and result records: $TPAP_RUNS, else ./runs in the repository."""
    return _env_path("TPAP_RUNS", REPO / "runs")


def figures_root() -> Path:
    """Saved figures: $TPAP_FIGURES, else ./figures in the repository."""
    return _env_path("TPAP_FIGURES", REPO / "figures")


def set_seed(seed: int = 0) -> None:
    """One call makes a run repeatable: Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but no CUDA GPU is visible; use device='cpu'.")
    return dev
