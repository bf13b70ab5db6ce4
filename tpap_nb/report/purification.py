"""Notebook 02's result sentences, rendered from its records (Tab. 6 ablation, xi sweep, Sec. 4.3's
FGSM limitation) so the prose says what this run measured, on any profile.

Each function takes the records of one study (`tables.ablation`, `tables.xi_sweep`, `tables.fgsm_limitation`)
and returns Markdown. Accuracies are in %. The example panel's sentence is `words.recovered_sentence`.
"""
from __future__ import annotations

from .words import TOL, change, direction, join, percent, radius

NAMES = {"clean": "clean images", "fgsm": "FGSM", "pgd20": "PGD-20"}


def ablation_sentence(records: list[dict], paper: dict | None = None, names: dict | None = None) -> str:
    """Tab. 6 in words: per attack, accuracy without and with purification, and where it goes the paper's way.

    records: `tables.ablation` rows (attack, purification, accuracy in %, n); paper: the paper's
    Tab. 6 ({"without purification": {...}, "with purification": {...}}, `tpap_nb.paper.TABLE6`);
    names: display names per attack (default NAMES; pass the run's, e.g. from `attack_label`).
    """
    names = NAMES | (names or {})
    acc = {(r["attack"], bool(r["purification"])): r["accuracy"] for r in records}
    attacks = list(dict.fromkeys(r["attack"] for r in records))
    missing = [a for a in attacks if (a, False) not in acc or (a, True) not in acc]
    if missing:
        raise ValueError(f"ablation_sentence needs each attack with and without purification; "
                         f"{missing} lack one side: pass the records of tables.ablation.")
    n = records[0].get("n")
    parts = [f"on {names.get(a, a)} accuracy {change(acc[a, False], acc[a, True])} "
             f"({percent(acc[a, False])} without purification, {percent(acc[a, True])} with)" for a in attacks]
    text = (f"On these {n} test images, " if n else "On these test images, ") + "; ".join(parts) + "."
    if paper:
        before, after = paper["without purification"], paper["with purification"]
        same, opposite = [], []
        for a in attacks:
            if a not in before or a not in after:
                continue
            ours, theirs = direction(acc[a, False], acc[a, True]), direction(before[a], after[a])
            (same if ours == theirs else opposite).append(names.get(a, a))
        if same:
            text += f" The change goes the way it goes in the paper's Tab. 6 on {join(same)}"
            text += f", and not on {join(opposite)}." if opposite else "."
        elif opposite:
            text += f" The change goes against the paper's Tab. 6 on {join(opposite)}."
    return text


def _turns(points: list[tuple[float, float]], tol: float = TOL) -> list[tuple[float, float]]:
    """The first point and every turn of the curve by more than `tol` points (a zigzag filter)."""
    turns, direction = [points[0]], 0
    for p in points[1:]:
        d = p[1] - turns[-1][1]
        if direction and direction * d > 0:
            turns[-1] = p  # the same way, further: the turn moves on
        elif abs(d) > tol:
            direction = 1 if d > 0 else -1
            turns.append(p)
    return turns


def _trend(points: list[tuple[float, float]], tol: float = TOL) -> str:
    """How accuracy moves along xi: level, rising, falling, or up and down, naming each turn."""
    accs = [a for _, a in points]
    lo, hi = min(accs), max(accs)
    if hi - lo <= tol:
        return f"stays between {percent(lo)} and {percent(hi)} over the whole sweep"
    turns = _turns(points, tol)
    (x0, a0), (xn, an) = points[0], points[-1]
    end = f" (and {percent(an)} at xi = {xn:.3g})" if turns[-1] != points[-1] else ""
    if len(turns) == 2:
        (xt, at) = turns[1]
        return (f"{'rises' if at > a0 else 'falls'} from {percent(a0)} at xi = {x0:.3g} to {percent(at)} "
                f"at xi = {xt:.3g}{end}")
    legs = [f"{'up' if b[1] > a[1] else 'down'} to {percent(b[1])} at xi = {b[0]:.3g}"
            for a, b in zip(turns, turns[1:])]
    return f"goes from {percent(a0)} at xi = {x0:.3g} " + ", ".join(legs[:-1]) + f" and {legs[-1]}{end}"


def xi_sweep_sentence(records: list[dict], xi: float, eps: float, names: dict | None = None,
                      tol: float = TOL) -> str:
    """The xi sweep in words: each curve's shape, the profile's xi on it, and whether the trade-off
    'a small xi leaves the attack in place, a large xi costs clean accuracy' shows on this run.

    records: `tables.xi_sweep` rows (xi, attack, accuracy in %), xi = 0 being the bare model.
    """
    names = NAMES | (names or {})
    by: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        by.setdefault(r["attack"], []).append((float(r["xi"]), float(r["accuracy"])))
    for pts in by.values():
        pts.sort()
    parts = [f"on {names.get(a, a)} accuracy {_trend(pts, tol)}" for a, pts in by.items()]
    text = "As xi grows from the bare model (xi = 0): " + "; ".join(parts) + "."
    at = {a: next((v for x, v in pts if abs(x - xi) <= 1e-9 * max(1.0, xi)), None) for a, pts in by.items()}
    at = {a: v for a, v in at.items() if v is not None}
    if at:
        text += (f" At the profile's xi = {radius(xi)} ({xi / eps:.2f} eps) TPAP scores "
                 + ", ".join(f"{percent(v)} on {names.get(a, a)}" for a, v in at.items()) + ".")
    if "clean" in by:
        pts = by["clean"]
        bare, worst = pts[0][1], min(pts[1:], key=lambda p: p[1], default=pts[0])
        if bare - worst[1] > tol:
            text += (f" Purification does cost clean accuracy here: at its lowest {percent(worst[1])} at "
                     f"xi = {worst[0]:.3g}, against the bare model's {percent(bare)}"
                     + (f" ({percent(pts[-1][1])} at the largest xi, {pts[-1][0]:.3g})." if worst != pts[-1] else "."))
        else:
            text += (f" On this run no xi in the sweep costs more than {tol:g} point of clean accuracy "
                     f"(bare: {percent(bare)}).")
    attacked = [a for a in by if a not in ("clean", "fgsm")]
    for a in attacked:
        pts = [p for p in by[a] if p[0] > 0]
        if len(pts) < 2:
            continue
        best = max(pts, key=lambda p: p[1])
        first = pts[0]
        if best[1] - first[1] > tol:
            text += (f" The smallest step (xi = {first[0]:.3g}) leaves {names.get(a, a)} at {percent(first[1])}, "
                     f"{best[1] - first[1]:.1f} points below its best in the sweep ({percent(best[1])} at "
                     f"xi = {best[0]:.3g}).")
        else:
            text += (f" Already the smallest step (xi = {first[0]:.3g}) gives {names.get(a, a)} "
                     f"{percent(first[1])}, within {tol:g} point of its best in the sweep.")
    return text


def fgsm_limitation_sentence(lim: dict, eps: float, xi: float, name: str = "FGSM") -> str:
    """Sec. 4.3's limitation in words, from `tables.fgsm_limitation`: does TPAP's FGSM accuracy land
    near the bare model's at eps + xi (purification pushed the attack further) or near the one at eps?"""
    t, b, b2 = lim["acc_tpap_fgsm"], lim["acc_bare_fgsm"], lim["acc_bare_fgsm_eps_plus_xi"]
    same = 100 * lim["same_sign_fraction"]
    text = (f"Purified {name} inputs sit on average {lim['linf_x_pur']:.3g} (L-inf) from the clean images, "
            f"against {lim['linf_x_adv']:.3g} before purification "
            f"(eps = {radius(eps)}, eps + xi = {radius(eps + xi)}); "
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
