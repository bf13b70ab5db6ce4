"""Tab. 2, 6 and 7 as views of the record store, the purification studies of notebook 02, and the
sanity checks every attack table needs (notebooks 02 and 03).

The records themselves come from `tpap_nb.evaluate.run_attacks` (the paper's protocol: attacks
crafted on the bare model, then purified); this module turns them into the paper's tables and
checks that the attacks behind them work.
"""
from __future__ import annotations

from ..attacks.base import fgsm, pgd
from ..attacks.registry import TABLE2_ATTACKS, UNBOUNDED, attack_info, attack_label
from ..evaluate import pgd20_attack, predict, robust_accuracy
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


def _radii(cfg: dict) -> tuple[float, float]:
    """(attack eps, xi) of a profile: cfg['attack_eps'] (the training eps where it is None) and cfg['xi']."""
    return cfg.get("attack_eps") or cfg["eps"], cfg["xi"]


def ablation(model, x, y, cfg: dict) -> list[dict]:
    """Tab. 6: purification off/on x {clean, FGSM, PGD-20}, as tidy records (accuracy in %).

    PGD-20 is the kit's one PGD-20 (`evaluate.pgd20_attack`: the registry's `pgd20` on cfg).
    """
    eps, xi = _radii(cfg)
    attacks = {"clean": None, "fgsm": lambda a, b: fgsm(model, a, b, eps), "pgd20": pgd20_attack(model, cfg)}
    rows = []
    for name, atk in attacks.items():
        acc = robust_accuracy(model, x, y, atk, xi=xi)
        rows += [{"attack": name, "purification": False, "accuracy": 100 * acc["bare"], "n": len(y)},
                 {"attack": name, "purification": True, "accuracy": 100 * acc["tpap"], "n": len(y)}]
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


def recipe_label(recipe: str, cfg: dict) -> str:
    """A training recipe in words, with the attack counts of the profile (PGD-k from cfg['pgd_steps'])."""
    k = cfg.get("pgd_steps", 10)
    names = {"plain": "no adversarial training", "fgsm": "FGSM-RO (FGSM-AT, Algorithm 1)",
             "fgsm_multi": "TPAP* network (FGSM at eps and 2 eps)", "pgd": f"PGD-AT (PGD-{k})",
             "trades": f"TRADES (PGD-{k})", "mart": f"MART (PGD-{k})",
             "fgsm_trades": "TRADES loss on FGSM (TPAP+TRADES)", "fgsm_mart": "MART loss on FGSM (TPAP+MART)",
             "cw2": f"CW2-AT ({k} Adam steps, Tab. 7)"}
    return names.get(recipe, recipe)


def accuracy_grid(records: dict[str, list[dict]], clean: dict[str, dict], cfg: dict, attacks):
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


def differences(cfg: dict, records: list[dict], clean: dict, paper: dict, n: int,
                star_records: list[dict] | None = None) -> str:
    """The run-dependent bullets of "where our numbers differ from the paper's", rendered from this run.

    records / clean: TPAP's (the FGSM-RO model's) run_attacks records and robust_accuracy on clean
    inputs; paper: the paper's TPAP row of Tab. 2; star_records: TPAP*'s records when it ran.
    """
    from ..evaluate import PAPER_EPS

    eps, xi = _radii(cfg)
    same_setup = cfg["dataset"] == "cifar10" and cfg["model"] == "resnet18" and abs(eps - PAPER_EPS) < 1e-9
    by = {r["attack"]: r for r in records}
    lines = [f"- **Data and model.** This run: `{cfg['model']}` on `{cfg['dataset']}`, attack eps {eps:.3g}, "
             f"n = {n} test images; the paper: ResNet-18 on CIFAR-10 at 8/255. "
             + ("The setups match, so the numbers can be compared directly (up to n and the seed)."
                if same_setup else "Absolute numbers are not comparable, only the pattern of each row.")]
    lines.append(f"- **xi.** The paper fixes xi = eps; this run purifies with xi = {xi:.3g} ({xi / eps:.2g} eps)"
                 + ("." if abs(xi - eps) < 1e-9 else ": the README's section on the profile says how it was chosen."))
    if "fgsm" in by and "fgsm" in paper:
        ours_drop = 100 * clean["tpap"] - by["fgsm"]["acc_tpap"]
        paper_drop = paper["clean"] - paper["fgsm"]
        text = (f"- **FGSM column.** From clean to FGSM, TPAP loses {ours_drop:.1f} points here and "
                f"{paper_drop:.1f} in the paper ({'more' if ours_drop > paper_drop else 'fewer'} here): "
                "purifying a correctly classified FGSM input pushes it further along the attack (Sec. 4.3's "
                "limitation, notebook 02).")
        star = {r["attack"]: r for r in star_records or []}
        if "fgsm" in star:
            better = star["fgsm"]["acc_tpap"] > by["fgsm"]["acc_tpap"]
            text += (f" TPAP*, the paper's remedy, scores {star['fgsm']['acc_tpap']:.1f} % under FGSM against "
                     f"TPAP's {by['fgsm']['acc_tpap']:.1f} % "
                     f"({'the remedy works here' if better else 'no gain here'}).")
        lines.append(text)
    if "pgd20" in by and "pgd20" in paper:
        r = by["pgd20"]
        lines.append(f"- **PGD-20 column.** The bare FGSM-RO model keeps {r['acc_bare']:.1f} % and TPAP "
                     f"{r['acc_tpap']:.1f} % here; the paper reports {paper['pgd20']:.1f} % for TPAP.")
    return "\n".join(lines)


def purification_sentence(bare: dict, purified: dict, paper: dict | None = None) -> str:
    """Tab. 6 in words: how many points purification adds (or costs) per column, ours and the paper's.

    bare / purified: {column: accuracy %} without and with purification; paper: TABLE6-shaped
    {"without purification": {...}, "with purification": {...}}.
    """
    parts = []
    for col in purified:
        if col not in bare:
            continue
        change = purified[col] - bare[col]
        text = f"{col} {bare[col]:.1f} -> {purified[col]:.1f} % ({change:+.1f} points"
        if paper and col in paper.get("without purification", {}):
            p0, p1 = paper["without purification"][col], paper["with purification"][col]
            text += f"; paper {p0:.1f} -> {p1:.1f}, {p1 - p0:+.1f}"
        parts.append(text + ")")
    gains = [c for c in purified if c in bare and purified[c] > bare[c]]
    losses = [c for c in purified if c in bare and purified[c] < bare[c]]
    tail = (f" Purification helps on {', '.join(gains) or 'no column'} and costs on {', '.join(losses) or 'no column'} "
            "here.")
    return "Without -> with purification: " + "; ".join(parts) + "." + tail


def table7_sentence(records: dict[str, list[dict]], paper: dict | None = None,
                    paper_names: dict[str, str] | None = None, attack: str = "pgd20") -> str:
    """Tab. 7 in words: the training attacks ranked by TPAP's accuracy under `attack`, ours beside the paper's order."""
    ours = {name: {r["attack"]: r for r in recs}[attack] for name, recs in records.items()
            if any(r["attack"] == attack for r in recs)}
    if not ours:
        return f"No record of `{attack}` in these Tab. 7 rows."
    ranked = sorted(ours, key=lambda n: -ours[n]["acc_tpap"])
    text = (f"With purification, accuracy under `{attack}` ranks the training attacks "
            + ", ".join(f"{n} ({ours[n]['acc_tpap']:.1f} %, bare {ours[n]['acc_bare']:.1f} %)" for n in ranked))
    if paper:
        names = paper_names or {}
        ref = {n: names.get(n, n) for n in ranked if names.get(n, n) in paper and attack in paper[names.get(n, n)]}
        if ref:
            order = sorted(ref, key=lambda n: -paper[ref[n]][attack])
            # the orders disagree where a pair is ranked strictly the other way round (a tie disagrees with nothing)
            swapped = [(a, b) for a in ref for b in ref
                       if ours[a]["acc_tpap"] > ours[b]["acc_tpap"] and paper[ref[a]][attack] < paper[ref[b]][attack]]
            text += (f"; the paper's order is {', '.join(ref[n] for n in order)}"
                     + (" (ours agrees" + (", up to ties)" if len({ours[n]['acc_tpap'] for n in ref}) < len(ref)
                                           else ")") if not swapped else
                        f" (ours differs: {', '.join(f'{a} above {b}' for a, b in swapped)})"))
    return text + "."


def checks_sentence(checks: list[dict]) -> str:
    """The sanity checks of `checks_table` in one sentence: all passed, or which failed."""
    failed = [c["check"] for c in checks if not c["passed"]]
    if not failed:
        return (f"All {len(checks)} sanity checks pass: the attacks get a gradient to follow, so the tables "
                "above are not an artefact of masked gradients.")
    return (f"{len(failed)} of {len(checks)} sanity checks fail ({'; '.join(failed)}): read the tables above "
            "with suspicion, an attack that does not reach 0 at a large eps may be blind to the model.")


def attack_captions(records: list[dict]):
    """One row per attack of a table: what ran (steps, step size, restarts / queries, n), its code, seconds."""
    import pandas as pd

    return pd.DataFrame([{"attack": r["attack"], "what ran": r.get("label") or attack_label(r["attack"], None, r["n"]),
                          "implementation": attack_info(r["attack"]),
                          "seconds (attack, on bare model)": round(r["seconds_attack"], 1)}
                         for r in records]).set_index("attack")


def minimal_norm_sentence(records: list[dict], clean_tpap: float) -> str:
    """The paragraph of notebook 03 on minimal-norm attacks, with the numbers of `records` (one model).

    clean_tpap: TPAP's clean accuracy on the same inputs (%). An unbounded attack (CW2, DDN, STA)
    returns x where it fails and a point just across the boundary where it succeeds; purification
    steps away from the barely-wrong label and restores the true one, so TPAP's accuracy under it
    can exceed its clean accuracy: that measures where the optimiser stopped, not robustness.
    """
    by = {r["attack"]: r for r in records}
    parts = []
    for attack, twin in UNBOUNDED.items():
        if attack not in by:
            continue
        r = by[attack]
        text = (f"under `{attack}` the bare model keeps {r['acc_bare']:.1f} %, the attack returned "
                f"{r.get('unchanged', float('nan')):.1f} % of the inputs unchanged, and TPAP scores "
                f"{r['acc_tpap']:.1f} % ({'above' if r['acc_tpap'] > clean_tpap else 'not above'} its clean "
                f"{clean_tpap:.1f} %")
        if r.get("acc_tpap_changed") is not None:
            text += f"; on the inputs the attack did move TPAP is right on {r['acc_tpap_changed']:.1f} %"
        text += ")"
        if twin in by:
            t = by[twin]
            text += (f"; its budgeted twin `{twin}` leaves the bare model {t['acc_bare']:.1f} % and TPAP "
                     f"{t['acc_tpap']:.1f} %")
        parts.append(text)
    if not parts:
        return "No unbounded minimal-norm attack (cw2, ddn, sta) in these records."
    n = records[0]["n"]
    above = [a for a in UNBOUNDED if a in by and by[a]["acc_tpap"] > clean_tpap]
    head = (f"On these {n} test images, " + "; ".join(parts) + ". ")
    tail = ("An unbounded minimal-norm attack stops just across the decision boundary, and purification's "
            "step away from that barely-wrong label lands back on the true one, so "
            + (f"TPAP under {', '.join(above)} exceeds its own clean accuracy: that is where the optimiser "
               "stopped, not robustness. " if above else
               "TPAP's accuracy under it says where the optimiser stopped, not how robust TPAP is. ")
            + "The budgeted columns ask the robustness question: is there an adversarial input within the "
            "budget?")
    return head + tail


# ----------------------------------------------------------------------------- notebook 02's studies

def xi_sweep(model, x, y, cfg: dict, xis) -> list[dict]:
    """Accuracy of TPAP as the purification radius xi varies (xi = 0 is the bare model); PGD-20 is `pgd20_attack`."""
    eps, _ = _radii(cfg)
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
        {"check": f"bare accuracy at eps {last['eps']:.3g} <= {zero_tol}%", "value": last["acc_bare"],
         "passed": last["acc_bare"] <= zero_tol},
        {"check": "accuracy never rises with eps (bare)", "value": None,
         "passed": all(a["acc_bare"] >= b["acc_bare"] - 1 for a, b in zip(eps_rows, eps_rows[1:]))},
        {"check": f"PGD-{iters['steps'][0]} not stronger than PGD-{iters['steps'][-1]} by > 5 points",
         "value": iters["accuracy"][0] - iters["accuracy"][-1], "passed": iters["ok"]},
    ]
