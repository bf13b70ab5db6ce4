"""FWA, the Frank-Wolfe Wasserstein attack (Wu, Wang & Yu ICML 2020): the FWA column of Tab. 1-2.

Threat model (Wong et al. 2019, as in Wu et al.): each channel of an image is a distribution of
mass over pixels; x_adv is x with its mass moved by a transport plan pi >= 0 whose rows sum to x
(pi 1 = x: every pixel sends out exactly its own mass, per channel), whose mass only moves inside a
local kernel_size x kernel_size window, and whose cost sum pi_ij * ||i - j||_2 (pixel distances,
all channels) is <= eps * (total mass of the image). So eps is a Wasserstein radius per unit of mass
(eps = 8/255 lets the mass move 0.031 pixels on average), not an L-inf bound.

Frank-Wolfe (Wu et al. Alg. 1): pi_0 = identity (x_adv = x); at step t take G = grad of
CE(f(clip(x_adv)), y) w.r.t. pi (the gradient at each pixel's destination), scaled by its max;
the linear minimisation oracle with entropic regulariser gamma,
    S = argmax_pi <G, pi> + gamma * H(pi)  s.t. pi 1 = x, pi >= 0, cost(pi) <= eps * mass,
is pi_ij = x_i * softmax_j((G_ij - lambda * C_ij) / gamma) over the window, with the dual variable
lambda >= 0 found by `dual_steps` bisection steps (its upper end, which is always feasible);
then pi <- pi + 2 / (t + 2) * (S - pi). Every iterate is feasible (a convex combination).

Settings follow the authors' call of Wu et al.'s code (kernel_size=4, entrp_gamma=0.003, nb_iter=20,
dual_max_iter=15, eps=8/255, no post-processing). Wu et al.'s C++ asserts an odd kernel size,
but the assert is compiled out, so kernel_size=4 gives the window offsets -2..+1; we use the same
window. Simplifications against that code: a dense (N, C, H, W, k*k) plan instead of their sparse
one, destinations outside the image are excluded from the window (their code wraps them and gives
them an infinite cost), and bisection stops after `dual_steps` without their tolerance tests.
Like their code, pixels may end above 1 when mass piles up; the model sees clip(x_adv) during the
attack, and the registry clips the returned image to [0, 1] (which can remove a little mass).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_images


def window_offsets(kernel_size: int) -> list[tuple[int, int]]:
    """The (dy, dx) moves of a kernel_size x kernel_size window: range(-(k // 2), k - k // 2) per axis."""
    r = kernel_size // 2
    return [(dy, dx) for dy in range(-r, kernel_size - r) for dx in range(-r, kernel_size - r)]


def _shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[..., h + dy, w + dx] = t[..., h, w], zeros where nothing lands."""
    return F.pad(t, (dx, -dx, dy, -dy))


def plan_to_image(pi: torch.Tensor, offsets: list[tuple[int, int]]) -> torch.Tensor:
    """x_adv_j = sum_i pi_ij, the mass each pixel receives; pi (N, C, H, W, K) moves (h, w) by offset."""
    return sum(_shift(pi[..., k], dy, dx) for k, (dy, dx) in enumerate(offsets))


def transport_cost(pi: torch.Tensor, offsets: list[tuple[int, int]]) -> torch.Tensor:
    """sum_ij pi_ij ||i - j||_2 per sample (all channels), in pixel units."""
    dist = torch.tensor([(dy * dy + dx * dx) ** 0.5 for dy, dx in offsets], dtype=pi.dtype, device=pi.device)
    return (pi * dist).sum(dim=(1, 2, 3, 4))


def _window_inside(height: int, width: int, offsets, device) -> torch.Tensor:
    """(H, W, K) mask: the destination (h, w) + offset lies inside the image."""
    ones = torch.ones(1, 1, height, width, device=device)
    return torch.stack([_shift(ones, -dy, -dx)[0, 0] > 0 for dy, dx in offsets], dim=-1)


def entropic_lmo(G, x, offsets, inside, budget, gamma: float, dual_steps: int) -> torch.Tensor:
    """Wu et al. Sec. 4: argmax <G, pi> + gamma H(pi), pi 1 = x, cost(pi) <= budget; bisection on lambda."""
    dist = torch.tensor([(dy * dy + dx * dx) ** 0.5 for dy, dx in offsets], dtype=x.dtype, device=x.device)

    def plan(lam):
        scores = (G - lam.view(-1, 1, 1, 1, 1) * dist) / gamma
        return x.unsqueeze(-1) * torch.softmax(scores.masked_fill(~inside, float("-inf")), dim=-1)

    # Upper end: with |G| <= 1 and moves of length >= 1, lambda = 2 + gamma log(mass * sum(dist) / budget)
    # gives every move less than budget / (mass * sum(dist)) of each pixel's mass, so cost <= budget.
    mass = x.sum(dim=(1, 2, 3))
    hi = 2 + gamma * torch.log(mass * dist.sum() / budget.clamp_min(1e-12)).clamp_min(0)
    lo = torch.zeros_like(hi)
    for _ in range(dual_steps):
        mid = (lo + hi) / 2
        over = transport_cost(plan(mid), offsets) > budget
        lo = torch.where(over, mid, lo)
        hi = torch.where(over, hi, mid)
    return plan(hi)


def fwa(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    kernel_size: int = 4,
    gamma: float = 0.003,
    steps: int = 20,
    dual_steps: int = 15,
    return_plan: bool = False,
):
    """Frank-Wolfe (Wu et al. Alg. 1) in the local Wasserstein ball cost(pi) <= eps * mass: x_adv (, pi)."""
    check_images(x)
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1 (the window is k x k pixels), got {kernel_size}.")
    x = x.detach()
    n, _, height, width = x.shape
    offsets = window_offsets(kernel_size)
    inside = _window_inside(height, width, offsets, x.device)
    budget = eps * x.sum(dim=(1, 2, 3))
    pi = x.unsqueeze(-1) * torch.tensor([o == (0, 0) for o in offsets], dtype=x.dtype, device=x.device)
    for t in range(steps):
        with torch.enable_grad():
            x_adv = plan_to_image(pi, offsets).requires_grad_(True)
            loss = F.cross_entropy(model(x_adv.clamp(0, 1)), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
        grad = grad / (grad.abs().amax(dim=(1, 2, 3), keepdim=True) + 1e-35)
        # d loss / d pi_ij is the gradient at the destination j
        G = torch.stack([_shift(grad, -dy, -dx) for dy, dx in offsets], dim=-1)
        S = entropic_lmo(G, x, offsets, inside, budget, gamma, dual_steps)
        pi = pi + 2 / (t + 2) * (S - pi)
    x_adv = plan_to_image(pi, offsets)
    return (x_adv, pi) if return_plan else x_adv
