"""Profiles, paths, seeding and device: the one place settings come from."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .runtime import resolve_device
from .settings import Config, check_settings

__version__ = "0.1.0"  # the package version (pyproject.toml); checkpoints record it
REPO = Path(__file__).resolve().parent.parent

# The device settings of every profile: decided on the machine that runs it (tpap_nb.runtime).
RUNTIME_AUTO = dict(precision="auto", attack_precision="auto", memory_format="auto", threads=None, compile=False)

# A profile fixes every value a notebook needs; single parameters override it.
# `paper` is the authors' setting (Sec. 4.1.2, Tab. 2); `quick` is the CPU setting that
# shows the paper's phenomenon in minutes (see README "The quick profile");
# `smoke` only proves that every cell runs.
PROFILES: dict[str, dict] = {
    "smoke": dict(
        dataset="digits", model="small_cnn", width=8, epochs=3, batch_size=64, lr=0.05,
        milestones=(2,), momentum=0.9, weight_decay=1e-3, eps=0.3, xi=0.15,
        n_train=512, n_val=0, n_eval=64, eval_every=1, device="cpu", seed=0,
        pgd_alpha=0.075, pgd_steps=10, beta=6.0,
        n_attack=32, n_adaptive=32, baselines="pgd,trades,mart,fgsm_trades,fgsm_mart", sweep_epochs=2,
        **RUNTIME_AUTO, clean_bn_forward=False, attack_eps=None, schedule=None, lr_schedule="multistep", retrain=False,
        benchmark_extras=True,
    ),
    "quick": dict(
        dataset="digits", model="small_cnn", width=32, epochs=60, batch_size=64, lr=0.05,
        milestones=(55,), momentum=0.9, weight_decay=1e-3, eps=0.3, xi=0.21,
        n_train=None, n_val=0, n_eval=360, eval_every=5, device="auto", seed=0,
        pgd_alpha=0.075, pgd_steps=5, beta=6.0,
        n_attack=200, n_adaptive=100, baselines="pgd", sweep_epochs=15, **RUNTIME_AUTO,
        clean_bn_forward=False, attack_eps=None, schedule=None, lr_schedule="multistep", retrain=False,
        benchmark_extras=True,
    ),
    "paper": dict(
        dataset="cifar10", model="resnet18", width=64, epochs=150, batch_size=128, lr=0.01,
        milestones=(75, 90, 140), momentum=0.9, weight_decay=1e-3, eps=8 / 255, xi=8 / 255,
        n_train=None, n_val=0, n_eval=1000, eval_every=1, device="auto", seed=0,
        pgd_alpha=0.007, pgd_steps=10, beta=6.0,
        n_attack=10000, n_adaptive=1000, baselines="pgd,trades,mart,fgsm_trades,fgsm_mart",
        sweep_epochs=150,
        **RUNTIME_AUTO, clean_bn_forward=True, attack_eps=None, schedule=None, lr_schedule="multistep", retrain=False,
        benchmark_extras=True,
    ),
    # CIFAR-10 on a 2-core CPU (issue 18, docs/cifar-search.md): the kit's ResNet-18 at width 16 on all training
    # images but 1,000 held out for validation, FGSM-RO trained at 12/255 (the authors' CIFAR-100 move: train above
    # the attack eps) and attacked and purified at 8/255; SGD lr 0.1, x0.1 at epochs 10 and 14 of 16, momentum 0.9,
    # wd 1e-3, batch 128, the authors' clean BatchNorm forward; ~20 min on a 2-core CPU with the fast path.
    # PGD-AT baseline: PGD-3 with step 3/255 (paper: PGD-10, 0.007), 8 epochs (PGD_AT_SCHEDULE), at 8/255.
    "cifar": dict(
        dataset="cifar10", model="resnet18", width=16, epochs=16, batch_size=128, lr=0.1,
        milestones=(10, 14), momentum=0.9, weight_decay=1e-3, eps=12 / 255, xi=8 / 255,
        n_train=None, n_val=1000, n_eval=500, eval_every=1, device="auto", seed=0,
        pgd_alpha=3 / 255, pgd_steps=3, beta=6.0,
        n_attack=200, n_adaptive=100, baselines="pgd", sweep_epochs=4, **RUNTIME_AUTO,
        clean_bn_forward=True, attack_eps=8 / 255, schedule=None, lr_schedule="multistep", retrain=False,
        benchmark_extras=False,
    ),
    # UNMEASURED: a reasoned guess until a GPU has run it (docs/gpu.md). The paper's network (width 64), data,
    # eps = xi = 8/255 and weight decay, with what the CPU search on CIFAR-10 learned (docs/cifar-search.md): the
    # collapse that keeps clean accuracy came within a few epochs of the first lr drop from 0.1 to 0.01 at batch 128
    # with the authors' clean BatchNorm forward (smaller batches collapsed earlier, into label leaking); a width-16
    # network needed a training eps above 8/255 (none collapsed at 8/255), the paper's width may not. 40 epochs
    # (paper: 150), fast path.
    "gpu": dict(
        dataset="cifar10", model="resnet18", width=64, epochs=40, batch_size=128, lr=0.1,
        milestones=(25, 35), momentum=0.9, weight_decay=1e-3, eps=8 / 255, xi=8 / 255,
        n_train=None, n_val=1000, n_eval=1000, eval_every=1, device="auto", seed=0,
        pgd_alpha=0.007, pgd_steps=10, beta=6.0,
        n_attack=1000, n_adaptive=500, baselines="pgd", sweep_epochs=20,
        **RUNTIME_AUTO, clean_bn_forward=True, attack_eps=None, schedule=None, lr_schedule="multistep", retrain=False,
        benchmark_extras=True,
    ),
}
# What a profile is, where that must be said beside its numbers (figures' JSON, README, notebooks):
# a profile without an entry is what its comment says; these are not what their settings suggest.
PROFILE_STATUS = {
    "gpu": "unmeasured: a reasoned guess until a GPU has run it (docs/gpu.md)",
}
# pgd_alpha, pgd_steps, beta: the baselines' training attack (PGD-AT/TRADES/MART: PGD-10, step
# 0.007 for eps 8/255 in the authors' script; eps / 4 on the CPU profiles) and TRADES/MART beta.
# n_val: training images held out as a validation split (`Dataset.validation_split`, drawn with the run's seed)
# before n_train draws its subset: the network never trains on them, so settings such as xi are chosen on them.
# n_attack: test examples in the attack benchmark; n_adaptive: in the adaptive-attack table (07);
# baselines: the recipes notebook 03 trains beside TPAP; sweep_epochs: epochs of each short run
# in the Fig. 5 sweep. To fit a 2-core CPU in 20 minutes, `quick` trains its baselines with
# PGD-5 (paper: PGD-10), trains only PGD-AT as a baseline and attacks 200 examples in 03 and 100
# in 07; every attack runs its full definition (PGD-20 is 20 steps on every profile). Its schedule (lr
# 0.05, x0.1 at epoch 55 of 60) and xi = 0.7 eps were measured on 3 seeds on the test images; a
# re-check on a validation split (seeds.seed_check, issue 12) found no xi meeting its rule
# (docs/quick-profile.md).
# precision, attack_precision ('auto', 'float32', 'bf16'), memory_format ('auto', 'contiguous',
# 'channels_last'), threads (None: all cores) and compile (False, True or a torch.compile backend): the
# run's device settings, resolved once by tpap_nb.runtime ("auto": the fast path where the device has
# native bf16, float32 elsewhere). They change speed, not the recipe.
# clean_bn_forward: run the clean batch through the network in train mode before the adversarial
# one and discard its output, as the authors' training scripts do (train_fgsm_at_cifar10_TPAP.py:218):
# BatchNorm's running statistics then mix clean and adversarial batches (train.training_loss).
# attack_eps: the radius of every test attack (evaluation, benchmark, notebooks); None: eps, the
# training radius, as the profile sets it. `paper` on CIFAR-100 trains FGSM-RO at 12/255 and
# attacks at 8/255 (the authors' scripts); xi is the third, separate radius.
# retrain: train even where a shipped checkpoint (checkpoints/, tpap_nb.runs) matches the settings.
# benchmark_extras: notebook 03 trains TPAP*, the Tab. 7 models and the Fig. 5 sweep unless told
# otherwise (off on `cifar`: each is another CPU training run of tens of minutes).
# schedule: None (the profile's epochs and milestones) or "authors": the epochs and milestones of
# the authors' training script for the data set (AUTHORS_SCHEDULE; docs/fidelity.md).


# Sec. 4.1.2: the paper's batch size depends on model and data set, and the authors' CIFAR-100
# script trains with eps 12/255; `paper` applies these unless batch_size / eps are overridden.
PAPER_BATCH = {("resnet18", "tiny-imagenet"): 64, ("wrn34_10", "cifar10"): 64, ("wrn34_10", "cifar100"): 64,
               ("wrn34_10", "svhn"): 64, ("wrn34_10", "tiny-imagenet"): 32}
PAPER_TRAIN_EPS = {"cifar100": 12 / 255}
# The authors' FGSM-RO scripts (github.com/tly18/TPAP) train for `epoch = ...` epochs with these
# MultiStepLR milestones (x0.1), which differ from the paper's 150 epochs for all but CIFAR-100:
# train_fgsm_at_cifar10_TPAP.py:163,168 (and TEST_other_attack.py:151 loads a `99_...pt`, the
# 100th epoch), TPAP_cifar100/train_fgsm_at_CIFAR100_TPAP.py:130,135, TPAP_SVHN/train_FGSM-AT_svhn.py:139,144,
# TPAP_tiny_imagenet/train_fgsm_at_tiny_TPAP.py:129,132. A milestone past the last epoch never fires.
AUTHORS_SCHEDULE = {"cifar10": {"epochs": 100, "milestones": (75, 90, 140)},
                    "cifar100": {"epochs": 150, "milestones": (75, 90, 140)},
                    "svhn": {"epochs": 100, "milestones": (75, 90)},
                    "tiny-imagenet": {"epochs": 100, "milestones": (75, 90, 190)}}
# The authors' PGD-AT baseline scripts train 120 epochs with lr x0.1 at 75/90/110
# (train_pgd_at_cifar10.py:117,122; TPAP_cifar100/train_pgd_at_cifar100.py:140,145) and at
# epsilon = 0.031 (8/255) on both data sets (:148, :168). `paper` trains PGD-AT so unless its epochs or
# milestones were changed (the resolved `pgd_at_schedule`; None: PGD-AT trains on the profile's schedule).
PAPER_PGD_AT_SCHEDULE = {"epochs": 120, "milestones": (75, 90, 110)}
# PGD-AT's own schedule per profile, applied while the profile's FGSM-RO schedule is its own (a changed epochs or
# milestones trains PGD-AT on the changed schedule too).
PGD_AT_SCHEDULE = {"paper": PAPER_PGD_AT_SCHEDULE, "cifar": {"epochs": 8, "milestones": (6,)}}
# The radius the paper states its attacks at (Tab. 2): the registry's step sizes are written for it and move
# in proportion to a profile's attack eps (evaluate.attack_overrides).
PAPER_EPS = 8 / 255

# Settings of a training run that no profile fixes: recipe (train.training_loss; get_or_train sets it) and
# alpha, FGSM's step (None: eps, Algorithm 1).
RUN_SETTINGS = dict(recipe="fgsm", alpha=None)

# Notebook 07 per profile: a factor on the counts of experiments/adaptive.py's own attacks (PGD
# steps and restarts, APGD steps, Square queries; the `settings` column says what ran), never on a
# registry attack's: its AutoAttack always runs the official standard settings. Missing: 1.0.
ADAPTIVE_SCALE = {"smoke": 0.1, "quick": 0.5, "cifar": 0.5}

# Tab. 3 (experiments/table3.py) per profile: image side, fine-tuning epochs, test images attacked
# (None: the whole test split). The paper gives neither the image size nor the schedule for Tab. 3:
# `paper` takes the ImageNet size 224 and its CIFAR schedule. Other profiles use `quick`'s row. Every
# profile trains Tab. 3 with the paper's optimiser (its lr, momentum, weight decay, PGD steps, beta; its
# milestones scaled to the epochs) and attacks at TABLE3_EPS.
CALTECH = {"smoke": {"size": 32, "epochs": 1, "n_test": 16},
           "quick": {"size": 64, "epochs": 5, "n_test": 200},
           "paper": {"size": 224, "epochs": 150, "n_test": None}}
TABLE3_EPS = 8 / 255  # Tab. 3's attacks and purification

# Notebook 02's 2-D toy (experiments/mechanism.py, its own settings TOY) per profile: what changes from TOY.
TOY_SIZE = {"smoke": dict(n=300, epochs=100, batch_size=50)}  # smoke proves the cells run, in under a second

# The speed bench (experiments/bench.py, `make bench`) on synthetic data: the paper's radii and
# optimiser, PGD-10 with step eps / 4 for the PGD-AT phase.
BENCH = dict(eps=8 / 255, xi=8 / 255, pgd_steps=10, pgd_alpha_per_eps=0.25, lr=0.01, momentum=0.9,
             weight_decay=1e-3, repeats=7, warmup=1, min_time=0.3)


def get_profile(name: str = "quick", allow_negative_xi: bool = False, **overrides) -> Config:
    """Profile `name` resolved once into a checked, read-only Config: its table, any non-None overrides, then
    what depends on them (the attack eps, `paper`'s batch and data-set eps, the authors' schedules, Tab. 3,
    the adaptive scale, the bench). Nothing below reads the profile's name again."""
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; choose one of {sorted(PROFILES)}.")
    cfg = dict(PROFILES[name], profile=name, **RUN_SETTINGS, adaptive_scale=ADAPTIVE_SCALE.get(name, 1.0))
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"Unknown setting(s) {sorted(unknown)}; a profile has {sorted(cfg)}.")
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg.update(given)
    check_settings(cfg, allow_negative_xi)
    if cfg["attack_eps"] is None:  # the test attacks' radius: the profile's eps, before a training-only change
        cfg["attack_eps"] = cfg["eps"]
    paper = PROFILES["paper"]
    table = PROFILES[name]
    own = dict(epochs=table["epochs"], milestones=table["milestones"])  # the schedule PGD-AT's replaces
    if name == "paper":
        if "batch_size" not in given:
            cfg["batch_size"] = PAPER_BATCH.get((cfg["model"], cfg["dataset"]), 128)
        if "eps" not in given:
            cfg["eps"] = PAPER_TRAIN_EPS.get(cfg["dataset"], cfg["eps"])
    # FGSM-RO may train at a larger eps than its attacks (the authors' CIFAR-100: 12/255; `cifar`: 16/255); PGD-AT,
    # TRADES and MART then train at the attack eps, as the authors' baseline scripts do (recipe_config).
    baseline_eps = cfg["attack_eps"] if abs(cfg["eps"] - cfg["attack_eps"]) > 1e-12 else None
    if cfg["schedule"] == "authors":
        if cfg["dataset"] not in AUTHORS_SCHEDULE:
            raise ValueError(f"schedule='authors' is known for {sorted(AUTHORS_SCHEDULE)} (the authors' scripts), "
                             f"not {cfg['dataset']!r}; pass epochs and milestones instead.")
        authors = AUTHORS_SCHEDULE[cfg["dataset"]]
        cfg |= {k: v for k, v in authors.items() if k not in given}
        if name == "paper":  # the authors' scripts: their FGSM-RO schedule goes with their PGD-AT one
            own = authors
    unchanged = cfg["epochs"] == own["epochs"] and tuple(cfg["milestones"]) == tuple(own["milestones"])
    table3 = CALTECH.get(name, CALTECH["quick"]) | {"eps": TABLE3_EPS} | {
        k: paper[k] for k in ("lr", "momentum", "weight_decay", "pgd_steps", "beta")} | {
        "paper_epochs": paper["epochs"], "paper_milestones": paper["milestones"]}
    return Config(cfg | {"status": PROFILE_STATUS.get(name), "baseline_eps": baseline_eps,
                         "pgd_at_schedule": PGD_AT_SCHEDULE.get(name) if unchanged else None,
                         "table3": table3, "bench": BENCH, "toy": TOY_SIZE.get(name, {})}, allow_negative_xi)


def home() -> Path:
    """Where data/, runs/ and build/figures/ go by default: the repository in a source checkout (pyproject.toml
    beside the package), else the current working directory (an installed copy in site-packages)."""
    return REPO if (REPO / "pyproject.toml").is_file() else Path.cwd()


def _env_path(var: str, folder: str) -> Path:
    return Path(os.environ.get(var) or home() / folder).expanduser()


def data_root() -> Path:
    """All data sets live here: $TPAP_DATA, else data/ in `home()`."""
    return _env_path("TPAP_DATA", "data")


def runs_root() -> Path:
    """Checkpoints and result records: $TPAP_RUNS, else runs/ in `home()`."""
    return _env_path("TPAP_RUNS", "runs")


# Interactive runs (JupyterLab, `make nb`) write figures into a build folder; only `make run` (and the commands
# that regenerate the README's figures) set TPAP_FIGURES=figures/<profile>, the tracked figures of that profile.
FIGURES_DEFAULT = "build/figures"


def figures_root() -> Path:
    """Saved figures (and the runner's runtimes.json): $TPAP_FIGURES, else build/figures/ in `home()`."""
    return _env_path("TPAP_FIGURES", FIGURES_DEFAULT)


def tracked_figures(profile: str | None = None) -> Path:
    """The tracked figures of the repository (`make run` writes figures/<profile>/); the folder of all with None."""
    root = REPO / "figures"
    return root if profile is None else root / profile


def set_seed(seed: int = 0) -> None:
    """One call makes a run repeatable: Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; any torch device string is accepted (runtime.resolve_device)."""
    return resolve_device(name)
