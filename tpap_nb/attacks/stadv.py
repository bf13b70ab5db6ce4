"""STA, the spatially transformed attack stAdv (Xiao et al. ICLR 2018): the STA column of Tab. 1-2.

No pixel value is changed directly: a per-pixel flow field f = (u, v) moves where each output pixel
samples the input, x_adv(p) = bilinear sample of x at p + f(p) (Xiao et al. Eq. 1-2), and the
attack minimises L_adv(x_adv) + tau * L_flow(f) (Eq. 3) with
L_adv = max(Z_y - max_{i!=y} Z_i, -kappa) and the flow's total variation
L_flow = sum_p sum_{q in N(p)} sqrt(||u_p - u_q||^2 + ||v_p - v_q||^2 + d) - sqrt(d), N(p) the
4-neighbourhood (d = 1e-8 only keeps the gradient finite at f = 0; L_flow(0) = 0 exactly).
Optimiser: L-BFGS from f = 0 with `steps` iterations, restarted for each of `search_steps`
binary-search steps over tau per sample (success -> larger tau, i.e. a smoother flow; failure ->
smaller tau). Returned: the successful x_adv with the smallest L_flow seen, or x itself.

The authors ran advertorch 0.2.3's SpatialTransformAttack(max_iterations=10, search_steps=5).
Things we do differently, on purpose: its `search_steps` loop never changes the constant
(it only resumes L-BFGS 5 times), its flow penalty is the L2 norm of the flow differences of the
whole image rather than the per-pixel sum above, and it returns an all-zero image for every input
it fails to attack (final_advs = zeros_like(x)), which a robustness table then counts as the model's
answer on a black image. Here a failed input comes back unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_images
from .cw import margin

_D = 1e-8


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Xiao et al. Eq. 1-2: x_adv(h, w) = bilinear x(h + v, w + u); flow (N, 2, H, W) = (u, v) in pixels."""
    n, _, height, width = x.shape
    rows = torch.arange(height, device=x.device, dtype=x.dtype).view(1, height, 1)
    cols = torch.arange(width, device=x.device, dtype=x.dtype).view(1, 1, width)
    gx = (cols + flow[:, 0]) * (2 / max(width - 1, 1)) - 1
    gy = (rows + flow[:, 1]) * (2 / max(height - 1, 1)) - 1
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _soft_norm(d: torch.Tensor) -> torch.Tensor:
    """sqrt(d + _D) - sqrt(_D), written so that it is exactly 0 at d = 0 and has a finite gradient there."""
    return d / ((d + _D).sqrt() + _D**0.5)


def flow_tv(flow: torch.Tensor) -> torch.Tensor:
    """Xiao et al. Eq. 4, L_flow per sample; each neighbour pair counted from both sides, as in the paper."""
    dw = (flow[..., :, 1:] - flow[..., :, :-1]).pow(2).sum(1)
    dh = (flow[..., 1:, :] - flow[..., :-1, :]).pow(2).sum(1)
    return 2 * (_soft_norm(dw).sum((1, 2)) + _soft_norm(dh).sum((1, 2)))


def stadv_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor, tau, kappa: float = 0.0
) -> torch.Tensor:
    """Xiao et al. Eq. 3 per sample: max(Z_y - max_{i!=y} Z_i, -kappa) + tau * L_flow(f)."""
    return margin(model(flow_warp(x, flow)), y).clamp(min=-kappa) + tau * flow_tv(flow)


def _lbfgs_round(model, x, y, taus, kappa, steps, best_tv, x_best) -> torch.Tensor:
    """One binary-search step: L-BFGS from f = 0, best_tv / x_best updated in place; returns the successes."""
    flow = torch.zeros(len(x), 2, *x.shape[2:], device=x.device, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([flow], lr=1, max_iter=steps, line_search_fn="strong_wolfe")
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def closure():
        x_adv = flow_warp(x, flow)
        logits = model(x_adv)
        tv = flow_tv(flow)
        loss = (margin(logits, y).clamp(min=-kappa) + taus * tv).sum()
        (flow.grad,) = torch.autograd.grad(loss, flow)  # input-only: the model's weights get no .grad
        with torch.no_grad():  # keep every successful point L-BFGS evaluates
            success = logits.argmax(1) != y
            better = success & (tv < best_tv)
            best_tv[better] = tv[better]
            x_best[better] = x_adv[better]
            found[success] = True
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return found


def stadv(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 10,
    search_steps: int = 5,
    tau: float = 0.05,
    kappa: float = 0.0,
) -> torch.Tensor:
    """stAdv: L-BFGS on the flow f for Eq. 3, binary search over tau; keeps the smoothest successful x_adv."""
    check_images(x)
    x = x.detach()
    taus = torch.full((len(x),), float(tau), device=x.device)
    lower = torch.zeros_like(taus)
    upper = torch.full_like(taus, float("inf"))
    best_tv = torch.full_like(taus, float("inf"))
    x_best = x.clone()
    for _ in range(search_steps):
        found = _lbfgs_round(model, x, y, taus, kappa, steps, best_tv, x_best)
        # success -> a smoother flow may still work: larger tau; failure -> smaller tau
        upper = torch.where(found, upper, torch.minimum(upper, taus))
        lower = torch.where(found, torch.maximum(lower, taus), lower)
        taus = torch.where(torch.isinf(upper), taus * 10, (lower + upper) / 2)
    return x_best.detach()
