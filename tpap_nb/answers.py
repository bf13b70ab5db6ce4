"""Answers to the notebooks' exercises, for teachers (students: try first, then look here).

Each answer is computed, not typed, so it holds for whatever profile the class runs, and
tests/test_answers.py checks it.
"""
from __future__ import annotations

import torch

from .attacks.base import fgsm
from .evaluate import pgd20_attack, robust_accuracy
from .purify import purify
from .train import robust_overfitting_test


# ---------------------------------------------------------------- 01_train_fgsm_ro
def ex01_first_overfit_epoch(history: list[dict]) -> int | None:
    """Ex. 1.1: the first evaluated epoch at which the Sec. 3.2 test passes (None if never).

    Expected: after an lr drop (the paper sees it after epoch ~80, past its milestone 75).
    """
    seen = []
    for h in history:
        seen.append(h)
        if "train_fgsm" in h and robust_overfitting_test(seen)["robust_overfit"]:
            return h["epoch"]
    return None


def ex01_pgd_at_is_not_fgsm_ro(cfg: dict, data=None) -> dict:
    """Ex. 1.2: train the same model with PGD-10 AT; it does not robustly overfit FGSM.

    Its train PGD-20 accuracy stays far above 10 % (it is genuinely robust) while its
    FGSM accuracy stays well below the FGSM-RO model's.
    """
    from .train import get_or_train

    _, history, _ = get_or_train(cfg, recipe="pgd", progress=False, data=data)
    res = robust_overfitting_test(history)
    last = [h for h in history if "train_fgsm" in h][-1]
    return {"robust_overfit": res["robust_overfit"], "train_fgsm": last["train_fgsm"],
            "train_pgd20": last["train_pgd20"], "test_pgd20": last["test_pgd20"]}


# ---------------------------------------------------------------- 02_purification
def ex02_direction_matters(model, x, y, cfg: dict) -> dict:
    """Ex. 2.1: step *towards* y_pred (minus sign) instead of away from it, on PGD-20 inputs.

    Expected: the wrong direction does not undo the attack (it reinforces the wrong label), so
    accuracy stays near the bare model's; Eq. 7's direction (away from y_pred) recovers it.
    """
    xi = cfg["xi"]
    x_adv = pgd20_attack(model, cfg)(x, y)  # the kit's one PGD-20
    with torch.no_grad():
        y_pred = model(x_adv).argmax(1)
    x_toward = fgsm(model, x_adv, y_pred, -xi)  # a negative step descends CE(f(x), y_pred)
    with torch.no_grad():
        acc_toward = (model(x_toward).argmax(1) == y).float().mean().item()
    acc = robust_accuracy(model, x_adv, y, None, xi=xi)
    return {"bare": 100 * acc["bare"], "away (Eq. 7)": 100 * acc["tpap"], "toward": 100 * acc_toward}


def ex02_purify_twice(model, x, y, cfg: dict) -> dict:
    """Ex. 2.2: two purification steps of xi/2 (re-predicting in between) vs one step of xi."""
    xi = cfg["xi"]
    out = {}
    for name, x_in in (("clean", x), ("pgd20", pgd20_attack(model, cfg)(x, y))):
        once = purify(model, x_in, xi)
        twice = purify(model, purify(model, x_in, xi / 2), xi / 2)
        with torch.no_grad():
            out[name] = {"one step of xi": 100 * (model(once).argmax(1) == y).float().mean().item(),
                         "two steps of xi/2": 100 * (model(twice).argmax(1) == y).float().mean().item()}
    return out


# ---------------------------------------------------------------- 07_adaptive_attacks
def ex07_transfer_sources(model, x, y, xi: float, eps: float, sources: dict, scale: float = 1.0) -> dict:
    """Ex. 7.1: TPAP accuracy (%) on PGD examples transferred from each source.

    Expected: the bare FGSM-RO source (the paper's protocol) is the easiest for TPAP: its PGD
    examples sit where one FGSM step away from the wrong label undoes them. Crafting on F itself
    (BPDA) hurts most, since it attacks what is deployed.
    """
    from .experiments.adaptive import evaluate_adaptive

    records, _ = evaluate_adaptive(model, x, y, xi, eps, attacks=("transfer",), sources=sources, scale=scale)
    return {r["attack"].removeprefix("transfer:"): 100 * r["accuracy"] for r in records
            if r["defence"] == "TPAP" and r["attack"].startswith("transfer:")}


def ex07_square_vs_protocol(records: list[dict]) -> dict:
    """Ex. 7.2: TPAP accuracy (%) under the paper's protocol vs under gradient-free Square.

    Expected: Square, which never sees a gradient, brings TPAP far below its paper-protocol
    accuracy, so that accuracy measured the attacker's ignorance, not robustness.
    """
    by = {r["attack"]: 100 * r["accuracy"] for r in records if r["defence"] == "TPAP"}
    protocol = next((v for k, v in by.items() if k.startswith("transfer:bare")), None)
    return {"paper protocol": protocol, "square": by.get("square"), "worst case": by.get("worst-case")}


def ex07_tau_sweep(model, x, y, xi: float, eps: float, taus=(0.1, 0.5, 2.0), scale: float = 1.0) -> dict:
    """Ex. 7.3: TPAP accuracy (%) under PGD through the smooth surrogate for several tau, and BPDA.

    Expected: no tau does clearly better than BPDA: P is piecewise constant in its direction
    (a sign), so the extra information in the surrogate's second-order term adds little.
    """
    from .experiments.adaptive import evaluate_adaptive

    out = {}
    for tau in taus:
        recs, _ = evaluate_adaptive(model, x, y, xi, eps, attacks=("pgd-smooth",), tau=tau, scale=scale)
        out[f"smooth tau={tau:g}"] = next(100 * r["accuracy"] for r in recs
                                          if r["defence"] == "TPAP" and r["attack"] == "pgd-smooth")
    recs, _ = evaluate_adaptive(model, x, y, xi, eps, attacks=("pgd-bpda",), scale=scale)
    out["bpda"] = next(100 * r["accuracy"] for r in recs if r["defence"] == "TPAP" and r["attack"] == "pgd-bpda")
    return out
