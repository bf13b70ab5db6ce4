"""Tab. 2, 6 and 7 as views of the record store, the purification studies of notebook 02, and the
sanity checks every attack table needs (notebooks 02 and 03).

The records themselves come from `tpap_nb.evaluate.run_attacks` (the paper's protocol: attacks
crafted on the bare model, then purified); this module turns them into the paper's tables and
checks that the attacks behind them work.
"""
from __future__ import annotations

from ..attacks.base import fgsm, pgd
from ..evaluate import predict, robust_accuracy
from ..purify import purify

# ----------------------------------------------------------------------------- Tab. 2 / 6 / 7


def profile_table(records: list[dict], column: str = "acc_tpap", attacks=None) -> dict:
    """{attack: accuracy} for one checkpoint's records, in the paper's column order."""
    by = {r["attack"]: r[column] for r in records}
    order = attacks or list(by)
    return {a: round(by[a], 2) for a in order if a in by}


def side_by_side(ours: dict[str, dict], paper: dict[str, dict], columns):
    """Rows 'paper: X' and 'ours: X' over the same columns (accuracy in %); missing cells stay empty."""
    import pandas as pd

    rows = {f"paper: {k}": {c: v.get(c) for c in columns} for k, v in paper.items()}
    rows |= {f"ours: {k}": {c: v.get(c) for c in columns} for k, v in ours.items()}
    return pd.DataFrame(rows).T[list(columns)].astype(float).round(2)


def ablation(model, x, y, eps: float, xi: float, pgd_alpha: float) -> list[dict]:
    """Tab. 6: purification off/on x {clean, FGSM, PGD-20}, as tidy records (accuracy in %)."""
    attacks = {"clean": None, "fgsm": lambda a, b: fgsm(model, a, b, eps),
               "pgd20": lambda a, b: pgd(model, a, b, eps, pgd_alpha, 20, True)}
    rows = []
    for name, atk in attacks.items():
        acc = robust_accuracy(model, x, y, atk, xi=xi)
        rows += [{"attack": name, "purification": False, "accuracy": 100 * acc["bare"], "n": len(y)},
                 {"attack": name, "purification": True, "accuracy": 100 * acc["tpap"], "n": len(y)}]
    return rows


# ----------------------------------------------------------------------------- notebook 02's studies

def xi_sweep(model, x, y, eps: float, xis, pgd_alpha: float) -> list[dict]:
    """Accuracy of TPAP as the purification radius xi varies (xi = 0 is the bare model)."""
    adv = {"clean": x, "fgsm": fgsm(model, x, y, eps), "pgd20": pgd(model, x, y, eps, pgd_alpha, 20, True)}
    rows = []
    for xi in xis:
        for name, x_adv in adv.items():
            acc = robust_accuracy(model, x_adv, y, None, xi=xi) if xi > 0 else robust_accuracy(model, x_adv, y)
            rows.append({"xi": float(xi), "attack": name, "accuracy": 100 * acc.get("tpap", acc["bare"])})
    return rows


def fgsm_limitation(model, x, y, eps: float, xi: float) -> dict:
    """Sec. 4.3's limitation: purifying a correctly classified FGSM input pushes it further, to ~eps + xi."""
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


# ----------------------------------------------------------------------------- sanity checks

def eps_sanity(model, x, y, eps_list, steps: int = 20, xi: float | None = None) -> list[dict]:
    """Accuracy under PGD (step eps/4) as eps grows: it must fall towards 0 (else gradients are masked)."""
    rows = []
    for eps in eps_list:
        x_adv = pgd(model, x, y, eps, eps / 4, steps) if eps > 0 else x
        acc = robust_accuracy(model, x_adv, y, xi=xi)
        row = {"eps": float(eps), "acc_bare": 100 * acc["bare"]}
        if xi is not None:
            row["acc_tpap"] = 100 * acc["tpap"]
        rows.append(row)
    return rows


def iterations_sanity(model, x, y, eps: float, alpha: float, steps=(20, 100), margin: float = 5.0) -> dict:
    """An attack must not beat itself run with more iterations by more than `margin` points."""
    acc = {s: 100 * (predict(model, pgd(model, x, y, eps, alpha, s)) == y).float().mean().item() for s in steps}
    fewer, more = acc[steps[0]], acc[steps[-1]]
    return {"steps": list(steps), "accuracy": [acc[s] for s in steps], "ok": fewer >= more - margin}


def checks_table(eps_rows: list[dict], iters: dict, zero_tol: float = 5.0) -> list[dict]:
    """The two sanity checks of a table as rows: name, measured value, passed."""
    last = eps_rows[-1]
    return [
        {"check": f"bare accuracy at eps {last['eps']:.3g} <= {zero_tol}%", "value": last["acc_bare"],
         "passed": last["acc_bare"] <= zero_tol},
        {"check": "accuracy never rises with eps (bare)", "value": None,
         "passed": all(a["acc_bare"] >= b["acc_bare"] - 1 for a, b in zip(eps_rows, eps_rows[1:]))},
        {"check": f"PGD-{iters['steps'][0]} not stronger than PGD-{iters['steps'][-1]} by > 5 points",
         "value": iters["accuracy"][0] - iters["accuracy"][-1], "passed": iters["ok"]},
    ]
