"""Accuracy under attack, with and without TPAP, in batches (the paper's protocol, Sec. 4.1.3)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .purify import purify

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batched(x, y, batch_size):
    for i in range(0, len(y), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Labels argmax f(x), in eval mode, batched."""
    was = model.training
    model.eval()
    out = torch.cat([model(xb).argmax(1) for xb, _ in _batched(x, x, batch_size)])
    model.train(was)
    return out


def robust_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | None = None,
                       xi: float | None = None, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Per-example correctness on the bare model and after purification.

    The paper's protocol: x_adv = attack(x, y) is crafted on the bare model, then purified
    (Eq. 7-9). Returns bool tensors 'bare' and, when xi is given, 'tpap'.
    """
    was = model.training
    model.eval()
    bare, tpap = [], []
    try:
        for xb, yb in _batched(x, y, batch_size):
            x_adv = attack(xb, yb) if attack is not None else xb
            with torch.no_grad():
                bare.append(model(x_adv).argmax(1) == yb)
            if xi is not None:
                x_pur = purify(model, x_adv, xi)
                with torch.no_grad():
                    tpap.append(model(x_pur).argmax(1) == yb)
    finally:
        model.train(was)
    out = {"bare": torch.cat(bare)}
    if xi is not None:
        out["tpap"] = torch.cat(tpap)
    return out


def robust_accuracy(model, x, y, attack=None, xi=None, batch_size=512) -> dict[str, float]:
    """Accuracy (fraction) of the bare model and of TPAP on attack(x, y); see robust_predictions."""
    return {k: v.float().mean().item() for k, v in robust_predictions(model, x, y, attack, xi, batch_size).items()}
