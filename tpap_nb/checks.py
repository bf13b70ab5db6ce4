"""Input checks that turn bad input into one clear error."""
from __future__ import annotations

import torch

_TOL = 1e-6


def check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Require a float batch (N, C, H, W) with pixels in [0, 1] (the paper's eps is in pixel units)."""
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
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one reduction, one sync
        if lo < -_TOL or hi > 1 + _TOL:
            raise ValueError(
                f"{name} has pixels in [{lo:.3f}, {hi:.3f}], outside [0, 1]. tpap_nb works in "
                "pixel units (eps = 8/255 means 8 grey levels): pass unnormalised images and let "
                "the model normalise in its first layer."
            )
    return x


def check_labels(y: torch.Tensor, n: int, name: str = "y") -> torch.Tensor:
    """Require integer class labels of length n."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != n or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name} must be a 1-D integer tensor of {n} class labels, got {shape}.")
    return y
