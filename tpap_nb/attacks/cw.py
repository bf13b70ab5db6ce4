"""CW-L2 (Carlini & Wagner 2017) with its binary search over c: the CW2 column of Tab. 1-2.

The authors ran advertorch's CarliniWagnerL2Attack (10 iterations, 4 binary-search steps,
confidence kappa 1, initial c 1, Adam lr 0.01). torchattacks 3.5.1 `CW` has the same inner loop
(Adam on w with x_adv = (tanh(w) + 1) / 2, loss ||x_adv - x||^2 + c * max(Z_y - max_{i!=y} Z_i, -kappa),
keep the smallest successful x_adv, stop early when the loss goes up) but no binary search and a
scalar c. This is that loop with a per-sample c and Carlini's binary search around it; with
binary_search_steps=1 and kappa=0 it takes the same steps as torchattacks' CW (tested).

Differences from torchattacks' CW, all as in Carlini's and advertorch's code: w starts at
atanh((2x - 1) * 0.999999), so pixels at exactly 0 or 1 can still move (torchattacks starts at
atanh(+-1) = +-inf there, which freezes them); the largest other logit excludes the true class
(torchattacks' (1 - onehot) * Z picks 0 for the true class, wrong when all other logits are
negative); success means the kappa-adjusted logits are misclassified. The result is the
smallest-L2 successful x_adv found over all steps, or x itself where none was found; the attack is
unbounded (use the registry's `cw2_l2` for a budget).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..checks import check_images

_ONE_MINUS_EPS = 0.999999
_C_UPPER = 1e10


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Z_y - max_{i != y} Z_i per sample: positive while x is classified as y."""
    real = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return real - other


def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    c: float = 1.0,
    kappa: float = 1.0,
    steps: int = 10,
    lr: float = 0.01,
    binary_search_steps: int = 4,
) -> torch.Tensor:
    """CW-L2: min ||x_adv - x||_2^2 + c max(Z_y - max_{i!=y} Z_i, -kappa), binary search over c per sample."""
    check_images(x)
    x = x.detach()
    n = len(x)
    w0 = torch.atanh((x * 2 - 1).clamp(-1, 1) * _ONE_MINUS_EPS)
    const = torch.full((n,), float(c), device=x.device)
    lower = torch.zeros(n, device=x.device)
    upper = torch.full((n,), _C_UPPER, device=x.device)
    best_l2 = torch.full((n,), float("inf"), device=x.device)
    x_best = x.clone()
    for _ in range(binary_search_steps):
        w = w0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        prev_cost = float("inf")
        for step in range(steps):
            with torch.enable_grad():
                x_adv = (torch.tanh(w) + 1) / 2
                l2 = (x_adv - x).flatten(1).pow(2).sum(1)
                logits = model(x_adv)
                f = margin(logits, y).clamp(min=-kappa)
                cost = l2.sum() + (const * f).sum()
                (w.grad,) = torch.autograd.grad(cost, w)  # input-only: the model's weights get no .grad
            optimizer.step()
            with torch.no_grad():
                success = margin(logits, y) + kappa < 0  # misclassified with confidence kappa
                better = success & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                x_best[better] = x_adv[better]
                found |= success
            if step % max(steps // 10, 1) == 0:  # abort early when the loss goes up
                if cost.item() > prev_cost:
                    break
                prev_cost = cost.item()
        # Carlini's binary search: success -> smaller c, failure -> larger c (x10 until bracketed).
        upper = torch.where(found, torch.minimum(upper, const), upper)
        lower = torch.where(found, lower, torch.maximum(lower, const))
        const = torch.where(upper < _C_UPPER / 10, (lower + upper) / 2, const * 10)
    return x_best.detach()
