"""advertorch 0.2.3's SpatialTransformAttack as the authors ran it: a REPRODUCTION OF A FLAWED ATTACK.

The paper's STA column (TPAP 31.4 on CIFAR-10 ResNet-18) comes from advertorch 0.2.3
`SpatialTransformAttack(model, 10, clip_min=0.0, clip_max=1.0, max_iterations=10, search_steps=5,
targeted=False)` (TPAP's TEST_other_attack.py:166-167; advertorch/attacks/spatial.py, unchanged
from 0.2.3 to the last commit). This function follows that code step by step, flaws included,
so that the paper's number can be put beside the attack that produced it. The kit's own stAdv is
`stadv.py`; use it, not this, to measure robustness.

What advertorch does (spatial.py:111-159):
- the variable is the sampling grid itself, in grid_sample's normalised coordinates
  (F.affine_grid of the identity, align_corners=False), every entry bounded to [-1, 1];
  x_adv = F.grid_sample(x, grid) (bilinear, zero padding, align_corners=False);
- loss (spatial.py:64-91), summed over the batch: CW margin
  max(Z_y - max_{i!=y} Z_i + confidence, 0) plus initial_const * (||D_w(delta) + 1e-10||_2 +
  ||D_h(delta) + 1e-10||_2), delta = grid_ori - grid, D_w / D_h the differences between
  horizontal / vertical neighbours, each norm over the whole image (both grid components);
- ONE scipy L-BFGS-B problem for the whole batch (fmin_l_bfgs_b, float64 variables, float32 model,
  maxiter = max_iterations, maxls = 100, other options scipy's defaults), so the result for an
  image depends on the other images in its batch (the authors' batches held 128 images);
- `search_steps` outer rounds; after each, an image whose prediction changed is stored if its
  squared grid displacement sum((grid - grid_ori)^2) is below the best stored so far.

The flaws reproduced here, on purpose:
1. The "binary search" never searches: `loss_coeffs` is created (spatial.py:114) and passed to the
   loss, which ignores it and uses `self.initial_const` (spatial.py:80); nothing ever updates
   either. Each round only resumes L-BFGS from where the last stopped (search_steps=5 with
   max_iterations=10 is about 50 L-BFGS iterations at one constant).
2. `final_advs = torch.zeros_like(x)` (spatial.py:118) is returned as is for every input the attack
   fails on: a failed input comes back as an ALL-ZERO (black) image, which an accuracy table then
   scores as the model's answer on a black image (and TPAP purifies a black image). A reported
   accuracy under this attack therefore counts black images, not robustness to spatial warps.
3. Unused arguments: `abort_early`, `loss_fn`, `clip_min` and `clip_max` have no effect in the
   attack (they are not taken here).

Not verifiable here: the authors' torch version. align_corners=False is the default of every
torch since 1.3 (the authors' Python 3.8 build files point to a recent torch); torch < 1.3 sampled
with align_corners=True. `info` (return_info=True) exposes what the flaws do: the constant each
round used, which inputs failed (returned as zeros) and the squared grid displacements.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import fmin_l_bfgs_b

from ..checks import check_images, check_labels

TARGET_MULT = 10000.0  # spatial.py:26
L2DIST_UPPER = 1e10  # spatial.py:25
# The authors' call (TEST_other_attack.py:166-167) and advertorch's defaults (spatial.py:49-53):
PAPER_SETTINGS = dict(confidence=0.0, initial_const=1.0, max_iterations=10, search_steps=5)


def identity_grid(x: torch.Tensor) -> torch.Tensor:
    """F.affine_grid of the identity transform, align_corners=False (spatial.py:121-126): (N, H, W, 2)."""
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=x.device).repeat(len(x), 1, 1)
    return F.affine_grid(theta, list(x.shape), align_corners=False).float()  # float32 under bf16 autocast too


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """x sampled at grid: F.grid_sample with advertorch's (torch >= 1.3 default) settings."""
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def spatial_loss(
    model: nn.Module,
    grid: torch.Tensor,
    x: torch.Tensor,
    y_onehot: torch.Tensor,
    const: float,
    grid_ori: torch.Tensor,
    confidence: float = 0.0,
) -> torch.Tensor:
    """advertorch's _loss_fn_spatial, untargeted (spatial.py:64-91): sum of margins + const * smoothness."""
    delta = grid_ori - grid
    logits = model(warp(x, grid))
    real = (y_onehot * logits).sum(1)
    other = ((1.0 - y_onehot) * logits - y_onehot * TARGET_MULT).max(1)[0]
    loss1 = (real - other + confidence).clamp(min=0.0)
    n = len(delta)
    dw = (delta[:, :, 1:] - delta[:, :, :-1] + 1e-10) ** 2
    dh = (delta[:, 1:, :] - delta[:, :-1, :] + 1e-10) ** 2
    loss2 = const * (dw.reshape(n, -1).sum(1).sqrt() + dh.reshape(n, -1).sum(1).sqrt())
    return loss1.sum() + loss2.sum()


def sta_advertorch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int | None = None,
    confidence: float = 0.0,
    initial_const: float = 1.0,
    max_iterations: int = 10,
    search_steps: int = 5,
    return_info: bool = False,
):
    """advertorch 0.2.3 SpatialTransformAttack.perturb, untargeted; failed inputs come back as ZEROS (a flaw)."""
    check_images(x)
    check_labels(y, len(x))
    x = x.detach()
    n = len(x)
    was_training = model.training
    model.eval()  # the authors' test loop runs the model in eval mode (TEST_other_attack.py:62)
    try:
        with torch.no_grad():
            if num_classes is None:
                num_classes = model(x[:1]).shape[1]
        y_onehot = F.one_hot(y, num_classes).float()
        grid_ori = identity_grid(x)
        shape = grid_ori.shape
        bounds = [(-1.0, 1.0)] * grid_ori.numel()
        loss_coeffs = [float(initial_const)] * n  # spatial.py:114: made, passed on, never read, never updated
        const_used: list[float] = []

        def func(flat: np.ndarray, const: float):
            grid = torch.from_numpy(flat.reshape(shape)).float().to(x.device).requires_grad_(True)
            with torch.enable_grad():
                loss = spatial_loss(model, grid, x, y_onehot, const, grid_ori, confidence)
                (grad,) = torch.autograd.grad(loss, grid)
            return loss.detach().float().cpu().numpy().astype(float), grad.float().cpu().numpy().flatten().astype(float)

        final_l2 = torch.full((n,), L2DIST_UPPER, dtype=torch.float32)
        x_final = torch.zeros_like(x)  # spatial.py:118: what a failed input gets back
        found_step = torch.full((n,), -1, dtype=torch.long)
        grid_ret = grid_ori.cpu().numpy().flatten().astype(float)
        for step in range(search_steps):
            const = float(initial_const)  # spatial.py:80 uses self.initial_const whatever loss_coeffs holds
            const_used.append(const)
            grid_ret, _, _ = fmin_l_bfgs_b(func, grid_ret, args=(const,), maxiter=max_iterations,
                                           bounds=bounds, maxls=100)
            grid = torch.from_numpy(grid_ret.reshape(shape)).float().to(x.device)
            with torch.no_grad():
                x_step = warp(x, grid)
                l2 = ((grid - grid_ori) ** 2).reshape(n, -1).sum(1).cpu()
                pred = model(x_step).argmax(1).cpu()
            better = (l2 < final_l2) & (pred != y.cpu())
            final_l2[better] = l2[better]
            x_final[better.to(x.device)] = x_step[better.to(x.device)]
            found_step[better] = step
    finally:
        model.train(was_training)
    if not return_info:
        return x_final
    failed = found_step < 0
    info = dict(
        const_used=const_used,
        loss_coeffs=loss_coeffs,
        failed=failed,
        found_step=found_step,
        grid_l2sq=torch.where(failed, torch.full_like(final_l2, float("nan")), final_l2),
        zero_fraction=float(failed.float().mean()) if n else 0.0,
    )
    return x_final, info
