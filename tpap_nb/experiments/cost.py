"""Tab. 5, measured here: the cost of FGSM-AT (TPAP's training) vs PGD-AT and of TPAP's test.

Two measurements share one timer (`time_round_robin`: phases timed in turn, so a load change on a
shared machine hits all of them alike):

- `measure_cost` (notebook 06): a model (trained or not: `untrained_model`) on its data set. Only a few batches are run
  and the per-epoch numbers are extrapolated (batches per epoch times the per-batch median), so it
  takes seconds on any profile. FLOPs are counted exactly by torch.utils.flop_counter.FlopCounterMode
  on one batch (FLOPs are linear in the batch size). Training steps run on a copy of the model.
- the speed bench (`make bench`, `experiments/bench.py`): the profile's model on synthetic batches,
  float32 against the fast path, the kit's `fit` against a written-out FGSM-AT step.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..checkpoints import read_checkpoint
from ..data import Dataset, batches
from ..models import eval_mode
from ..purify import purify
from ..runs import fresh_model, run_data, shipped_record
from ..runtime import Runtime, resolve, runtime_for
from ..train import checkpoint_path, recipe_config, train_step


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


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x, y, cfg: Mapping, rt: Runtime) -> None:
    """One training iteration of `cfg['recipe']` as `train.fit` runs it (`train.train_step`)."""
    model.train()
    train_step(model, opt, x, y, cfg, rt)


def _test_step(model: nn.Module, x, xi: float | None, rt: Runtime) -> None:
    """Classify a batch: one forward (plain) or purify then forward (TPAP, Eq. 7-9), in the attack precision."""
    with rt.autocast(attack=True):
        x = rt.inputs(x)
        if xi is not None:
            x = purify(model, x, xi)
        with torch.no_grad():
            model(x)


def _float32(device: torch.device) -> Runtime:
    return resolve(device, precision="float32", attack_precision="float32", memory_format="contiguous")


def train_flops_per_batch(model: nn.Module, x, y, cfg: Mapping, recipe: str) -> int:
    """FLOPs of one training iteration (attack + forward + backward) of `recipe` on batch (x, y), on a copy."""
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    rt = _float32(x.device)
    return count_flops(lambda: _train_step(net, opt, x, y, recipe_config(cfg, recipe), rt))


def test_flops_per_batch(model: nn.Module, x, xi: float | None = None) -> int:
    """FLOPs of classifying batch x, plainly (xi None) or with TPAP purification (one extra forward + backward)."""
    rt = _float32(x.device)
    with eval_mode(model):
        return count_flops(lambda: _test_step(model, x, xi, rt))


def time_round_robin(steps: dict[str, Callable[[int], None]], repeats: int, warmup: int = 1,
                     device: torch.device | None = None, min_time: float = 0.0) -> tuple[dict, dict]:
    """Seconds per call of each steps[name](i), phases timed in turn: (times, iters_per_repeat).

    After `warmup` untimed calls of each step, `repeats` rounds time every step once each
    (A, B, A, B, ...), so a busy machine's slow moments spread over all of them and their ratios
    are fairer than any one number. With min_time > 0 a repeat runs as many calls as take at
    least min_time (sized from the last warm-up call) and reports the mean per call. The index
    i counts the calls of a step (batches can be cycled by it).
    """
    device = device or torch.device("cpu")
    iters = {}
    for name, step in steps.items():
        dt = 0.0
        for i in range(max(warmup, 1 if min_time > 0 else 0)):
            _sync(device)
            t0 = time.perf_counter()
            step(i)
            _sync(device)
            dt = time.perf_counter() - t0
        iters[name] = max(1, int(min_time / max(dt, 1e-9) + 0.999)) if min_time > 0 else 1
    times: dict[str, list[float]] = {name: [] for name in steps}
    calls = {name: warmup for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(iters[name]):
                step(calls[name])
                calls[name] += 1
            _sync(device)
            times[name].append((time.perf_counter() - t0) / iters[name])
    return times, iters


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


def measure_cost(model: nn.Module, data: Dataset, cfg: Mapping, n_batches: int = 5, warmup: int = 2,
                 test_batch_size: int | None = None) -> list[dict]:
    """Tab. 5 on this device: one record per method (PGD-AT, TPAP) with per-epoch seconds and TFLOPs and params.

    Training: `training_loss` with recipe 'pgd' (PGD-AT, cfg['pgd_steps'] steps) and 'fgsm' (Algorithm 1),
    plus backward and an SGD step, on copies of `model`. Test: PGD-AT classifies with one forward;
    TPAP purifies (`purify`, xi = cfg['xi']) and classifies. Per epoch = per-batch median seconds (or
    one batch's FLOPs) x (split size / batch size); batches cycle when n_batches + warmup exceeds the split.
    """
    device = next(model.parameters()).device
    rt = runtime_for(cfg, device)
    bs, tbs = cfg["batch_size"], test_batch_size or cfg["batch_size"]
    n_use = n_batches + warmup
    train_b = _full_batches(data, bs, "train", n_use, cfg.get("seed", 0))
    test_b = _full_batches(data, tbs, "test", n_use, cfg.get("seed", 0))
    per_epoch_train, per_epoch_test = len(data.y_train) / bs, len(data.y_test) / tbs

    nets = {r: copy.deepcopy(model) for r in ("pgd", "fgsm")}
    opts = {r: torch.optim.SGD(n.parameters(), lr=1e-4, momentum=cfg.get("momentum", 0.9)) for r, n in nets.items()}
    rcfg = {r: recipe_config(cfg, r) for r in nets}

    def train_step(r):
        return lambda i: _train_step(nets[r], opts[r], *train_b[i % len(train_b)], rcfg[r], rt)

    with rt.scope():
        t_train, _ = time_round_robin({r: train_step(r) for r in nets}, n_batches, warmup, device)
        with eval_mode(model):
            t_test, _ = time_round_robin(
                {"plain": lambda i: _test_step(model, test_b[i % len(test_b)][0], None, rt),
                 "tpap": lambda i: _test_step(model, test_b[i % len(test_b)][0], cfg["xi"], rt)},
                n_batches, warmup, device)
    with eval_mode(model):
        x_tr, y_tr = train_b[0]
        x_te = test_b[0][0]
        flops = {"train_pgd": train_flops_per_batch(model, x_tr, y_tr, cfg, "pgd"),
                 "train_fgsm": train_flops_per_batch(model, x_tr, y_tr, cfg, "fgsm"),
                 "test_plain": test_flops_per_batch(model, x_te, None),
                 "test_tpap": test_flops_per_batch(model, x_te, cfg["xi"])}

    med = {k: statistics.median(v) for k, v in (t_train | t_test).items()}
    params = param_count(model) / 1e6
    common = {"device": str(device), "runtime": rt.describe(), "batch_size": bs, "test_batch_size": tbs,
              "n_batches_timed": n_batches,
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


def untrained_model(cfg: Mapping, data: Dataset | None = None) -> tuple[nn.Module, Dataset]:
    """The profile's architecture with fresh, seeded weights on the profile's device, and its data set.

    Nothing is trained and no checkpoint is read or written: what a step costs depends on the
    architecture, the batch and the device, not on the weights, so Tab. 5 can be measured before
    (or without) any training. Data and model come as `get_or_train`'s do (`runs.run_data`, `runs.fresh_model`).
    """
    data = run_data(cfg, data)
    return fresh_model(cfg, data, pretrained=False).eval(), data


def hand_count(pgd_steps: int, convention: str = "measured", clean_bn_forward: bool = False) -> dict:
    """Tab. 5's FLOPs columns counted by hand, in forward passes per example (keys as `forward_equivalents`).

    A forward is 1 and the training update's backward (weights and activations) 2. The backward to the
    input alone, which every attack step and the purification step need, is 1 under 'measured' (the
    operations that run, as torch's FlopCounterMode counts them) and 2 under 'deepspeed' (DeepSpeed's
    profiler, which the paper's numbers follow, counts every backward as two forwards).
    clean_bn_forward adds the authors' discarded clean forward to each training step.
    """
    if convention not in ("measured", "deepspeed"):
        raise ValueError(f"convention={convention!r}: use 'measured' or 'deepspeed'.")
    step = 1 + (1 if convention == "measured" else 2)  # forward + backward to the input
    update = 1 + 2 + (1 if clean_bn_forward else 0)
    return {"PGD-AT training": pgd_steps * step + update, "FGSM-AT training": step + update, "plain test": 1,
            "TPAP test": step + 1}


def recorded_train_seconds(cfg: Mapping, recipe: str) -> float | None:
    """Median wall seconds per training epoch recorded for (cfg, recipe): by your checkpoint, else by the shipped
    network `get_or_train` would use (its record), else None (untrained)."""
    path = checkpoint_path(recipe_config(cfg, recipe))
    if not path.exists():
        rec = None if cfg.get("retrain") else shipped_record(recipe_config(cfg, recipe))
        return rec["median_epoch_seconds"] if rec else None
    history = read_checkpoint(path)["history"]
    secs = [h["train_seconds"] for h in history if "train_seconds" in h]
    return statistics.median(secs) if secs else None
