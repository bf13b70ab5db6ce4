"""The gradient attacks the trainer itself needs: FGSM (Eq. 1-2) and PGD (Madry et al.).

`pgd_loop` is the one PGD iteration of the kit: `pgd` (cross-entropy), TRADES' inner maximisation
(KL, train.py) and the adaptive PGD on the whole TPAP pipeline (experiments/adaptive.py) differ
only in their loss and start.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_count, check_images, check_labels, check_model_input, check_radius, label_error


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """F.cross_entropy, with the kit's own error for labels outside the model's classes."""
    try:
        return F.cross_entropy(logits, y, reduction=reduction)
    except IndexError:  # torch: "Target 11 is out of bounds."
        raise ValueError(label_error(int(y.min()), int(y.max()), logits.shape[1])) from None


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x CE(f(x), y), summed over the batch, with no weight gradients."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255) -> torch.Tensor:
    """Eq. 1-2: x_adv = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1), no random start."""
    check_radius(eps, "eps")
    check_images(x)
    y = check_labels(y, len(x))
    check_model_input(model, x)
    return (x.detach() + eps * _input_grad(model, x, y).sign()).clamp(0, 1)


def pgd_loop(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor],
             eps: float, alpha: float, steps: int,
             observe: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> torch.Tensor:
    """`steps` L-inf PGD steps from x_adv: x_adv <- Proj_{|. - x| <= eps, [0, 1]}(x_adv + alpha sign grad loss).

    `loss(logits)` is the scalar to increase. `observe(x_adv, logits)`, when given, sees every
    iterate with its logits, the last one included (one more forward pass). No checks here: the callers
    (`pgd`, TRADES, the adaptive PGD) check their inputs once, before the loop.
    """
    x = x.detach()
    for step in range(steps + (observe is not None)):
        last = step == steps
        with torch.enable_grad():
            x_adv = x_adv.detach().requires_grad_(not last)
            logits = model(x_adv)
            if observe is not None:
                observe(x_adv.detach(), logits.detach())
            if last:
                break
            (grad,) = torch.autograd.grad(loss(logits), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + U(-eps, eps) noise, clipped to [0, 1] (drawn on the generator's device, CPU by default)."""
    noise = torch.rand(x.shape, generator=generator, device="cpu" if generator is None else generator.device)
    return (x + (noise.to(x.device) * 2 - 1) * eps).clamp(0, 1)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    alpha: float = 0.003,
    steps: int = 20,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD on CE(f(x), y): `steps` signed-gradient steps of size alpha, projected on the eps-ball and [0, 1]."""
    check_radius(eps, "eps")
    check_radius(alpha, "alpha")
    check_count(steps, "steps", minimum=0)
    check_images(x)
    y = check_labels(y, len(x))
    check_model_input(model, x)
    x = x.detach()
    x_adv = uniform_start(x, eps, generator) if random_start else x.clone()
    return pgd_loop(model, x, x_adv, lambda logits: cross_entropy(logits, y), eps, alpha, steps)
