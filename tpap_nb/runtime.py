"""The one place a run's device settings are decided: device, precision, memory format, threads, compile.

Training (`train.fit`), attacks, purification and evaluation (`evaluate`) all take their settings from
a `Runtime` resolved here from a config's `device`, `precision`, `attack_precision`, `memory_format`,
`threads` and `compile`. "auto" (the default) means:

- precision: bf16 autocast where the device computes bf16 natively (CUDA with bf16 support; a CPU with
  avx512_bf16 or AMX, or, where the CPU's flags cannot be read, a timed micro-probe that finds bf16
  faster), float32 elsewhere. A CPU that only emulates bf16 is many times slower in it, so it never
  gets it by "auto".
- attack_precision: the precision of attacks, purification and evaluation. "auto" follows
  `ATTACK_PRECISION_AUTO` (docs/speed.md has the float32-vs-bf16 measurement it rests on).
- memory_format: channels_last inputs wherever bf16 is on (the convolutions then run in the layout
  oneDNN / cuDNN are fastest in; the model's weights are left as they are).
- $TPAP_PRECISION=float32 (or bf16) stands in for every precision left at "auto" (the tests set float32).
- threads: every core this process may use (`os.sched_getaffinity`), unless the user set
  `threads`, $TPAP_THREADS or $OMP_NUM_THREADS; only inside `Runtime.scope()`, restored afterwards.
- compile: off unless asked (True: inductor, or a backend name).

The float32 path is one setting away: precision="float32" (and attack_precision="float32").
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "float32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
# What attack_precision="auto" resolves to: "train" = the training precision (bf16 where native). Set from the
# measurement of PGD-20 and AutoAttack in both precisions on one CIFAR-10 model (docs/speed.md).
ATTACK_PRECISION_AUTO = "train"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags of an x86 Linux machine (/proc/cpuinfo), None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None  # no x86 flags line (e.g. ARM's 'Features'): decide by timing


def _bf16_faster_by_timing(repeats: int = 3) -> bool:
    """A micro-probe: a conv forward + backward in bf16 autocast against float32 on this CPU (about 1 s)."""
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    x = torch.rand(32, 32, 16, 16, requires_grad=True)

    def once(bf16: bool) -> float:
        best = float("inf")
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                conv(x).float().sum().backward()
            best = min(best, time.perf_counter() - t0)
        return best

    return once(True) * 1.25 < once(False)


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether `device_type` computes bf16 natively (cached per process)."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type != "cpu":
        return False
    flags = _cpu_flags()
    if flags is not None:
        return any(f in flags for f in BF16_CPU_FLAGS)
    return _bf16_faster_by_timing()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _env_threads() -> int | None:
    for var in ("TPAP_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"${var}={value!r} is not a number of threads; set it to an integer >= 1 "
                                 "or unset it.") from None
            if n < 1:
                raise ValueError(f"${var}={n} must be >= 1 (or unset: all {available_cores()} cores).")
            return n
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but no CUDA GPU is visible; use device='cpu'.")
    return dev


@dataclass(frozen=True)
class Runtime:
    """Resolved device settings of one run; `scope()` applies the thread count, `autocast()` the precision."""

    device: torch.device
    precision: str  # "float32" or "bf16": training
    attack_precision: str  # "float32" or "bf16": attacks, purification, evaluation
    channels_last: bool
    threads: int
    compile: bool | str = False

    def autocast(self, attack: bool = False):
        """bf16 autocast for training (attack=False) or for attacks and evaluation (attack=True), else nothing."""
        precision = self.attack_precision if attack else self.precision
        if precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """x in the run's memory format (channels_last for 4-d image batches when on)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def scope(self):
        """Run with this runtime's thread count (CPU); the caller's count is restored afterwards."""
        before = torch.get_num_threads()
        if self.device.type == "cpu" and self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            yield self
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    @contextlib.contextmanager
    def attacking(self):
        """The scope and the attack precision together: what an evaluation wraps around its attacks."""
        with self.scope(), self.autocast(attack=True):
            yield self

    def compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module training steps run through: `model` itself, or torch.compile of it (shares the weights)."""
        if not self.compile:
            return model
        return torch.compile(model, backend="inductor" if self.compile is True else self.compile)

    @property
    def fast(self) -> bool:
        return self.precision == "bf16" or self.channels_last or bool(self.compile)

    def record(self) -> dict:
        """Plain types for a checkpoint's or a figure's metadata."""
        rec = asdict(self)
        rec["device"] = str(self.device)
        return rec

    def describe(self) -> str:
        """'cpu, 2 threads, bf16 autocast + channels_last (attacks float32)': for labels and logs."""
        parts = [str(self.device)]
        if self.device.type == "cpu":
            parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        fast = " + ".join(([f"{self.precision} autocast"] if self.precision == "bf16" else ["float32"])
                          + (["channels_last"] if self.channels_last else [])
                          + ([f"compile={self.compile}"] if self.compile else []))
        parts.append(fast)
        if self.attack_precision != self.precision:
            parts.append(f"attacks {self.attack_precision}")
        return ", ".join(parts)


def _check_choice(key: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{key}={value!r}: choose one of {choices}.")
    return value


def resolve(device: str | torch.device = "auto", precision: str = "auto", attack_precision: str = "auto",
            memory_format: str = "auto", threads: int | None = None, compile: bool | str = False) -> Runtime:
    """The Runtime for these settings ("auto" resolved on this machine; see the module's docstring)."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    _check_choice("precision", precision, PRECISIONS)
    _check_choice("attack_precision", attack_precision, PRECISIONS)
    _check_choice("memory_format", memory_format, MEMORY_FORMATS)
    if precision == "bf16" and dev.type not in ("cpu", "cuda"):
        raise ValueError(f"precision='bf16' is supported on cpu and cuda here, not {dev.type}; use 'float32'.")
    if precision == "auto" and os.environ.get("TPAP_PRECISION"):
        precision = _check_choice("$TPAP_PRECISION", os.environ["TPAP_PRECISION"], PRECISIONS)
    train = precision if precision != "auto" else ("bf16" if native_bf16(dev.type) else "float32")
    if attack_precision == "auto":
        attack_precision = train if ATTACK_PRECISION_AUTO == "train" else ATTACK_PRECISION_AUTO
    if memory_format == "auto":
        channels_last = train == "bf16"
    else:
        channels_last = memory_format == "channels_last"
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} must be an integer >= 1 (or None: all {available_cores()} cores).")
    n = threads or _env_threads() or available_cores()
    if compile not in (False, True) and not isinstance(compile, str):
        raise ValueError(f"compile={compile!r}: use False, True (inductor) or a torch.compile backend name.")
    return Runtime(dev, train, attack_precision, channels_last, n, compile)


RUNTIME_KEYS = ("device", "precision", "attack_precision", "memory_format", "threads", "compile")


def runtime_for(cfg: Mapping, device: torch.device | None = None) -> Runtime:
    """The Runtime of a config (its RUNTIME_KEYS; absent keys are "auto"), on `device` when given."""
    kw = {k: cfg[k] for k in RUNTIME_KEYS if cfg.get(k) is not None}
    if device is not None:
        kw["device"] = device
    return resolve(**kw)
