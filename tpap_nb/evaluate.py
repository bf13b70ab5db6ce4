"""Accuracy under attack, with and without TPAP, in batches (the paper's protocol, Sec. 4.1.3)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from .purify import _purify_with_pred, purify

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
            if xi is None:
                with torch.no_grad():
                    bare.append(model(x_adv).argmax(1) == yb)
                continue
            x_pur, y_pred = _purify_with_pred(model, x_adv, xi)  # its forward is the bare prediction
            bare.append(y_pred == yb)
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


def pgd20_step(cfg: dict) -> float:
    """The PGD-20 step of a profile: the authors' 0.003 for 8/255, eps / 4 where eps differs."""
    return cfg.get("eval_pgd_alpha") or cfg["eps"] / 4


def ablation(model, x, y, eps: float, xi: float, pgd_alpha: float) -> list[dict]:
    """Tab. 6: purification off/on x {clean, FGSM, PGD-20}, as tidy records (accuracy in %)."""
    from .attacks.base import fgsm, pgd

    attacks = {"clean": None, "fgsm": lambda a, b: fgsm(model, a, b, eps),
               "pgd20": lambda a, b: pgd(model, a, b, eps, pgd_alpha, 20, True)}
    rows = []
    for name, atk in attacks.items():
        acc = robust_accuracy(model, x, y, atk, xi=xi)
        rows += [{"attack": name, "purification": False, "accuracy": 100 * acc["bare"], "n": len(y)},
                 {"attack": name, "purification": True, "accuracy": 100 * acc["tpap"], "n": len(y)}]
    return rows


def xi_sweep(model, x, y, eps: float, xis, pgd_alpha: float) -> list[dict]:
    """Accuracy of TPAP as the purification radius xi varies (xi = 0 is the bare model)."""
    from .attacks.base import fgsm, pgd

    adv = {"clean": x, "fgsm": fgsm(model, x, y, eps), "pgd20": pgd(model, x, y, eps, pgd_alpha, 20, True)}
    rows = []
    for xi in xis:
        for name, x_adv in adv.items():
            acc = robust_accuracy(model, x_adv, y, None, xi=xi) if xi > 0 else robust_accuracy(model, x_adv, y)
            rows.append({"xi": float(xi), "attack": name, "accuracy": 100 * acc.get("tpap", acc["bare"])})
    return rows


def fgsm_limitation(model, x, y, eps: float, xi: float) -> dict:
    """Sec. 4.3's limitation: purifying a correctly classified FGSM input pushes it further, to ~eps + xi."""
    from .attacks.base import fgsm

    x_adv = fgsm(model, x, y, eps)
    x_pur = purify(model, x_adv, xi)
    delta, gamma = x_adv - x, x_pur - x_adv
    moved = delta.abs() > 0
    same = ((delta.sign() == gamma.sign()) & moved).float().sum() / moved.float().sum().clamp(min=1)
    return {
        "linf_x_adv": (x_adv - x).abs().flatten(1).amax(1).mean().item(),
        "linf_x_pur": (x_pur - x).abs().flatten(1).amax(1).mean().item(),
        "same_sign_fraction": same.item(),
        "acc_bare_fgsm": 100 * robust_accuracy(model, x_adv, y)["bare"],
        "acc_tpap_fgsm": 100 * robust_accuracy(model, x_adv, y, None, xi=xi)["tpap"],
        "acc_bare_fgsm_eps_plus_xi": 100 * robust_accuracy(model, fgsm(model, x, y, eps + xi), y)["bare"],
    }
