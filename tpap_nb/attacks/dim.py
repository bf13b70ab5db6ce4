"""DIM as the authors ran it: the "TI-DIM" column of the paper's Tab. 1-2 (TPAP 75.21 on CIFAR-10).

The authors' code (github.com/tly18/TPAP, attack/DIM/DIM.py, class DIM_Attack, called from
TEST_other_attack.py:220-224) is momentum iterative FGSM with input diversity (DIM, Xie et al. 2019),
not TI-DIM: there is no translation-invariant kernel. This module reproduces their update step by
step; the kit's real TI-DIM is `tidim.py`.

One step of theirs, on the whole batch at once (DIM.py:47-74):
    with probability `prob` (one draw per step for the batch), g = grad_x CE_mean(f(T(x_adv)), y),
    T = nearest-resize to rnd x rnd (rnd uniform in [W, image_resize)), zero-pad to
    image_resize x image_resize (top / left pad uniform in [0, image_resize - rnd), the rest at the
    bottom / right), nearest-resize back to H x W; otherwise g = grad_x CE_mean(f(x_adv), y)
    momentum = decay * momentum + g / mean|g|      (ONE mean over every pixel of every image)
    x_adv = clip(clip(x_adv + alpha * sign(momentum), x - eps, x + eps), 0, 1)
The model runs in eval mode (theirs deep-copies it and calls .eval(); here the caller's mode is
restored afterwards). Optional start: x + U(-eps, eps), not clipped to [0, 1] before the first
gradient (DIM.py:41-43); the test script turns it off.

How this differs from real TI-DIM (Dong et al. 2019; `tidim.py`, torchattacks' TIFGSM): no Gaussian
smoothing of the gradient; nearest instead of bilinear resizing; the gradient is divided by one
mean over the batch, so an image's step direction depends on the other images in its batch only
through that common scale (the sign is unchanged, but the momentum mix between steps is not
per-image); the transform is one draw shared by the batch.

What their CIFAR-10 settings actually do: image_resize = 33 on 32-px images gives rnd = 32 (the
only value in [32, 33)) and pad_top = pad_left = 0 (the only value in [0, 1)), and PyTorch's
nearest resize of the padded 33 x 33 image back to 32 x 32 takes source rows floor(i * 33 / 32) = i,
so T is exactly the identity: their "TI-DIM" on CIFAR-10 is MI-FGSM (20 x 0.003, decay 1, no random
start) with whole-batch gradient scaling. The random draws still happen (as in theirs), so the
generator's state advances the same way; on smaller images (tests) the diversity is real.

Deviation, on purpose: if the whole batch's gradient is exactly zero, theirs divides 0 by 0 and
returns NaN for every image; here that step adds nothing to the momentum (x_adv then keeps moving
along the previous momentum, or stays at x on the first step).

Randomness (the diversity coin, the resize size and the two pads, the optional random start) comes
only from `generator` (a CPU torch.Generator; None means torch's global generator), drawn in the
order of theirs: per step rand(), then, if the coin says so, rnd, pad_top, pad_left.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_images, check_labels

# Settings as the authors called it (TEST_other_attack.py:220-224). DIM.py's own defaults are
# decay 1, prob 0.5, eps 0.3, 40 steps of 0.01, image_resize 330, no random start (DIM.py:11-14).
PAPER_SETTINGS = dict(eps=8 / 255, alpha=0.003, steps=20, decay=1.0, prob=0.5, image_resize=33, random_start=False)


def _draw_int(low: int, high: int, generator: torch.Generator | None) -> int:
    """One integer uniform in [low, high), like np.random.randint(low, high)."""
    return int(torch.randint(low, high, (1,), generator=generator))


def resize_pad(x: torch.Tensor, image_resize: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Their _tranform_resize_padding(resize_back=True): nearest to rnd x rnd, zero-pad, nearest back to H x W."""
    height, width = x.shape[-2:]
    if not (height < image_resize and width < image_resize):
        raise ValueError(
            f"image_resize must exceed the image size ({height} x {width}), got {image_resize}; "
            "the authors used 33 for 32-px CIFAR images."
        )
    rnd = _draw_int(width, image_resize, generator)  # theirs: np.random.randint(shape[1], image_resize)
    rem = image_resize - rnd
    pad_top = _draw_int(0, rem, generator)
    pad_left = _draw_int(0, rem, generator)
    up = F.interpolate(x, size=(rnd, rnd), mode="nearest")
    padded = F.pad(up, (pad_left, rem - pad_left, pad_top, rem - pad_top), value=0.0)
    return F.interpolate(padded, size=(height, width), mode="nearest")


def dim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    alpha: float = 0.003,
    steps: int = 20,
    decay: float = 1.0,
    prob: float = 0.5,
    image_resize: int = 33,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The authors' DIM_Attack (their "TI-DIM"): momentum / one batch mean, sign step, eps-ball and [0, 1] clips."""
    check_images(x)
    check_labels(y, len(x))
    if steps < 0 or eps < 0 or alpha < 0:
        raise ValueError(f"eps, alpha and steps must be >= 0, got eps={eps}, alpha={alpha}, steps={steps}.")
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator) * 2 - 1  # U(-1, 1) on the CPU, like the coins
        x_adv = x_adv + noise.to(x) * eps  # not clipped to [0, 1] before the first gradient (as theirs)
    lower, upper = x - eps, x + eps
    momentum = torch.zeros_like(x)
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            coin = float(torch.rand(1, generator=generator))
            with torch.enable_grad():
                x_var = x_adv.detach().requires_grad_(True)
                x_in = resize_pad(x_var, image_resize, generator) if coin < prob else x_var
                loss = F.cross_entropy(model(x_in), y)  # CrossEntropyLoss(), mean over the batch
                (grad,) = torch.autograd.grad(loss, x_var)
            scale = grad.abs().mean()  # one number for the whole batch (DIM.py:69)
            velocity = grad / scale if scale > 0 else torch.zeros_like(grad)
            momentum = decay * momentum + velocity
            x_adv = x_adv.detach() + alpha * momentum.sign()
            x_adv = torch.min(torch.max(x_adv, lower), upper).clamp(0, 1)
    finally:
        model.train(was_training)
    return x_adv.detach()
