"""Budgeted STA: a spatially transformed attack whose flow never exceeds `max_flow` pixels per component.

The kit's `stadv` (Xiao et al. 2018) is a minimal-flow attack with no bound: where it succeeds it
returns a point just across the decision boundary, however large the flow has to be, and where it
fails it returns x. Purification then pushes many of those barely-wrong points back, so accuracy
under it can exceed clean accuracy. This variant asks the budgeted question, as PGD does for pixels
(and as `cw2_l2` / `ddn_l2` do for L2): is there a flow f = (u, v) with |u|, |v| <= max_flow at
every pixel that changes the label? It returns, for every input, the most adversarial image it
found inside the budget, not x.

Same warp as `stadv` (`flow_warp`: bilinear sampling of x at p + f(p), Xiao et al. Eq. 1-2, flow in
pixels). Optimiser: projected signed-gradient descent on the flow from f = 0 (as PGD on pixels, and
as the bounded StAdv of Laidlaw et al. 2021), on Xiao et al.'s Eq. 3 without its clamp:
    L(f) = Z_y(x_f) - max_{i != y} Z_i(x_f) + tau * L_flow(f)      (x_f = flow_warp(x, f))
    f <- clip(f - alpha * sign(grad_f L), -max_flow, max_flow)       `steps` times
tau = 0 by default (the budget, not a penalty, limits the flow; tau > 0 adds stAdv's smoothness
term, `flow_tv`). The margin is not clamped at 0, so the search keeps going past the boundary, and
per input the iterate with the smallest margin is returned (a success whenever any iterate was
misclassified).

Budget, by construction: every flow the model ever sees, and the returned one, is the output of a
clamp to [-b, b] (f = 0 at the start), b the largest number of x's dtype that is <= max_flow
(float32(max_flow) can round up), so the bound holds exactly, in real numbers, not to a tolerance;
the returned image is flow_warp(x, f).clamp(0, 1) for that f (x itself where f = 0, which
flow_warp reproduces only up to float rounding). The bound is per component (an L-inf
bound on the flow field): a pixel's sampling point moves at most sqrt(2) * max_flow pixels.
No randomness: the same input gives the same output.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..checks import check_images, check_labels
from .stadv import flow_tv, flow_warp


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Z_y - max_{i != y} Z_i per sample: positive while x is classified as y."""
    real = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return real - other


def representable_bound(max_flow: float, dtype: torch.dtype) -> float:
    """The largest number of `dtype` that is <= max_flow (float32(0.05) is 0.0500000007, above 0.05)."""
    b = torch.tensor(max_flow, dtype=dtype)
    if float(b) > max_flow:
        b = torch.nextafter(b, torch.zeros_like(b))
    return float(b)


def sta_flow1(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    max_flow: float = 1.0,
    steps: int = 20,
    alpha: float | None = None,
    tau: float = 0.0,
    return_info: bool = False,
):
    """Flow-PGD: |u|, |v| <= max_flow px, `steps` signed steps of alpha (max_flow / 4); most adversarial iterate."""
    check_images(x)
    check_labels(y, len(x))
    if not (0 <= max_flow < float("inf")):
        raise ValueError(f"max_flow must be a finite number of pixels >= 0, got {max_flow}; use stadv for no bound.")
    if steps < 0 or tau < 0 or (alpha is not None and alpha < 0):
        raise ValueError(f"steps, alpha and tau must be >= 0, got steps={steps}, alpha={alpha}, tau={tau}.")
    alpha = float(max_flow) / 4 if alpha is None else float(alpha)
    x = x.detach()
    bound = representable_bound(float(max_flow), x.dtype)  # clamp limit: exactly <= max_flow, not rounded up
    flow = torch.zeros(len(x), 2, *x.shape[2:], device=x.device, dtype=x.dtype)
    best_margin = torch.full((len(x),), float("inf"), device=x.device)
    x_best = x.clone()
    flow_best = flow.clone()
    for step in range(steps + 1):  # steps updates; the last evaluation only scores the final flow
        with torch.enable_grad():
            flow.requires_grad_(True)
            x_adv = flow_warp(x, flow).clamp(0, 1).to(x.dtype)  # bf16 autocast warps in bf16
            logits = model(x_adv).float()
            margins = _margin(logits, y)
            if step < steps:
                loss = margins.sum() + tau * flow_tv(flow).sum() if tau else margins.sum()
                (grad,) = torch.autograd.grad(loss, flow)  # input-only: the model's weights get no .grad
        with torch.no_grad():
            margins = margins.detach()
            better = margins < best_margin
            best_margin[better] = margins[better]
            x_best[better] = x_adv.detach()[better]
            flow_best[better] = flow.detach()[better]
            if step < steps:
                flow = (flow.detach() - alpha * grad.sign()).clamp(-bound, bound)
    still = flow_best.flatten(1).eq(0).all(1)  # a zero flow gives x itself, not x up to rounding
    x_best[still] = x[still]
    if not return_info:
        return x_best
    with torch.no_grad():
        success = model(x_best).argmax(1) != y
    return x_best, dict(flow=flow_best, success=success, margin=best_margin)
