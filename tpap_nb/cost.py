"""Tab. 5, measured here: seconds, FLOPs and parameters of FGSM-AT (TPAP's training) vs PGD-AT, and of TPAP's test.

Only a few batches are run and the per-epoch numbers are extrapolated (batches per epoch times the
per-batch median), so the measurement takes seconds on any profile. FLOPs are counted exactly by
torch.utils.flop_counter.FlopCounterMode on one batch (FLOPs are linear in the batch size).
Training steps run on a copy of the model, so the trained model is never changed.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .data import Dataset, batches
from .purify import purify
from .train import checkpoint_path, read_checkpoint, recipe_config, training_loss


class _GlobalOnly:
    """Stands in for FlopCounterMode's per-module tracker, which breaks torch.autograd.grad on a leaf input.

    pytorch/pytorch#131753 (open): under FlopCounterMode, autograd.grad w.r.t. a leaf tensor fails with
    "A leaf node was passed to _will_engine_execute_node ...". PGD, FGSM and purification all take that
    gradient. Without the tracker the counter keeps its global total only, which is all we need.
    """

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything `fn()` runs (forward and backward; matmul/conv counted as 2 x multiply-adds)."""
    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return int(counter.get_total_flops())


def param_count(model: nn.Module) -> int:
    """Number of weights (Tab. 5, 'Params')."""
    return sum(p.numel() for p in model.parameters())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x, y, cfg: dict) -> None:
    """One training iteration of `cfg['recipe']` exactly as `train.fit` runs it."""
    model.train()
    loss = training_loss(model, x, y, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _test_step(model: nn.Module, x, xi: float | None) -> None:
    """Classify a batch: one forward (plain) or purify then forward (TPAP, Eq. 7-9)."""
    if xi is not None:
        x = purify(model, x, xi)
    with torch.no_grad():
        model(x)


def train_flops_per_batch(model: nn.Module, x, y, cfg: dict, recipe: str) -> int:
    """FLOPs of one training iteration (attack + forward + backward) of `recipe` on batch (x, y), on a copy."""
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    return count_flops(lambda: _train_step(net, opt, x, y, recipe_config(cfg, recipe)))


def test_flops_per_batch(model: nn.Module, x, xi: float | None = None) -> int:
    """FLOPs of classifying batch x, plainly (xi None) or with TPAP purification (one extra forward + backward)."""
    was = model.training
    model.eval()
    try:
        return count_flops(lambda: _test_step(model, x, xi))
    finally:
        model.train(was)


def time_alternating(steps: dict[str, Callable[[int], None]], n: int, warmup: int,
                     device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call steps[name](i), for i < n, after `warmup` untimed calls; the steps alternate.

    Alternating (A, B, A, B, ...) rather than timing A then B spreads a busy machine's slow
    moments over both, so their ratio is fairer than either number.
    """
    for i in range(warmup):
        for step in steps.values():
            step(i)
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(n):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(warmup + i)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def _full_batches(data: Dataset, batch_size: int, split: str, n: int, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for x, y in batches(data, batch_size, split=split, shuffle=split == "train", augment=split == "train",
                        generator=gen, drop_last=True):
        out.append((x, y))
        if len(out) == n:
            break
    if not out:
        raise ValueError(f"The {split} split has fewer than batch_size = {batch_size} examples; lower batch_size.")
    return out


def measure_cost(model: nn.Module, data: Dataset, cfg: dict, n_batches: int = 5, warmup: int = 2,
                 test_batch_size: int | None = None) -> list[dict]:
    """Tab. 5 on this device: one record per method (PGD-AT, TPAP) with per-epoch seconds and TFLOPs and params.

    Training: `training_loss` with recipe 'pgd' (PGD-AT, cfg['pgd_steps'] steps) and 'fgsm' (Algorithm 1),
    plus backward and an SGD step, on copies of `model`. Test: PGD-AT classifies with one forward;
    TPAP purifies (`purify`, xi = cfg['xi']) and classifies. Per epoch = per-batch median seconds (or
    one batch's FLOPs) x (split size / batch size); batches cycle when n_batches + warmup exceeds the split.
    """
    device = next(model.parameters()).device
    bs, tbs = cfg["batch_size"], test_batch_size or cfg["batch_size"]
    n_use = n_batches + warmup
    train_b = _full_batches(data, bs, "train", n_use, cfg.get("seed", 0))
    test_b = _full_batches(data, tbs, "test", n_use, cfg.get("seed", 0))
    per_epoch_train, per_epoch_test = len(data.y_train) / bs, len(data.y_test) / tbs

    nets = {r: copy.deepcopy(model) for r in ("pgd", "fgsm")}
    opts = {r: torch.optim.SGD(n.parameters(), lr=1e-4, momentum=cfg.get("momentum", 0.9)) for r, n in nets.items()}
    rcfg = {r: recipe_config(cfg, r) for r in nets}

    def train_step(r):
        return lambda i: _train_step(nets[r], opts[r], *train_b[i % len(train_b)], rcfg[r])

    t_train = time_alternating({r: train_step(r) for r in nets}, n_batches, warmup, device)

    model_was = model.training
    model.eval()
    try:
        t_test = time_alternating({"plain": lambda i: _test_step(model, test_b[i % len(test_b)][0], None),
                                   "tpap": lambda i: _test_step(model, test_b[i % len(test_b)][0], cfg["xi"])},
                                  n_batches, warmup, device)
        x_tr, y_tr = train_b[0]
        x_te = test_b[0][0]
        flops = {"train_pgd": train_flops_per_batch(model, x_tr, y_tr, cfg, "pgd"),
                 "train_fgsm": train_flops_per_batch(model, x_tr, y_tr, cfg, "fgsm"),
                 "test_plain": test_flops_per_batch(model, x_te, None),
                 "test_tpap": test_flops_per_batch(model, x_te, cfg["xi"])}
    finally:
        model.train(model_was)

    med = {k: statistics.median(v) for k, v in (t_train | t_test).items()}
    params = param_count(model) / 1e6
    common = {"device": str(device), "batch_size": bs, "test_batch_size": tbs, "n_batches_timed": n_batches,
              "train_batches_per_epoch": per_epoch_train, "test_batches_per_epoch": per_epoch_test,
              "params_m": params}
    return [
        {"method": "PGD-AT", "training": f"PGD-{rcfg['pgd']['pgd_steps']}", "test": "plain forward",
         "train_s_per_epoch": med["pgd"] * per_epoch_train, "test_s_per_epoch": med["plain"] * per_epoch_test,
         "train_tflops_per_epoch": flops["train_pgd"] * per_epoch_train / 1e12,
         "test_tflops_per_epoch": flops["test_plain"] * per_epoch_test / 1e12,
         "train_s_per_batch": t_train["pgd"], "test_s_per_batch": t_test["plain"]} | common,
        {"method": "TPAP", "training": "FGSM (Algorithm 1)", "test": "purify + forward",
         "train_s_per_epoch": med["fgsm"] * per_epoch_train, "test_s_per_epoch": med["tpap"] * per_epoch_test,
         "train_tflops_per_epoch": flops["train_fgsm"] * per_epoch_train / 1e12,
         "test_tflops_per_epoch": flops["test_tpap"] * per_epoch_test / 1e12,
         "train_s_per_batch": t_train["fgsm"], "test_s_per_batch": t_test["tpap"]} | common,
    ]


COLUMNS = ("train_s_per_epoch", "test_s_per_epoch", "train_tflops_per_epoch", "test_tflops_per_epoch", "params_m")


def cost_ratios(table: dict) -> dict:
    """The ratios that carry across machines, from {'PGD-AT': {...}, 'TPAP': {...}} rows of Tab. 5's columns."""
    p, t = table["PGD-AT"], table["TPAP"]
    return {"train time, FGSM-AT / PGD-AT": t["train_s_per_epoch"] / p["train_s_per_epoch"],
            "train FLOPs, FGSM-AT / PGD-AT": t["train_tflops_per_epoch"] / p["train_tflops_per_epoch"],
            "test time, TPAP / plain": t["test_s_per_epoch"] / p["test_s_per_epoch"],
            "test FLOPs, TPAP / plain": t["test_tflops_per_epoch"] / p["test_tflops_per_epoch"]}


def forward_equivalents(table: dict, train_per_test: float) -> dict:
    """Each FLOPs column as a multiple of one plain forward pass over the same examples.

    `train_per_test` = training-set size / test-set size (paper, CIFAR-10: 50000 / 10000 = 5).
    """
    fwd = table["PGD-AT"]["test_tflops_per_epoch"]  # plain inference = one forward per test example
    return {"PGD-AT training": table["PGD-AT"]["train_tflops_per_epoch"] / (fwd * train_per_test),
            "FGSM-AT training": table["TPAP"]["train_tflops_per_epoch"] / (fwd * train_per_test),
            "plain test": 1.0,
            "TPAP test": table["TPAP"]["test_tflops_per_epoch"] / fwd}


def recorded_train_seconds(cfg: dict, recipe: str) -> float | None:
    """Mean wall seconds per training epoch that `get_or_train` recorded for (cfg, recipe), or None if untrained."""
    path = checkpoint_path(recipe_config(cfg, recipe))
    if not path.exists():
        return None
    history = read_checkpoint(path)["history"]
    secs = [h["train_seconds"] for h in history if "train_seconds" in h]
    return statistics.median(secs) if secs else None
