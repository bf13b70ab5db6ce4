"""Input checks that turn bad input into one clear error, and the one import of torchattacks.

Every public entry point of the kit (purify, TPAP, the registry's attacks, fgsm / pgd, the evaluation)
checks its radii, counts, images, labels and model once, on entry. The kit's own per-step calls run
inside `inputs_checked()`, where the scans that cost a host sync on a GPU (pixel range, label range)
and the model walk are skipped: they were done once, by the caller that entered.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import numbers

import torch
import torch.nn as nn

_TOL = 1e-6
TORCHATTACKS_INSTALL = "pip install --no-deps torchattacks==3.5.1"
_CHECKED = contextvars.ContextVar("tpap_nb_inputs_checked", default=False)


@contextlib.contextmanager
def inputs_checked():
    """Inside: images, labels and models count as checked (their entry point did it once); no per-step scans."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


def check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Require a float batch (N, C, H, W) with finite pixels in [0, 1] (the paper's eps is in pixel units)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images, got {type(x).__name__}.")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}; "
            "for a single image use x.unsqueeze(0)."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} has dtype {x.dtype}; expected float pixels in [0, 1] "
            "(divide uint8 images by 255)."
        )
    if x.numel() and not _CHECKED.get():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one reduction, one sync; NaN propagates
        if math.isnan(lo) or math.isnan(hi):
            raise ValueError(
                f"{name} has NaN pixels. Images must hold finite values in [0, 1]; look for a division "
                "by zero or an overflow in whatever produced them."
            )
        if lo < -_TOL or hi > 1 + _TOL:
            raise ValueError(
                f"{name} has pixels in [{lo:.3f}, {hi:.3f}], outside [0, 1]. tpap_nb works in "
                "pixel units (eps = 8/255 means 8 grey levels): pass unnormalised images and let "
                "the model normalise in its first layer."
            )
    return x


def check_labels(y: torch.Tensor, n: int, num_classes: int | None = None, name: str = "y") -> torch.Tensor:
    """Integer class labels of length n (any integer dtype), returned as int64; each in [0, num_classes) when given."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class labels, got {type(y).__name__} "
                        f"(torch.as_tensor({name}) makes one).")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} has dtype {y.dtype}; class labels must be integers (any integer dtype: int64, "
                        f"int32, uint8, ...). {name}.long() converts whole-number labels.")
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D tensor of {n} class labels (one per image), got shape "
                         f"{tuple(y.shape)}.")
    if y.dtype != torch.int64:
        y = y.long()  # torch's losses and gathers take int64 only: converted once, here
    if num_classes is not None and y.numel() and not _CHECKED.get():
        lo, hi = (int(v) for v in torch.aminmax(y.detach()))
        if lo < 0 or hi >= num_classes:
            raise ValueError(label_error(lo, hi, num_classes, name))
    return y


def label_error(lo: int, hi: int, num_classes: int, name: str = "y") -> str:
    """The message for labels outside a model's classes."""
    return (f"{name} has labels in [{lo}, {hi}], but the model has {num_classes} classes (labels 0 to "
            f"{num_classes - 1}). Use the labels of the data set the model was trained on "
            "(data.y_test), or a model built with that many classes.")


def check_model_input(model: nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """x fits `model`: the channel count of its first convolution, the dtype and device of its weights."""
    if _CHECKED.get() or not isinstance(model, nn.Module) or not isinstance(x, torch.Tensor):
        return
    what = type(model).__name__
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and conv.in_channels and x.dim() == 4 and x.shape[1] != conv.in_channels:
        fix = {(1, 3): f" (grey images for an RGB model: {name}.expand(-1, 3, -1, -1))",
               (3, 1): f" (RGB images for a grey model: {name}.mean(1, keepdim=True))"}.get(
                   (x.shape[1], conv.in_channels), "")
        raise ValueError(f"{name} has {x.shape[1]} channel(s) (shape {tuple(x.shape)}), but {what} takes "
                         f"{conv.in_channels} (its first convolution). Pass images of the data set the model was "
                         f"built for{fix}.")
    weight = next((t for t in model.parameters() if t.is_floating_point()), None)
    if weight is None:
        return
    if weight.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but {what}'s weights are {weight.dtype}: convert one to the "
                        f"other ({name}.to({weight.dtype}) or model.to({x.dtype})). The kit keeps weights and "
                        "images in float32 and runs bf16 through autocast (runtime.py), not by casting.")
    if weight.device != x.device:
        raise ValueError(f"{name} is on {x.device} but {what}'s weights are on {weight.device}: move one "
                         f"({name}.to({str(weight.device)!r}) or model.to({str(x.device)!r})).")


# ----------------------------------------------------------------------------- numbers
def _number(value, name: str, example: str) -> float:
    """A real number (int, float, numpy scalar or one-element tensor), not a bool or a string."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype == torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} = {value!r} is a {type(value).__name__}; it must be a number ({example}).")
    return float(value)


def check_radius(value, name: str = "eps", allow_negative: bool = False, flag: str = "") -> float:
    """A radius or step size in pixel units of [0, 1] images: a finite number in [0, 1].

    A negative one is refused (for xi, unless the caller opted in: `flag` names the keyword that does).
    """
    v = _number(value, name, f"pixel units in [0, 1], e.g. {name}=8/255")
    if not math.isfinite(v):
        raise ValueError(f"{name} = {v}: not a finite number. Radii are in pixel units in [0, 1], "
                         f"e.g. {name}=8/255.")
    if v < 0 and not allow_negative:
        if name == "xi":
            raise ValueError(f"xi = {v:g} is negative: the purification would step towards the predicted label "
                             f"instead of away from it. Pass {flag or 'allow_negative_xi'}=True to do that on "
                             "purpose, or use a radius in [0, 1], e.g. xi=8/255.")
        raise ValueError(f"{name} = {v:g} is negative: a negative radius turns the attack into a descent step "
                         f"(it lowers the loss, so accuracy rises). Radii are in pixel units in [0, 1], e.g. "
                         f"{name}=8/255.")
    if abs(v) > 1 + _TOL:
        guess = f"; did you mean {v:g}/255 (= {v / 255:.4g})?" if abs(v) <= 255 else "."
        raise ValueError(f"{name} = {v:g}: radii are in pixel units in [0, 1] (images are in [0, 1]){guess}")
    return v


def check_count(value, name: str, minimum: int = 1) -> int:
    """A whole number of iterations, queries, images... >= minimum."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = f" ({name}={int(value)})" if isinstance(value, float) and value.is_integer() else ""
        raise TypeError(f"{name} = {value!r} is a {type(value).__name__}; it must be a whole number{hint}.")
    if value < minimum:
        raise ValueError(f"{name} = {value} must be >= {minimum}.")
    return int(value)


def check_real(value, name: str, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False, what: str = "") -> float:
    """A finite real number in [low, high] (open ends where asked); `what` says what it is, for the message."""
    v = _number(value, name, what or "a finite number")
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        rng = " and ".join(p for p in (lo, hi) if p) or "finite"
        raise ValueError(f"{name} = {v:g} must be a finite number {rng}" + (f" ({what})." if what else "."))
    return v


def check_seed(value, name: str = "seed") -> int:
    """An integer seed (a string or a float is refused where the attack is built, not when it runs)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} = {value!r} is a {type(value).__name__}; a seed is an integer, e.g. {name}=0.")
    return int(value)


class TorchattacksMissing(ImportError):
    """torchattacks is not installed; the message gives the install command."""


def import_torchattacks():
    """torchattacks, imported where an attack needs it; one clear error with the install command when missing."""
    try:
        import torchattacks
    except ImportError as err:
        raise TorchattacksMissing(
            f"This attack runs torchattacks' implementation, which is not installed ({err}). Install it with\n"
            f"    {TORCHATTACKS_INSTALL}\n"
            "(--no-deps on purpose: its requests~=2.25.1 pin would downgrade JupyterLab; see docs/install.md). "
            "`make setup` does this for you."
        ) from None
    return torchattacks


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): for errors that name a cause."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
