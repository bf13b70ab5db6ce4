"""Notebook 02's result sentences, rendered from its records (Tab. 6 ablation, xi sweep, Sec. 4.3's
FGSM limitation) so the prose says what this run measured, on any profile.

Each function takes the records of one study (`tables.ablation`, `tables.xi_sweep`, `tables.fgsm_limitation`)
and returns Markdown. Accuracies are in %. The example panel's sentence is `words.recovered_sentence`.
"""
from __future__ import annotations

from ..stats import compare, compare_sentence, diff_text, paired, pct_ci
from .words import TOL, _bools, change, direction, join, percent, radius_in

NAMES = {"clean": "clean images", "fgsm": "FGSM", "pgd20": "PGD-20"}


def ablation_sentence(records: list[dict], paper: dict | None = None, names: dict | None = None) -> str:
    """Tab. 6 in words: per attack, accuracy without and with purification, whether the change is beyond the
    uncertainty (a paired test on the same images: per image when the rows keep '_correct', else under the least
    favourable pairing), and whether the decided changes go the paper's way.

    records: `tables.ablation` rows (attack, purification, accuracy in %, n); paper: the paper's
    Tab. 6 ({"without purification": {...}, "with purification": {...}}, `tpap_nb.paper.TABLE6`);
    names: display names per attack (default NAMES; pass the run's, e.g. from `attack_label`).
    """
    names = NAMES | (names or {})
    rows = {(r["attack"], bool(r["purification"])): r for r in records}
    acc = {k: r["accuracy"] for k, r in rows.items()}
    attacks = list(dict.fromkeys(r["attack"] for r in records))
    missing = [a for a in attacks if (a, False) not in acc or (a, True) not in acc]
    if missing:
        raise ValueError(f"ablation_sentence needs each attack with and without purification; "
                         f"{missing} lack one side: pass the records of tables.ablation.")
    n = records[0].get("n")
    decided, parts = {}, []
    for a in attacks:
        v0, v1 = rows[a, False].get("_correct"), rows[a, True].get("_correct")
        r = compare(v1, v0) if v0 is not None and v1 is not None else (
            compare(acc[a, True], acc[a, False], n) if n else None)
        decided[a] = bool(r and r["decided"])
        how = "" if decided[a] else ", within the uncertainty" if r else ", undecided without n"
        parts.append(f"on {names.get(a, a)} accuracy {change(acc[a, False], acc[a, True])}{how} "
                     f"({percent(acc[a, False])} without purification, {percent(acc[a, True])} with)")
    text = (f"On these {n} test images, " if n else "On these test images, ") + "; ".join(parts) + "."
    if paper:
        before, after = paper["without purification"], paper["with purification"]
        same, opposite = [], []
        for a in attacks:
            if a not in before or a not in after or not decided[a]:
                continue
            ours, theirs = direction(acc[a, False], acc[a, True]), direction(before[a], after[a])
            (same if ours == theirs else opposite).append(names.get(a, a))
        if same:
            text += f" Beyond the uncertainty, the change goes the way it goes in the paper's Tab. 6 on {join(same)}"
            text += f", and not on {join(opposite)}." if opposite else "."
        elif opposite:
            text += f" Beyond the uncertainty, the change goes against the paper's Tab. 6 on {join(opposite)}."
        else:
            text += " No change here is beyond the uncertainty, so none can be set against the paper's Tab. 6."
    return text


def _at(pts: list[tuple[float, float]], value: float) -> float | None:
    """The accuracy of a curve at xi = value (None when the sweep has no such xi)."""
    return next((a for x, a in pts if abs(x - value) <= 1e-6 * max(value, 1e-9)), None)


def sweep_best(records: list[dict], attack: str, eps: float) -> float:
    """The xi > 0 with the highest accuracy on `attack` in a `tables.xi_sweep`; xi = eps wins a tie (the paper's)."""
    pts = sorted((float(r["xi"]), float(r["accuracy"])) for r in records if r["attack"] == attack and r["xi"] > 0)
    if not pts:
        raise ValueError(f"sweep_best: no xi > 0 for {attack!r} in the records; pass tables.xi_sweep's rows.")
    top = max(a for _, a in pts)
    at_eps = _at(pts, eps)
    return eps if at_eps is not None and at_eps >= top else next(x for x, a in pts if a == top)


def _acc(acc: float, n: int | None, verdict=None) -> str:
    """'42.6 % (95 % CI 39.6-45.7, n = 500)' from per-image verdicts or a percentage and n; '42.6 %' without n."""
    if verdict is not None:
        v = _bools(verdict)
        return pct_ci(sum(v), len(v))
    return pct_ci(round(acc * n / 100), n) if n else percent(acc)


def xi_sweep_sentence(records: list[dict], xi: float, eps: float, names: dict | None = None, n: int | None = None,
                      verdicts: dict | None = None, tol: float = TOL) -> str:
    """The xi sweep in what matters: per attacked curve its best xi (accuracy, 95 % Wilson interval), its value at
    xi = eps (the paper's choice), and whether the best is better than eps by a paired test on the same images
    (`stats.compare_sentence`; "better" only when it decides); then what purification costs on clean images.

    records: `tables.xi_sweep` rows (xi, attack, accuracy in %), xi = 0 being the bare model; n: the images;
    verdicts: {attack: {xi: per-image TPAP verdicts}} at the best xi and at eps (without them no test is run and
    the sentence says so). Every radius in the sentence is written in one unit (`words.radius_in`).
    """
    names = NAMES | (names or {})
    r = radius_in(eps)
    by: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        by.setdefault(rec["attack"], []).append((float(rec["xi"]), float(rec["accuracy"])))
    for pts in by.values():
        pts.sort()
    verdicts = verdicts or {}
    parts = []
    for a, pts in by.items():
        if a == "clean" or not any(x > 0 for x, _ in pts):
            continue
        name, best, v = names.get(a, a), sweep_best(records, a, eps), verdicts.get(a, {})
        vb, ve = _pick(v, best), _pick(v, eps)
        at_eps = _at(pts, eps)
        text = f"On {name}, TPAP is best at xi = {r(best)}: {_acc(_at(pts, best), n, vb)}"
        if at_eps is None:
            parts.append(text + f"; the sweep has no xi = eps = {r(eps)}.")
        elif abs(best - eps) <= 1e-6 * eps:
            parts.append(text + ", which is xi = eps, the paper's choice.")
        elif vb is None or ve is None:
            parts.append(text + f"; at xi = eps = {r(eps)} it scores {_acc(at_eps, n)} (not tested against each "
                         "other: pass the per-image verdicts).")
        else:
            cmp = paired(vb, ve)
            text += f"; at xi = eps = {r(eps)} it scores {_acc(at_eps, n, ve)}. "
            if cmp["decided"] and cmp["diff"] > 0:
                text += ("On the same images the best xi is better than xi = eps: "
                         + compare_sentence(vb, ve, f"xi = {r(best)}", f"xi = {r(eps)}") + ".")
            else:
                text += (compare_sentence(vb, ve, f"xi = {r(best)}", f"xi = {r(eps)}")
                         + ": the sweep's best is not shown to beat xi = eps on this run.")
            parts.append(text)
    text = " ".join(parts)
    if abs(xi - eps) > 1e-6 * eps and any(_at(pts, xi) is not None for pts in by.values()):
        text += (f" At the profile's xi = {r(xi)} ({xi / eps:.2f} eps) TPAP scores "
                 + ", ".join(f"{percent(_at(pts, xi))} on {names.get(a, a)}" for a, pts in by.items()
                             if _at(pts, xi) is not None) + ".")
    if "clean" in by:
        pts = by["clean"]
        bare, at_eps = _at(pts, 0.0), _at(pts, eps)
        if bare is not None and at_eps is not None:
            cost = bare - at_eps
            head = " On clean images purification at xi = eps"
            both = f"{percent(at_eps)} against the bare model's {percent(bare)}"
            if n:  # the same n images on both sides: a paired test on the counts (least favourable pairing)
                c = compare(at_eps, bare, n)
                text += (f"{head} {'costs' if c['diff'] < 0 else 'raises'} accuracy: {both}, {diff_text(c)}."
                         if c["decided"] else
                         f"{head} costs no accuracy that {n} images can detect: {both}.")
            else:
                text += (f"{head} {'costs' if cost > tol else 'does not cost'} accuracy: {both}"
                         + (f" ({cost:.1f} points)." if cost > tol else f" (within {tol:g} point)."))
            low = min((p for p in pts if p[0] > 0), key=lambda p: p[1], default=None)
            if low is not None and bare - low[1] > tol and low[0] != eps:
                text += f" Its lowest in the sweep is {percent(low[1])} at xi = {r(low[0])}."
    return text.strip()


def _pick(v: dict, value: float):
    """The verdicts of `v` ({xi: verdicts}) at xi = value, or None."""
    return next((vv for x, vv in v.items() if abs(float(x) - value) <= 1e-6 * max(value, 1e-9)), None)


def fgsm_limitation_sentence(lim: dict, eps: float, xi: float, name: str = "FGSM") -> str:
    """Sec. 4.3's limitation in words, from `tables.fgsm_limitation`: does TPAP's FGSM accuracy land
    near the bare model's at eps + xi (purification pushed the attack further) or near the one at eps?"""
    t, b, b2 = lim["acc_tpap_fgsm"], lim["acc_bare_fgsm"], lim["acc_bare_fgsm_eps_plus_xi"]
    same, r = 100 * lim["same_sign_fraction"], radius_in(eps)  # one unit for every radius of the sentence
    text = (f"Purified {name} inputs sit on average {r(lim['linf_x_pur'])} (L-inf) from the clean images, "
            f"against {r(lim['linf_x_adv'])} before purification "
            f"(eps = {r(eps)}, eps + xi = {r(eps + xi)}); "
            f"gamma has the sign of delta on {same:.1f} % of the pixels the attack moved. "
            f"TPAP's accuracy on {name} at eps is {percent(t)}; the bare model's is {percent(b)} on {name} at eps "
            f"and {percent(b2)} on {name} at eps + xi.")
    if abs(b - b2) <= TOL:
        text += (" The bare model scores about the same at eps and at eps + xi, so this run cannot tell "
                 "whether Sec. 4.3's explanation (purification doubles the attack) holds.")
    elif abs(t - b2) < abs(t - b):
        text += (f" TPAP's number lies closer to the bare model's at eps + xi, as Sec. 4.3 explains it: "
                 f"purifying a correctly classified {name} input pushes it further along the attack.")
    else:
        text += (" TPAP's number lies closer to the bare model's at eps than at eps + xi: on this run "
                 "Sec. 4.3's explanation (purification doubles the attack) does not account for it.")
    return text
