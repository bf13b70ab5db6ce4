"""TI-DIM (Dong et al. 2019 on top of Xie et al. 2019), the TI-DIM column of Tab. 1-2.

Momentum iterative FGSM (MI, momentum `decay`) whose gradient is taken through a random
resize-and-pad of the input (DI, probability `diversity_prob`) and then convolved with a Gaussian
kernel (TI) before the sign step. All three parts are here.

The authors' own DIM file (attack/DIM/DIM.py in github.com/tly18/TPAP) had momentum and input
diversity (resize-and-pad 32 -> 33, prob 0.5, resized back to 32) but no translation-invariant
kernel, so it was DIM, not TI-DIM; this module is the real TI-DIM.

torchattacks 3.5.1 `TIFGSM` is TI-DIM too (kernel_name, len_kernel, nsig, resize_rate,
diversity_prob, decay) and with `resize_back=False` this function takes the same steps and draws
the same random numbers (checked in tests/test_attacks.py). It is written here because TIFGSM
hard-codes 3 colour channels (depth-wise conv with groups=3, so 1-channel digits fail), crashes
when int(H * resize_rate) == H, and feeds the enlarged (H+1)-pixel image to the model. Here any
channel count works, the padded size is at least H + 1, the kernel is cut to fit small images,
and by default the padded image is resized back to H x W (as the authors' DIM did) so models with
a fixed input size work.

Kernel: the paper gives none; TI used 15 taps with nsig=3 on 299-px ImageNet. Our default is
7 taps with nsig=3 (a Gaussian of sigma = 1 pixel) for 32-px images; on smaller images the
same Gaussian is truncated to the largest odd size that fits.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_images


def gaussian_kernel(len_kernel: int = 7, nsig: float = 3.0) -> torch.Tensor:
    """TI's kernel W (Dong et al. Eq. 7): a normalised 2-D Gaussian on linspace(-nsig, nsig, len_kernel)."""
    t = torch.linspace(-nsig, nsig, len_kernel, dtype=torch.float64)
    k1 = torch.exp(-t**2 / 2)
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).float()


def fitted_kernel(len_kernel: int, nsig: float, height: int, width: int) -> torch.Tensor:
    """The TI kernel cut to the largest odd size <= the image, keeping its sigma in pixels."""
    size = min(len_kernel, height, width)
    size = max(size - (size % 2 == 0), 1)
    if size == len_kernel:
        return gaussian_kernel(len_kernel, nsig)
    return gaussian_kernel(size, nsig * (size - 1) / max(len_kernel - 1, 1))


def input_diversity(
    x: torch.Tensor, resize_rate: float = 33 / 32, diversity_prob: float = 0.5, resize_back: bool = True
) -> torch.Tensor:
    """DI (Xie et al. 2019): with prob. diversity_prob resize to rnd in [W, R), zero-pad to R = W * rate."""
    height, width = x.shape[-2:]
    big = max(int(width * resize_rate), width + 1)
    # Same draws, in the same order, as torchattacks' TIFGSM.input_diversity.
    rnd = int(torch.randint(low=width, high=big, size=(1,), dtype=torch.int32))
    rem = big - rnd
    pad_top = int(torch.randint(low=0, high=rem, size=(1,), dtype=torch.int32))
    pad_left = int(torch.randint(low=0, high=rem, size=(1,), dtype=torch.int32))
    rescaled = F.interpolate(x, size=[height + rnd - width, rnd], mode="bilinear", align_corners=False)
    padded = F.pad(rescaled, [pad_left, rem - pad_left, pad_top, rem - pad_top], value=0)
    if resize_back:
        padded = F.interpolate(padded, size=[height, width], mode="bilinear", align_corners=False)
    return padded if torch.rand(1) < diversity_prob else x


def tidim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    alpha: float = 0.003,
    steps: int = 20,
    decay: float = 1.0,
    len_kernel: int = 7,
    nsig: float = 3.0,
    resize_rate: float = 33 / 32,
    diversity_prob: float = 0.5,
    resize_back: bool = True,
) -> torch.Tensor:
    """TI-DIM, L-inf: g = decay g + W*grad / mean|W*grad|; x_adv = clip(x_adv + alpha sign(g)) to the ball."""
    check_images(x)
    if resize_rate <= 1:
        raise ValueError(f"resize_rate must be > 1 (the padded size is W * resize_rate), got {resize_rate}.")
    x = x.detach()
    channels, height, width = x.shape[1:]
    kernel = fitted_kernel(len_kernel, nsig, height, width).to(x)
    kernel = kernel.expand(channels, 1, *kernel.shape).contiguous()
    momentum = torch.zeros_like(x)
    x_adv = x.clone()
    for _ in range(steps):
        with torch.enable_grad():
            x_adv.requires_grad_(True)
            logits = model(input_diversity(x_adv, resize_rate, diversity_prob, resize_back))
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), x_adv)
        grad = F.conv2d(grad, kernel, stride=1, padding="same", groups=channels)  # TI
        grad = grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        grad = grad + decay * momentum  # MI
        momentum = grad
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1).detach()
    return x_adv
