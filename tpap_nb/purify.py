"""TPAP test-time purification (Sec. 3.3, Eq. 5-9) and the defended classifier.

Eq. 7-8 are written once, in `purify_with_pred`. Its `grad` argument chooses what an attacker's
backward pass sees through the purification (the adaptive attacks of `experiments.adaptive`);
the forward value is Eq. 8 in every mode.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_images, check_model_input, check_radius
from .models import eval_mode

GRADS = ("bpda", "smooth", "exact")


def purify_with_pred(model: nn.Module, x: torch.Tensor, xi: float, grad: str | None = None, tau: float = 0.5,
                     on_graph: Callable[[torch.Tensor], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6-8 with one forward and one input-only backward: returns (x_pur, y_pred(x)).

    `model` is called as it is (callers put it in eval mode). With grad=None, or when x does not
    require grad, x_pur is detached. Otherwise its backward pass is, for an attacker:

    - ``"bpda"``: BPDA with the identity, dP/dx := I (the attacker gets grad f at x_pur);
    - ``"smooth"``: xi * tanh(g / (tau * mean|g|)) in place of xi * sign(g) (g built with
      create_graph=True; mean|g| per sample, a constant, so tau is scale-free);
    - ``"exact"``: the plain autograd graph of Eq. 7-8 (d sign / dg = 0: the identity path through
      x + gamma, masked where the clip binds).

    `on_graph(g)` is called with the differentiable g in the smooth and exact modes (to count
    Hessian-vector products).
    """
    if grad is not None and grad not in GRADS:
        raise ValueError(f"grad={grad!r} is not a gradient mode; choose one of {GRADS}.")
    graph = grad is not None and torch.is_grad_enabled() and x.requires_grad
    create = graph and grad != "bpda"
    with torch.enable_grad():
        x_in = x if create else x.detach().clone().requires_grad_(True)
        logits = model(x_in)
        y_pred = logits.argmax(1)  # Eq. 6, from the same forward pass
        loss = F.cross_entropy(logits, y_pred, reduction="sum")
        # Input-only backward: weights receive no .grad.
        (g,) = torch.autograd.grad(loss, x_in, create_graph=create)
    x_pur = (x.detach() + xi * g.detach().sign()).clamp(0.0, 1.0)  # Eq. 7-8, kept a valid image
    if graph and grad == "bpda":
        x_pur = x_pur + (x - x.detach())  # value unchanged, dP/dx = I
    elif graph:
        if on_graph is not None:
            on_graph(g)
        if grad == "exact":
            x_pur = (x + xi * g.sign()).clamp(0.0, 1.0)
        else:
            scale = g.detach().abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
            x_sur = (x + xi * torch.tanh(g / (tau * scale))).clamp(0.0, 1.0)
            x_pur = x_pur + (x_sur - x_sur.detach())  # forward: sign; backward: tanh surrogate
    return x_pur, y_pred.detach()


def purify(model: nn.Module, x: torch.Tensor, xi: float = 8 / 255, allow_negative_xi: bool = False) -> torch.Tensor:
    """Eq. 7-8: x_pur = clip(x + xi * sign(grad_x CE(f(x), y_pred(x))), 0, 1), in eval mode.

    xi is a radius in pixel units in [0, 1]; a negative xi (a step towards the predicted label) only with
    allow_negative_xi=True.
    """
    check_radius(xi, "xi", allow_negative=allow_negative_xi)
    check_images(x)
    check_model_input(model, x)
    with eval_mode(model):
        return purify_with_pred(model, x, xi)[0]


class TPAP(nn.Module):
    """The defended classifier of Algorithm 1 (testing phase): logits f(x_pur), Eq. 9.

    Works under ``torch.no_grad()`` callers and always runs ``model`` in eval mode;
    the model's weights and mode are left as they were. Gradients do not flow
    through this module to x (sign has zero derivative; the purification detaches x), so the
    registry's attacks refuse it; use ``tpap_nb.experiments.adaptive.DefendedClassifier`` for attacks
    that target the whole pipeline. xi is checked once, here (allow_negative_xi as in `purify`).
    """

    def __init__(self, model: nn.Module, xi: float = 8 / 255, allow_negative_xi: bool = False):
        super().__init__()
        self.model = model
        self.xi = check_radius(xi, "xi", allow_negative=allow_negative_xi)
        self.allow_negative_xi = allow_negative_xi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_pur = purify(self.model, x, self.xi, self.allow_negative_xi)
        with eval_mode(self.model):
            return self.model(x_pur)

    def extra_repr(self) -> str:
        return f"xi={self.xi:.5f}"
