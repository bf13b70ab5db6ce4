"""The two gradient attacks the trainer itself needs: FGSM (Eq. 1-2) and PGD (Madry et al.)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_images


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x CE(f(x), y), summed over the batch, with no weight gradients."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255) -> torch.Tensor:
    """Eq. 1-2: x_adv = clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1), no random start."""
    check_images(x)
    return (x.detach() + eps * _input_grad(model, x, y).sign()).clamp(0, 1)


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
    """L-inf PGD: `steps` signed-gradient steps of size alpha, projected on the eps-ball and [0, 1]."""
    check_images(x)
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device="cpu" if generator is None else generator.device)
        x_adv = (x_adv + (noise.to(x.device) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        grad = _input_grad(model, x_adv, y)
        x_adv = x_adv + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()
