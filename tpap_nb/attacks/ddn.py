"""DDN, Decoupled Direction and Norm (Rony et al. CVPR 2019): the DDN column of Tab. 1-2.

The authors ran advertorch's DDNL2Attack with nb_iter=20, gamma=0.05, init_norm=1, quantize=True,
levels=16. This is our own small version of the same algorithm (Rony et al. Alg. 1, as in
advertorch and jeromerony/fast_adversarial):

- direction: one SGD step along grad_x CE / ||grad_x CE||_2, step size cosine-annealed from 1 to
  0.01 over `steps` (the lr of the step i is the cosine schedule at i + 1, as advertorch's
  scheduler.step() comes first);
- norm: the perturbation is rescaled to a norm m that shrinks by (1 - gamma) when the current point
  is adversarial and grows by (1 + gamma) when it is not (m starts at init_norm);
- x_adv is quantised to `levels` grey levels, round(x_adv * (levels - 1)) / (levels - 1), and
  clipped to [0, 1] after every step (levels=None turns quantisation off).

Returned: the smallest-L2 adversarial point seen (so on the quantisation grid), or x itself where
none was found. Unbounded: use the registry's `ddn_l2` for an L2 budget. With levels=16 the
rounding alone moves most pixels by up to 1/30, so the reported norms are not small.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_images


def quantize(x: torch.Tensor, levels: int | None) -> torch.Tensor:
    """Round pixels to `levels` evenly spaced grey levels in [0, 1] (levels=None: unchanged)."""
    if not levels:
        return x
    return torch.round(x * (levels - 1)) / (levels - 1)


def ddn(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 20,
    gamma: float = 0.05,
    init_norm: float = 1.0,
    levels: int | None = 16,
) -> torch.Tensor:
    """DDN (Rony et al. Alg. 1): normalised-gradient step, norm m <- m (1 -/+ gamma), quantise, clip."""
    check_images(x)
    if levels is not None and levels < 2:
        raise ValueError(f"levels must be >= 2 grey levels (or None for no quantisation), got {levels}.")
    x = x.detach()
    shape = (-1,) + (1,) * (x.dim() - 1)
    norm = torch.full((len(x),), float(init_norm), device=x.device)
    best_l2 = torch.maximum(x, 1 - x).flatten(1).norm(dim=1)  # the largest possible L2 perturbation
    x_adv = x.clone()
    x_best = x.clone()
    for i in range(steps):
        lr = 0.01 + (1 - 0.01) * (1 + math.cos(math.pi * (i + 1) / steps)) / 2
        delta = x_adv - x
        with torch.enable_grad():
            delta.requires_grad_(True)
            logits = model(x + delta)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), delta)
        with torch.no_grad():
            l2 = delta.flatten(1).norm(dim=1)
            is_adv = logits.argmax(1) != y
            better = is_adv & (l2 < best_l2)
            best_l2 = torch.where(better, l2, best_l2)
            x_best[better] = x_adv[better]
            grad_norm = grad.flatten(1).norm(dim=1)
            grad = grad / grad_norm.clamp_min(1e-12).view(shape)
            zero = grad_norm == 0
            if zero.any():  # no gradient: take a random direction instead
                grad[zero] = torch.randn_like(grad[zero])
            delta = delta + lr * grad
            norm = norm * (1 - (2 * is_adv.float() - 1) * gamma)
            delta = delta * (norm / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(shape)
            x_adv = quantize(x + delta, levels).clamp(0, 1)
    return x_best
