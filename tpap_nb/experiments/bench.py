"""The speed bench (`make bench`): the profile's model on synthetic batches, float32 against the fast path.

    python -m tpap_nb.experiments.bench                     the `cifar` profile's model and batch
    python -m tpap_nb.experiments.bench --profile quick --json runs/bench.json
    python -m tpap_nb.experiments.bench --model resnet18 --width 64 --batch-size 128

For each runtime (float32, and the fast path `tpap_nb.runtime` picks here: bf16 autocast + channels_last
where the device computes bf16 natively), one timer (`cost.time_round_robin`, phases in turn, fastest
repeat) measures seconds per batch of:

- `loop_fgsm_train`: one FGSM-AT step written out here (eval-mode FGSM, then a training step), the
  plain reference every other number is compared with;
- `kit_fgsm_train`: the same step through the kit (`train.train_step`, what `fit` runs per batch);
- `fit_fgsm`: the kit's whole `fit` (batching, augmentation, schedule) for a few batches, per batch;
- `plain_train`, `pgd_train`: plain and PGD-k-AT training steps (Tab. 5's other rows);
- `plain_infer`, `tpap_infer`: a forward, and purify + forward (Eq. 7-9); `_folded`: the same with
  BatchNorm folded into the convolutions (`models.fold_bn`, for deployment).

It prints the fast path's speed-up per phase, and the kit's step and fit against the written-out loop
(`fit_over_loop`: the issue's target is within 15 %). No data set is needed; nothing is written unless
--json is given.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from ..checks import inputs_checked
from ..config import get_profile, set_seed
from ..data import SHAPES, Dataset
from ..models import build_model, fold_bn
from ..purify import TPAP
from ..runtime import Runtime, resolve
from ..train import fit, train_step
from .cost import time_round_robin

PHASES = ("loop_fgsm_train", "kit_fgsm_train", "fit_fgsm", "plain_train", "pgd_train", "plain_infer", "tpap_infer",
          "plain_infer_folded", "tpap_infer_folded")
FIT_BATCHES = 8  # batches per timed `fit` call
FIT_OVER_LOOP_LIMIT = 1.15  # the kit's fit within 15 % of the written-out step
# Cost ratios with targets (paper, Tab. 5: TPAP's test 4.1x plain): (numerator, denominator, limit).
RATIOS = {"fgsm_over_plain_train": ("kit_fgsm_train", "plain_train", 2.3),
          "tpap_over_plain_infer": ("tpap_infer", "plain_infer", 3.0),
          "tpap_over_plain_infer_folded": ("tpap_infer_folded", "plain_infer_folded", 3.0)}


@dataclass(frozen=True)
class Shape:
    """What is timed: a model on batches of one shape."""

    model: str = "resnet18"
    width: int | None = 16
    batch_size: int = 128
    channels: int = 3
    image_size: int = 32
    classes: int = 10

    @classmethod
    def of_profile(cls, cfg: Mapping) -> Shape:
        """The model, width and batch of a config, on its data set's shape (data.SHAPES)."""
        channels, size, classes = SHAPES.get(cfg["dataset"], (3, 32, 10))
        return cls(cfg["model"], cfg["width"], cfg["batch_size"], channels, size, classes)


@dataclass(frozen=True)
class Timing:
    """How long to time: repeats of each phase after warm-up calls, each repeat at least min_time seconds."""

    repeats: int
    warmup: int
    min_time: float

    @classmethod
    def of(cls, cfg: Mapping) -> Timing:
        """The config's (cfg['bench'], config.BENCH)."""
        b = cfg["bench"]
        return cls(b["repeats"], b["warmup"], b["min_time"])


def bench_config(cfg: Mapping, shape: Shape, rt: Runtime, seed: int = 0) -> Mapping:
    """What the bench trains with: cfg['bench']'s radii and optimiser on the shape's model and batch, one epoch,
    no evaluation, no clean forward (as the written-out step), in runtime `rt`."""
    b = cfg["bench"]
    eps = b["eps"]
    return cfg | dict(
        dataset="synthetic", model=shape.model, width=shape.width, eps=eps, attack_eps=eps, xi=b["xi"], alpha=eps,
        pgd_steps=b["pgd_steps"], pgd_alpha=b["pgd_alpha_per_eps"] * eps, epochs=1, batch_size=shape.batch_size,
        lr=b["lr"], milestones=(), momentum=b["momentum"], weight_decay=b["weight_decay"], n_train=None, n_eval=1,
        eval_every=0, seed=seed, clean_bn_forward=False, lr_schedule="multistep", device=str(rt.device),
        precision=rt.precision, attack_precision=rt.attack_precision,
        memory_format="channels_last" if rt.channels_last else "contiguous", threads=rt.threads, compile=rt.compile)


def _loop_fgsm_step(model, opt, x, y, eps: float, rt: Runtime) -> None:
    """One FGSM-AT step written out: FGSM (Eq. 1-2, alpha = eps) in eval mode, then CE on x_adv, SGD step."""
    x = rt.inputs(x)
    model.eval()
    x_in = x.clone().requires_grad_(True)
    with rt.autocast():
        loss = F.cross_entropy(model(x_in), y)
    (grad,) = torch.autograd.grad(loss, x_in)
    x_adv = (x + eps * grad.sign()).clamp(0, 1)
    model.train()
    with rt.autocast():
        loss = F.cross_entropy(model(x_adv), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _phases(shape: Shape, rt: Runtime, phases, seed: int, cfg: Mapping) -> dict:
    """One zero-argument step per phase, each on its own copy of a seeded model (a step changes the weights)."""
    run = bench_config(cfg, shape, rt, seed)
    eps, xi = run["eps"], run["xi"]
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape.batch_size, shape.channels, shape.image_size, shape.image_size, generator=g).to(rt.device)
    y = torch.randint(0, shape.classes, (shape.batch_size,), generator=g).to(rt.device)
    n_fit = shape.batch_size * FIT_BATCHES
    u8 = torch.randint(0, 256, (n_fit, shape.channels, shape.image_size, shape.image_size), generator=g,
                       dtype=torch.uint8)
    augment = "crop_flip" if shape.image_size >= 32 else "none"
    data = Dataset("synthetic", u8, torch.arange(n_fit) % shape.classes, u8[:1], torch.zeros(1, dtype=torch.long),
                   [str(i) for i in range(shape.classes)], augment).to(rt.device)
    def fresh():
        set_seed(seed)
        model = build_model(shape.model, shape.classes, shape.channels, shape.width, pretrained=False).to(rt.device)
        opt = torch.optim.SGD(model.parameters(), lr=run["lr"], momentum=run["momentum"],
                              weight_decay=run["weight_decay"])
        return model, opt

    def kit(recipe):
        model, opt = fresh()
        net = rt.compiled(model)

        def step():
            model.train()
            with inputs_checked():  # as in fit: the batch's entry point checked it once
                train_step(net, opt, x, y, run | {"recipe": recipe}, rt)
        return step

    def loop():
        model, opt = fresh()
        return lambda: _loop_fgsm_step(model, opt, x, y, eps, rt)

    def fit_call():
        model, _ = fresh()
        return lambda: fit(model, data, run | {"recipe": "fgsm"}, progress=False)

    def infer(purified: bool, folded: bool = False):
        model, _ = fresh()
        model = fold_bn(model.eval()).eval() if folded else model.eval()
        net = TPAP(model, xi) if purified else model

        def step():
            with rt.autocast(attack=True):
                if purified:
                    net(rt.inputs(x))
                else:
                    with torch.no_grad():
                        net(rt.inputs(x))
        return step

    makers = {"loop_fgsm_train": loop, "kit_fgsm_train": lambda: kit("fgsm"), "fit_fgsm": fit_call,
              "plain_train": lambda: kit("plain"), "pgd_train": lambda: kit("pgd"),
              "plain_infer": lambda: infer(False), "tpap_infer": lambda: infer(True),
              "plain_infer_folded": lambda: infer(False, True), "tpap_infer_folded": lambda: infer(True, True)}
    return {name: makers[name]() for name in phases}


def run_bench(shape: Shape, rt: Runtime, timing: Timing | None = None, phases=PHASES, seed: int = 0,
              cfg: Mapping | None = None) -> dict:
    """Seconds per batch (fastest repeat, median, spread) of each phase under one runtime; settings and timing
    from cfg (default: get_profile()), its `bench` group (config.BENCH)."""
    cfg = cfg if cfg is not None else get_profile()
    timing = timing or Timing.of(cfg)
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise ValueError(f"Unknown phase(s) {sorted(unknown)}; choose from {PHASES}.")
    with rt.scope():
        fns = _phases(shape, rt, phases, seed, cfg)
        times, iters = time_round_robin({k: (lambda i, fn=fn: fn()) for k, fn in fns.items()}, timing.repeats,
                                        timing.warmup, rt.device, timing.min_time)
    results = {}
    for name, ts in times.items():
        per_batch = [t / FIT_BATCHES for t in ts] if name == "fit_fgsm" else ts
        best, med = min(per_batch), statistics.median(per_batch)
        results[name] = {"seconds_per_batch": best, "images_per_s": shape.batch_size / best,
                         "median_seconds_per_batch": med, "spread": (max(per_batch) - best) / med,
                         "iters_per_repeat": iters[name], "seconds_per_batch_all": per_batch}
    return {"runtime": rt.record(), "label": rt.describe(), "results": results}


def compare(shape: Shape, timing: Timing | None = None, phases=PHASES, device: str = "auto",
            threads: int | None = None, seed: int = 0, cfg: Mapping | None = None) -> dict:
    """float32 against the fast path `runtime.resolve` picks on this device, in one run; ratios and targets."""
    fast = resolve(device, threads=threads)
    plain = replace(fast, precision="float32", attack_precision="float32", channels_last=False, compile=False)
    cfg = cfg if cfg is not None else get_profile()
    timing = timing or Timing.of(cfg)
    runs = {"float32": run_bench(shape, plain, timing, phases, seed, cfg)}
    if fast != plain:
        runs["fast"] = run_bench(shape, fast, timing, phases, seed, cfg)
    sec = {k: {p: r["seconds_per_batch"] for p, r in v["results"].items()} for k, v in runs.items()}
    rec = {"shape": asdict(shape), "timing": asdict(timing), "device": str(fast.device),
           "device_name": torch.cuda.get_device_name(fast.device) if fast.device.type == "cuda" else cpu_name(),
           "torch": str(torch.__version__), "runs": runs}
    if "fast" in runs:
        rec["fast_speedup"] = {p: sec["float32"][p] / sec["fast"][p] for p in sec["fast"]}
    best = sec.get("fast", sec["float32"])
    rec["ratios"] = {k: {"ratio": best[a] / best[b], "limit": lim, "met": best[a] / best[b] <= lim}
                     for k, (a, b, lim) in RATIOS.items() if a in best and b in best}
    if "loop_fgsm_train" in best:
        rec["kit_over_loop"] = {p: best[p] / best["loop_fgsm_train"] for p in ("kit_fgsm_train", "fit_fgsm")
                                if p in best}
        if "fit_fgsm" in best:
            ratio = rec["kit_over_loop"]["fit_fgsm"]
            rec["fit_over_loop_target"] = {"ratio": ratio, "limit": FIT_OVER_LOOP_LIMIT,
                                           "met": ratio <= FIT_OVER_LOOP_LIMIT}
    return rec


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "cpu"


def table(rec: dict) -> str:
    """The record as a few lines: ms per batch per phase and runtime, the speed-ups, the kit against the loop."""
    s = rec["shape"]
    names = list(rec["runs"])
    lines = [f"{s['model']} w{s['width']}, {s['channels']}x{s['image_size']}x{s['image_size']}, batch "
             f"{s['batch_size']} | {rec['device']} ({rec['device_name']}), torch {rec['torch']}",
             "runtimes: " + "; ".join(f"{k} = {v['label']}" for k, v in rec["runs"].items()),
             f"{'phase':<18}" + "".join(f"{k + ' ms':>14}" for k in names) + ("  speed-up" if "fast" in names else "")]
    for phase in rec["runs"][names[0]]["results"]:
        row = f"{phase:<18}" + "".join(f"{1e3 * rec['runs'][k]['results'][phase]['seconds_per_batch']:>14.1f}"
                                       for k in names)
        if "fast_speedup" in rec:
            row += f"{rec['fast_speedup'][phase]:>9.2f}x"
        lines.append(row)
    for k, t in rec.get("ratios", {}).items():
        lines.append(f"{k}: {t['ratio']:.2f}x (target <= {t['limit']}: {'met' if t['met'] else 'NOT met'})")
    for k, v in rec.get("kit_over_loop", {}).items():
        lines.append(f"{k} / loop_fgsm_train: {v:.2f}x")
    t = rec.get("fit_over_loop_target")
    if t:
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"fit within {100 * (t['limit'] - 1):.0f} % of the written-out step: {verdict}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tpap_nb.experiments.bench", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cifar", help="time this profile's model and batch (default cifar)")
    p.add_argument("--model", default=None, help="instead of the profile's")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="default: every core (tpap_nb.runtime)")
    p.add_argument("--repeats", type=int, default=None, help="default: the profile's (config.BENCH)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--min-time", type=float, default=None)
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    p.add_argument("--json", default=None, help="also write the record here")
    a = p.parse_args(argv)
    cfg = get_profile(a.profile)
    shape = Shape.of_profile(cfg)
    shape = replace(shape, **{k: v for k, v in (("model", a.model), ("width", a.width), ("batch_size", a.batch_size))
                              if v is not None})
    timing = replace(Timing.of(cfg), **{k: v for k, v in (("repeats", a.repeats), ("warmup", a.warmup),
                                                          ("min_time", a.min_time)) if v is not None})
    rec = compare(shape, timing, tuple(s for s in a.phases.split(",") if s), a.device, a.threads, cfg=cfg)
    rec["profile"] = a.profile
    print(table(rec))
    if a.json:
        from pathlib import Path

        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rec, indent=1) + "\n")
    return rec


if __name__ == "__main__":
    main()
