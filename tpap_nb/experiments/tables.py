"""Tab. 2, 6 and 7 as views of the record store, the purification studies of notebook 02, and the
sanity checks every attack table needs (notebooks 02 and 03).

The records themselves come from `tpap_nb.evaluate.run_attacks` (the paper's protocol: attacks
crafted on the bare model, then purified); this module turns them into the paper's tables and
checks that the attacks behind them work.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..attacks.base import fgsm, pgd
from ..attacks.registry import TABLE2_ATTACKS, attack_info, attack_label, radius
from ..evaluate import pgd20_attack, predict, robust_accuracy, robust_predictions
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


def ablation(model, x, y, cfg: Mapping) -> list[dict]:
    """Tab. 6: purification off/on x {clean, FGSM, PGD-20}, as tidy records (accuracy in %, n, and the per-image
    verdicts under '_correct', so `report.table6_sentence` can test each change on the same images).

    PGD-20 is the kit's one PGD-20 (`evaluate.pgd20_attack`: the registry's `pgd20` on cfg).
    """
    eps, xi = cfg["attack_eps"], cfg["xi"]
    attacks = {"clean": None, "fgsm": lambda a, b: fgsm(model, a, b, eps), "pgd20": pgd20_attack(model, cfg)}
    rows = []
    for name, atk in attacks.items():
        correct = robust_predictions(model, x, y, atk, xi=xi)
        rows += [{"attack": name, "purification": side == "tpap", "accuracy": 100 * correct[side].float().mean().item(),
                  "n": len(y), "_correct": correct[side].cpu()} for side in ("bare", "tpap")]
    return rows


def table2(records: dict[str, list[dict]], clean: dict[str, dict], paper: dict[str, dict],
           columns=TABLE2_ATTACKS):
    """Tab. 2 as notebook 03 shows it: per model, TPAP's accuracy, the bare model's, and the % of inputs
    each attack returned unchanged (x_adv == x) or as an all-zero image; the paper's rows beside.

    records: {row name: run_attacks records}, e.g. {"TPAP": recs_fgsm, "TPAP*": recs_fgsm_multi};
    clean: {row name: robust_accuracy(model, x, y, xi=xi)} (fractions). The paper's numbers sit in
    the column of the attack the authors ran (paper.py: TI-DIM under `dim`, STA under `sta_advertorch`).
    """
    import pandas as pd

    rows = {}
    for name, recs in records.items():
        by = {r["attack"]: r for r in recs}
        if name in paper:
            rows[f"paper: {name}"] = {c: paper[name].get(c) for c in ("clean", *columns)}
        rows[f"ours: {name}"] = {"clean": 100 * clean[name]["tpap"]} | {c: by[c]["acc_tpap"] for c in columns
                                                                      if c in by}
        rows[f"ours: {name} bare"] = {"clean": 100 * clean[name]["bare"]} | {c: by[c]["acc_bare"] for c in columns
                                                                           if c in by}
        rows[f"ours: {name} unchanged (%)"] = {"clean": 100.0} | {c: by[c].get("unchanged") for c in columns if c in by}
        if any(by[c].get("zero_images") for c in columns if c in by):
            rows[f"ours: {name} all-zero images (%)"] = {c: by[c].get("zero_images") for c in columns if c in by}
    cols = ["clean", *columns]
    return pd.DataFrame(rows).T.reindex(columns=cols).astype(float).round(2)


def bare_and_purified(records: dict[str, list[dict]], clean: dict[str, dict], paper: dict[str, dict],
                      columns, paper_names: dict[str, str] | None = None):
    """Tab. 7 with both sides: per training recipe the bare model's accuracy and TPAP's, and the paper's TPAP.

    paper_names maps a row of ours to the paper's row where the names differ (e.g. our "PGD-5"
    on a profile that trains with 5 steps, to the paper's "PGD-10").
    """
    import pandas as pd

    rows = {}
    for name, recs in records.items():
        by = {r["attack"]: r for r in recs}
        ref = (paper_names or {}).get(name, name)
        if ref in paper:
            rows[f"paper: {ref} + TPAP"] = {c: paper[ref].get(c) for c in columns}
        for side, key in (("bare", "acc_bare"), ("+ TPAP", "acc_tpap")):
            rows[f"ours: {name} {side}"] = {c: (100 * clean[name][key[4:]] if c == "clean" else by[c][key])
                                            for c in columns if c == "clean" or c in by}
    return pd.DataFrame(rows).T.reindex(columns=list(columns)).astype(float).round(2)


def recipe_label(recipe: str, cfg: Mapping) -> str:
    """A training recipe in words, with the attack counts of the profile (PGD-k from cfg['pgd_steps'])."""
    k = cfg.get("pgd_steps", 10)
    names = {"plain": "no adversarial training", "fgsm": "FGSM-RO (FGSM-AT, Algorithm 1)",
             "fgsm_multi": "TPAP* network (FGSM at eps and 2 eps)", "pgd": f"PGD-AT (PGD-{k})",
             "trades": f"TRADES (PGD-{k})", "mart": f"MART (PGD-{k})",
             "fgsm_trades": "TRADES loss on FGSM (TPAP+TRADES)", "fgsm_mart": "MART loss on FGSM (TPAP+MART)",
             "cw2": f"CW2-AT ({k} Adam steps, Tab. 7)"}
    return names.get(recipe, recipe)


def accuracy_grid(records: dict[str, list[dict]], clean: dict[str, dict], cfg: Mapping, attacks):
    """Every model against every attack: rows (recipe, bare | + TPAP), columns clean and `attacks`, accuracy in %.

    records: {recipe: run_attacks records}; clean: {recipe: robust_accuracy(model, x, y, xi=xi)}
    (fractions). A (recipe, attack) that was not run stays NaN, so a plot can mark it as such.
    """
    import pandas as pd

    rows = {}
    for recipe, recs in records.items():
        by = {r["attack"]: r for r in recs}
        for side, key in (("bare", "bare"), ("+ TPAP", "tpap")):
            rows[f"{recipe_label(recipe, cfg)}, {side}"] = {"clean": 100 * clean[recipe][key]} | {
                a: by[a][f"acc_{key}"] for a in attacks if a in by}
    return pd.DataFrame(rows).T.reindex(columns=["clean", *attacks]).astype(float)


def column_label(record: dict) -> str:
    """A short column header from a record's `label` (attack_label): the name, then its count and its budget."""
    name, label = record["attack"], record.get("label") or attack_label(record["attack"], None)
    inner = label[label.find("(") + 1:label.rfind(")")] if "(" in label else ""
    parts = [p for p in inner.split(", ") if not p.startswith("n = ")]
    keep = parts[:1] + [p for p in parts[1:] if p.startswith(("unbounded", "L2 <=", "flow <=", "eps "))]
    head = name + (" (flawed repro)" if "[reproduction of a flaw]" in label else "")
    return head + ("\n" + ", ".join(keep) if keep else "")


def attack_captions(records: list[dict]):
    """One row per attack of a table: what ran (steps, step size, restarts / queries, n), its code, seconds."""
    import pandas as pd

    return pd.DataFrame([{"attack": r["attack"], "what ran": r.get("label") or attack_label(r["attack"], None, r["n"]),
                          "implementation": attack_info(r["attack"]),
                          "seconds (attack, on bare model)": round(r["seconds_attack"], 1)}
                         for r in records]).set_index("attack")


# ----------------------------------------------------------------------------- notebook 02's studies

def xi_sweep(model, x, y, cfg: Mapping, xis) -> list[dict]:
    """Accuracy of TPAP as the purification radius xi varies (xi = 0 is the bare model); PGD-20 is `pgd20_attack`."""
    eps = cfg["attack_eps"]
    adv = {"clean": x, "fgsm": fgsm(model, x, y, eps), "pgd20": pgd20_attack(model, cfg)(x, y)}
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
    """Accuracy under PGD (step eps/4) as eps grows: it must fall towards 0 (else gradients are masked).
    A radius above 1 is measured at 1: in L-inf on [0, 1] images that already reaches every image."""
    rows = []
    for eps in eps_list:
        eps = min(float(eps), 1.0)
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
        {"check": f"bare accuracy at eps {radius(last['eps'])} <= {zero_tol}%", "value": last["acc_bare"],
         "passed": last["acc_bare"] <= zero_tol},
        {"check": "accuracy never rises with eps (bare)", "value": None,
         "passed": all(a["acc_bare"] >= b["acc_bare"] - 1 for a, b in zip(eps_rows, eps_rows[1:]))},
        {"check": f"PGD-{iters['steps'][0]} not stronger than PGD-{iters['steps'][-1]} by > 5 points",
         "value": iters["accuracy"][0] - iters["accuracy"][-1], "passed": iters["ok"]},
    ]
