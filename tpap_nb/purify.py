"""TPAP test-time purification (Sec. 3.3, Eq. 5-9) and the defended classifier."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_images


def _purify_with_pred(model: nn.Module, x: torch.Tensor, xi: float):
    """One forward with grad, one input-only backward: returns (x_pur, y_pred(x))."""
    check_images(x)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x_in = x.detach().clone().requires_grad_(True)
            logits = model(x_in)
            y_pred = logits.argmax(1)  # Eq. 6, from the same forward pass
            loss = F.cross_entropy(logits, y_pred, reduction="sum")
            # Input-only backward: weights receive no .grad.
            (grad,) = torch.autograd.grad(loss, x_in)
        gamma = xi * grad.sign()  # Eq. 7
        x_pur = (x.detach() + gamma).clamp(0.0, 1.0)  # Eq. 8, kept a valid image
    finally:
        model.train(was_training)
    return x_pur, y_pred.detach()


def purify(model: nn.Module, x: torch.Tensor, xi: float = 8 / 255) -> torch.Tensor:
    """Eq. 7-8: x_pur = clip(x + xi * sign(grad_x CE(f(x), y_pred(x))), 0, 1)."""
    return _purify_with_pred(model, x, xi)[0]


class TPAP(nn.Module):
    """The defended classifier of Algorithm 1 (testing phase): logits f(x_pur), Eq. 9.

    Works under ``torch.no_grad()`` callers and always runs ``model`` in eval mode;
    the model's weights and mode are left as they were. Gradients do not flow
    through this module to x in a useful way (sign has zero derivative); use
    ``tpap_nb.adaptive`` for attacks that target the whole pipeline.
    """

    def __init__(self, model: nn.Module, xi: float = 8 / 255):
        super().__init__()
        self.model = model
        self.xi = float(xi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_pur = purify(self.model, x, self.xi)
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(x_pur)
        finally:
            self.model.train(was_training)

    def extra_repr(self) -> str:
        return f"xi={self.xi:.5f}"
