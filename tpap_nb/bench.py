"""Throughput of plain / FGSM-AT / PGD-10-AT training and plain / TPAP inference (the cost claim, Tab. 5).

    python -m tpap_nb.bench --model small_cnn --image-size 32 --batch-size 128 --json runs/bench.json

Synthetic batches of the right shape, so no data set is needed. Phases are timed round-robin
(repeat 1 of every phase, then repeat 2, ...) so a load change on a shared machine hits all
phases alike. Each number is the fastest repeat: other work on a shared machine only ever adds
time (the advice of Python's timeit). The median and the spread (max - min) / median are in the
record too; a spread of tens of percent says the machine was busy, so compare several runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from .config import get_device, set_seed
from .models import build_model, fold_bn
from .purify import TPAP
from .train import training_loss

PHASES = ("plain_train", "fgsm_train", "pgd_train", "plain_infer", "tpap_infer", "plain_infer_folded",
          "tpap_infer_folded")
# Paper, Tab. 5: TPAP 8.26/2.02 = 4.1x. "_folded": both models with BatchNorm folded into the convs.
TARGETS = {"fgsm_over_plain_train": 2.3, "tpap_over_plain_infer": 3.0, "tpap_over_plain_infer_folded": 3.0}
DTYPES = {"float32": None, "bf16": torch.bfloat16}


def _phase_fns(model, folded, x, y, eps, xi, autocast):
    """One step of each phase as a zero-argument callable."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)

    def train(recipe):
        cfg = dict(recipe=recipe, eps=eps, alpha=eps, pgd_steps=10, pgd_alpha=eps / 4)

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
          channels_last: bool | None = None, compile: bool = False, repeats: int = 7, warmup: int = 1,
          min_time: float = 0.3, phases=PHASES, threads: int | None = None, eps: float = 8 / 255,
          xi: float = 8 / 255, seed: int = 0) -> dict:
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

    def sync():
        if on_cuda:
            torch.cuda.synchronize(dev)

    fns = {k: v for k, v in _phase_fns(net, folded, x, y, eps, xi, autocast).items() if k in phases}
    iters = {}
    for name, fn in fns.items():  # warm-up (and compilation), then size each repeat to >= min_time
        for _ in range(max(warmup, 1)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            dt = time.perf_counter() - t0
        iters[name] = max(1, int(min_time / max(dt, 1e-9) + 0.999))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(iters[name]):
                fn()
            sync()
            times[name].append((time.perf_counter() - t0) / iters[name])
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
    p = argparse.ArgumentParser(prog="python -m tpap_nb.bench", description=__doc__.splitlines()[0])
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
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--min-time", type=float, default=0.3, help="seconds per repeat, at least one step")
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
