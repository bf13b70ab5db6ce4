"""Input checks that turn bad input into one clear error, and the one import of torchattacks."""
from __future__ import annotations

import math

import torch

_TOL = 1e-6
TORCHATTACKS_INSTALL = "pip install --no-deps torchattacks==3.5.1"


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
    if x.numel():
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
    """Require integer class labels of length n, each in [0, num_classes) when num_classes is given."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != n or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name} must be a 1-D integer tensor of {n} class labels, got {shape}.")
    if num_classes is not None and y.numel():
        lo, hi = (int(v) for v in torch.aminmax(y.detach()))
        if lo < 0 or hi >= num_classes:
            raise ValueError(label_error(lo, hi, num_classes, name))
    return y


def label_error(lo: int, hi: int, num_classes: int, name: str = "y") -> str:
    """The message for labels outside a model's classes."""
    return (f"{name} has labels in [{lo}, {hi}], but the model has {num_classes} classes (labels 0 to "
            f"{num_classes - 1}). Use the labels of the data set the model was trained on "
            "(data.y_test), or a model built with that many classes.")


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
