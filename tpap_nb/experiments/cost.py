"""Tab. 5, measured here: the cost of FGSM-AT (TPAP's training) vs PGD-AT and of TPAP's test.

Two measurements share one timer (`time_round_robin`: phases timed in turn, so a load change on a
shared machine hits all of them alike):

- `measure_cost` (notebook 06): a model (trained or not: `untrained_model`) on its data set. Only a few batches are run
  and the per-epoch numbers are extrapolated (batches per epoch times the per-batch median), so it
  takes seconds on any profile. FLOPs are counted exactly by torch.utils.flop_counter.FlopCounterMode
  on one batch (FLOPs are linear in the batch size). Training steps run on a copy of the model.
- `bench` (`make bench`, the command line below): throughput of plain / FGSM-AT / PGD-10-AT training
  and plain / TPAP inference on synthetic batches of the right shape, so no data set is needed.
  Each number is the fastest repeat (other work on a shared machine only ever adds time, the
  advice of Python's timeit); the median and the spread (max - min) / median are in the record
  too: a spread of tens of percent says the machine was busy, so compare several runs.

    python -m tpap_nb.experiments.cost --model small_cnn --image-size 32 --batch-size 128 --json runs/bench.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import BENCH, get_device, set_seed
from ..data import Dataset, batches, load_dataset
from ..models import build_model, eval_mode, fold_bn
from ..purify import TPAP, purify
from ..train import checkpoint_path, read_checkpoint, recipe_config, training_loss


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
    with eval_mode(model):
        return count_flops(lambda: _test_step(model, x, xi))


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

    t_train, _ = time_round_robin({r: train_step(r) for r in nets}, n_batches, warmup, device)

    with eval_mode(model):
        t_test, _ = time_round_robin({"plain": lambda i: _test_step(model, test_b[i % len(test_b)][0], None),
                                      "tpap": lambda i: _test_step(model, test_b[i % len(test_b)][0], cfg["xi"])},
                                     n_batches, warmup, device)
        x_tr, y_tr = train_b[0]
        x_te = test_b[0][0]
        flops = {"train_pgd": train_flops_per_batch(model, x_tr, y_tr, cfg, "pgd"),
                 "train_fgsm": train_flops_per_batch(model, x_tr, y_tr, cfg, "fgsm"),
                 "test_plain": test_flops_per_batch(model, x_te, None),
                 "test_tpap": test_flops_per_batch(model, x_te, cfg["xi"])}

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


def untrained_model(cfg: dict, data: Dataset | None = None) -> tuple[nn.Module, Dataset]:
    """The profile's architecture with fresh, seeded weights on the profile's device, and its data set.

    Nothing is trained and no checkpoint is read or written: what a step costs depends on the
    architecture, the batch and the device, not on the weights, so Tab. 5 can be measured before
    (or without) any training. The data set is loaded as `get_or_train` loads it (n_train subset).
    """
    if data is None:
        data = load_dataset(cfg["dataset"])
        if cfg.get("n_train"):
            data = data.subset(n_train=cfg["n_train"], seed=cfg["seed"])
    device = get_device(cfg.get("device") or "auto")
    data = data.to(device)
    set_seed(cfg["seed"])
    model = build_model(cfg["model"], data.num_classes, data.in_channels, cfg.get("width"), pretrained=False)
    return model.to(device).eval(), data


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


def hand_count_sentence(cfg: dict) -> str:
    """The hand count of `hand_count` for the profile's PGD-k, under both conventions, in words."""
    k, extra = cfg["pgd_steps"], bool(cfg.get("clean_bn_forward"))
    ours, ds = hand_count(k, "measured", extra), hand_count(k, "deepspeed", extra)
    plus = " + 1 (the discarded clean forward)" if extra else ""
    return (f"On this profile PGD-AT trains with PGD-{k}. Counting what runs, each attack step is a forward and a "
            f"backward to the input (2), the update a forward and a full backward (3){plus}: PGD-AT training is "
            f"{k} x 2 + 3{' + 1' if extra else ''}, {ours['PGD-AT training']} forwards per example, FGSM-AT "
            f"{ours['FGSM-AT training']}, and TPAP's test (forward, backward to the input, classifying forward) "
            f"{ours['TPAP test']}. Counting every backward as two forwards, as DeepSpeed's profiler does, the same "
            f"steps come to {ds['PGD-AT training']}, {ds['FGSM-AT training']} and {ds['TPAP test']}; the paper's "
            "Tab. 5 follows that convention for PGD-10 (the table below divides its FLOPs by one forward).")


def ratio_sentence(table: dict, paper: dict, pgd_steps: int) -> str:
    """The measured cost ratios in words: PGD-AT epochs in FGSM-AT epochs, TPAP's test in plain tests, paper beside."""
    r, p = cost_ratios(table), cost_ratios(paper)
    hand = hand_count(pgd_steps)
    return (f"**On this device** one PGD-AT epoch (PGD-{pgd_steps}) costs "
            f"{1 / r['train time, FGSM-AT / PGD-AT']:.1f} FGSM-AT epochs in time and "
            f"{1 / r['train FLOPs, FGSM-AT / PGD-AT']:.1f} in FLOPs (the hand count: "
            f"{hand['PGD-AT training'] / hand['FGSM-AT training']:.1f}; the paper's PGD-10: "
            f"{1 / p['train time, FGSM-AT / PGD-AT']:.1f} in time). TPAP's test costs "
            f"{r['test time, TPAP / plain']:.1f} plain tests in time and {r['test FLOPs, TPAP / plain']:.1f} in FLOPs "
            f"(paper: {p['test time, TPAP / plain']:.1f} in time). Time ratios drift from FLOP ratios where a pass is "
            "too small to keep the device busy: fixed per-call overheads then weigh as much as arithmetic.")


def recorded_train_seconds(cfg: dict, recipe: str) -> float | None:
    """Mean wall seconds per training epoch that `get_or_train` recorded for (cfg, recipe), or None if untrained."""
    path = checkpoint_path(recipe_config(cfg, recipe))
    if not path.exists():
        return None
    history = read_checkpoint(path)["history"]
    secs = [h["train_seconds"] for h in history if "train_seconds" in h]
    return statistics.median(secs) if secs else None


# ----------------------------------------------------------------------------- the speed bench (make bench)

PHASES = ("plain_train", "fgsm_train", "pgd_train", "plain_infer", "tpap_infer", "plain_infer_folded",
          "tpap_infer_folded")
# Paper, Tab. 5: TPAP 8.26/2.02 = 4.1x. "_folded": both models with BatchNorm folded into the convs.
TARGETS = {"fgsm_over_plain_train": 2.3, "tpap_over_plain_infer": 3.0, "tpap_over_plain_infer_folded": 3.0}
DTYPES = {"float32": None, "bf16": torch.bfloat16}


def _phase_fns(model, folded, x, y, eps, xi, autocast):
    """One step of each phase as a zero-argument callable."""
    opt = torch.optim.SGD(model.parameters(), lr=BENCH["lr"], momentum=BENCH["momentum"],
                          weight_decay=BENCH["weight_decay"])

    def train(recipe):
        cfg = dict(recipe=recipe, eps=eps, alpha=eps, pgd_steps=BENCH["pgd_steps"],
                   pgd_alpha=BENCH["pgd_alpha_per_eps"] * eps)

        def step():
            model.train()
            with autocast():
                loss = training_loss(model, x, y, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def infer(net, net_model):
        def step():
            net_model.eval()
            with torch.no_grad(), autocast():
                net(x)
        return step

    return {"plain_train": train("plain"), "fgsm_train": train("fgsm"), "pgd_train": train("pgd"),
            "plain_infer": infer(model, model), "tpap_infer": infer(TPAP(model, xi), model),
            "plain_infer_folded": infer(folded, folded), "tpap_infer_folded": infer(TPAP(folded, xi), folded)}


def bench(model: str = "small_cnn", batch_size: int = 128, image_size: int = 32, channels: int = 3,
          classes: int = 10, width: int | None = None, device: str = "auto", dtype: str | None = None,
          channels_last: bool | None = None, compile: bool = False, repeats: int = BENCH["repeats"],
          warmup: int = BENCH["warmup"], min_time: float = BENCH["min_time"], phases=PHASES,
          threads: int | None = None, eps: float = BENCH["eps"], xi: float = BENCH["xi"], seed: int = 0) -> dict:
    """Images/second of each phase and the cost ratios; dtype/channels_last default to the CUDA fast path."""
    dev = get_device(device)
    on_cuda = dev.type == "cuda"
    dtype = dtype or ("bf16" if on_cuda else "float32")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}.")
    channels_last = on_cuda if channels_last is None else channels_last
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise ValueError(f"Unknown phase(s) {sorted(unknown)}; choose from {PHASES}.")
    with _num_threads(threads):
        return _run(model, batch_size, image_size, channels, classes, width, dev, dtype, channels_last,
                    compile, repeats, warmup, min_time, phases, eps, xi, seed)


@contextlib.contextmanager
def _num_threads(n: int | None):
    """torch.set_num_threads(n) for the bench only; the caller's setting is restored."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run(model, batch_size, image_size, channels, classes, width, dev, dtype, channels_last, compile,
         repeats, warmup, min_time, phases, eps, xi, seed) -> dict:
    """The timing loop of `bench` (arguments already checked)."""
    on_cuda = dev.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    set_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = build_model(model, classes, channels, width, pretrained=False).to(dev, memory_format=fmt)
    folded = fold_bn(net).to(memory_format=fmt)
    if compile:
        net, folded = torch.compile(net), torch.compile(folded)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, channels, image_size, image_size, generator=g).to(dev, memory_format=fmt)
    y = torch.randint(0, classes, (batch_size,), generator=g).to(dev)

    def autocast():
        if DTYPES[dtype] is None:
            return contextlib.nullcontext()
        return torch.autocast(dev.type, dtype=DTYPES[dtype])

    fns = {k: v for k, v in _phase_fns(net, folded, x, y, eps, xi, autocast).items() if k in phases}
    times, iters = time_round_robin({name: (lambda i, fn=fn: fn()) for name, fn in fns.items()}, repeats,
                                    warmup, dev, min_time)
    results = {}
    for name, ts in times.items():
        best, med = min(ts), statistics.median(ts)
        results[name] = {"images_per_s": batch_size / best, "seconds_per_batch": best,
                         "median_seconds_per_batch": med, "spread": (max(ts) - best) / med,
                         "iters_per_repeat": iters[name], "seconds_per_batch_all": ts}
    sec = {k: v["seconds_per_batch"] for k, v in results.items()}
    pairs = {"fgsm_over_plain_train": ("fgsm_train", "plain_train"),
             "pgd_over_plain_train": ("pgd_train", "plain_train"),
             "pgd_over_fgsm_train": ("pgd_train", "fgsm_train"),
             "tpap_over_plain_infer": ("tpap_infer", "plain_infer"),
             "tpap_over_plain_infer_folded": ("tpap_infer_folded", "plain_infer_folded"),
             "tpap_folded_over_tpap_infer": ("tpap_infer_folded", "tpap_infer")}
    ratios = {k: sec[a] / sec[b] for k, (a, b) in pairs.items() if a in sec and b in sec}
    targets = {k: {"ratio": ratios[k], "limit": lim, "met": ratios[k] <= lim} for k, lim in TARGETS.items()
               if k in ratios}
    return {"model": model, "batch_size": batch_size, "image_size": image_size, "channels": channels,
            "classes": classes, "width": width, "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if on_cuda else _cpu_name(),
            "dtype": dtype, "channels_last": channels_last, "compile": compile,
            "torch": str(torch.__version__), "threads": torch.get_num_threads(), "repeats": repeats,
            "warmup": warmup, "min_time": min_time, "eps": eps, "xi": xi, "results": results,
            "ratios": ratios, "targets": targets}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "cpu"


def table(rec: dict) -> str:
    """A short human-readable view of a bench record."""
    size = f"{rec['channels']}x{rec['image_size']}x{rec['image_size']}"
    lines = [f"{rec['model']} {size} batch {rec['batch_size']} | {rec['device']} ({rec['device_name']})"
             f" {rec['dtype']} channels_last={rec['channels_last']} compile={rec['compile']}"
             f" | torch {rec['torch']}, {rec['threads']} threads",
             f"{'phase':<18}{'images/s':>10}{'ms/batch':>10}{'spread':>8}"]
    for name, r in rec["results"].items():
        lines.append(f"{name:<18}{r['images_per_s']:>10.1f}{1e3 * r['seconds_per_batch']:>10.1f}"
                     f"{100 * r['spread']:>7.1f}%")
    for k, v in rec["ratios"].items():
        t = rec["targets"].get(k)
        verdict = f"  (target <= {t['limit']}: {'met' if t['met'] else 'NOT met'})" if t else ""
        lines.append(f"{k:<30}{v:6.2f}x{verdict}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tpap_nb.experiments.cost",
                                description="Throughput of training and inference phases on synthetic batches "
                                            "(the speed side of Tab. 5).")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--width", type=int, default=None, help="model width (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on CUDA, else fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first step)")
    p.add_argument("--repeats", type=int, default=BENCH["repeats"])
    p.add_argument("--warmup", type=int, default=BENCH["warmup"])
    p.add_argument("--min-time", type=float, default=BENCH["min_time"], help="seconds per repeat, at least one step")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the record here")
    a = p.parse_args(argv)
    rec = bench(a.model, a.batch_size, a.image_size, a.channels, a.classes, a.width, a.device, a.dtype,
                a.channels_last, a.compile, a.repeats, a.warmup, a.min_time,
                tuple(s for s in a.phases.split(",") if s), a.threads)
    text = json.dumps(rec, indent=2)
    print(text)
    print(table(rec))
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    return rec


if __name__ == "__main__":
    main()
