"""Notebook 02's result sentences, rendered from its records (Tab. 6 ablation, xi sweep, Sec. 4.3's
FGSM limitation, the example panel) so the prose says what this run measured, on any profile.

Each function takes the records of one study (`tables.ablation`, `tables.xi_sweep`,
`tables.fgsm_limitation`, per-example correctness) and returns Markdown. Accuracies are in %.
"""
from __future__ import annotations

from ..attacks.registry import radius

TOL = 1.0  # points: a change smaller than this is reported as "level"

NAMES = {"clean": "clean images", "fgsm": "FGSM", "pgd20": "PGD-20"}


def _pct(v: float) -> str:
    return f"{v:.1f} %"


def _change(before: float, after: float, tol: float = TOL) -> str:
    """'rises by 3.1 points' / 'falls by ...' / 'stays level (within 1 point)'."""
    d = after - before
    if d > tol:
        return f"rises by {d:.1f} points"
    if d < -tol:
        return f"falls by {-d:.1f} points"
    return "stays level"


def _direction(before: float, after: float, tol: float = TOL) -> int:
    d = after - before
    return 1 if d > tol else -1 if d < -tol else 0


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
    parts = [f"on {names.get(a, a)} accuracy {_change(acc[a, False], acc[a, True])} "
             f"({_pct(acc[a, False])} without purification, {_pct(acc[a, True])} with)" for a in attacks]
    text = (f"On these {n} test images, " if n else "On these test images, ") + "; ".join(parts) + "."
    if paper:
        before, after = paper["without purification"], paper["with purification"]
        same, opposite = [], []
        for a in attacks:
            if a not in before or a not in after:
                continue
            ours, theirs = _direction(acc[a, False], acc[a, True]), _direction(before[a], after[a])
            (same if ours == theirs else opposite).append(names.get(a, a))
        if same:
            text += f" The change goes the way it goes in the paper's Tab. 6 on {_join(same)}"
            text += f", and not on {_join(opposite)}." if opposite else "."
        elif opposite:
            text += f" The change goes against the paper's Tab. 6 on {_join(opposite)}."
    return text


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
        return f"stays between {_pct(lo)} and {_pct(hi)} over the whole sweep"
    turns = _turns(points, tol)
    (x0, a0), (xn, an) = points[0], points[-1]
    end = f" (and {_pct(an)} at xi = {xn:.3g})" if turns[-1] != points[-1] else ""
    if len(turns) == 2:
        (xt, at) = turns[1]
        return f"{'rises' if at > a0 else 'falls'} from {_pct(a0)} at xi = {x0:.3g} to {_pct(at)} at xi = {xt:.3g}{end}"
    legs = [f"{'up' if b[1] > a[1] else 'down'} to {_pct(b[1])} at xi = {b[0]:.3g}" for a, b in zip(turns, turns[1:])]
    return f"goes from {_pct(a0)} at xi = {x0:.3g} " + ", ".join(legs[:-1]) + f" and {legs[-1]}{end}"


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
                 + ", ".join(f"{_pct(v)} on {names.get(a, a)}" for a, v in at.items()) + ".")
    if "clean" in by:
        pts = by["clean"]
        bare, worst = pts[0][1], min(pts[1:], key=lambda p: p[1], default=pts[0])
        if bare - worst[1] > tol:
            text += (f" Purification does cost clean accuracy here: at its lowest {_pct(worst[1])} at "
                     f"xi = {worst[0]:.3g}, against the bare model's {_pct(bare)}"
                     + (f" ({_pct(pts[-1][1])} at the largest xi, {pts[-1][0]:.3g})." if worst != pts[-1] else "."))
        else:
            text += (f" On this run no xi in the sweep costs more than {tol:g} point of clean accuracy "
                     f"(bare: {_pct(bare)}).")
    attacked = [a for a in by if a not in ("clean", "fgsm")]
    for a in attacked:
        pts = [p for p in by[a] if p[0] > 0]
        if len(pts) < 2:
            continue
        best = max(pts, key=lambda p: p[1])
        first = pts[0]
        if best[1] - first[1] > tol:
            text += (f" The smallest step (xi = {first[0]:.3g}) leaves {names.get(a, a)} at {_pct(first[1])}, "
                     f"{best[1] - first[1]:.1f} points below its best in the sweep ({_pct(best[1])} at "
                     f"xi = {best[0]:.3g}).")
        else:
            text += (f" Already the smallest step (xi = {first[0]:.3g}) gives {names.get(a, a)} "
                     f"{_pct(first[1])}, within {tol:g} point of its best in the sweep.")
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
            f"TPAP's accuracy on {name} at eps is {_pct(t)}; the bare model's is {_pct(b)} on {name} at eps "
            f"and {_pct(b2)} on {name} at eps + xi.")
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


def recovered_sentence(correct_adv, correct_pur, name: str = "PGD-20", seed: int | None = None,
                       correct_clean=None) -> str:
    """How many of the shown examples the attack fooled and purification recovered (or broke).

    correct_adv / correct_pur / correct_clean: per-example bools (or 0/1): the bare model on x_adv, the
    model on x_pur, and (optional) the bare model on the clean x.
    """
    adv = [bool(v) for v in correct_adv]
    pur = [bool(v) for v in correct_pur]
    if len(adv) != len(pur) or not adv or (correct_clean is not None and len(correct_clean) != len(adv)):
        raise ValueError(f"recovered_sentence needs equal, non-empty lists of per-example results; "
                         f"got {len(adv)} and {len(pur)}" + ("" if correct_clean is None else
                                                             f" and {len(correct_clean)}") + ".")
    n = len(adv)
    wrong = sum(not a for a in adv)
    recovered = sum((not a) and p for a, p in zip(adv, pur))
    broken = sum(a and not p for a, p in zip(adv, pur))
    drawn = f" (drawn with seed {seed})" if seed is not None else ""
    text = f"Of the {n} examples shown{drawn}, "
    if correct_clean is not None:
        clean = [bool(v) for v in correct_clean]
        already = sum((not c) and (not a) for c, a in zip(clean, adv))
        text += (f"the bare model gets {sum(clean)} right on the clean image and {n - wrong} on its {name} version"
                 + (f" (of the {wrong} it gets wrong, {already} {'was' if already == 1 else 'were'} wrong before the "
                    "attack)" if already else ""))
    else:
        text += f"{name} leaves the bare model wrong on {wrong}"
    text += f"; purification recovered {recovered} of those {wrong}" if wrong else ""
    if broken:
        text += f", and turned {broken} that the bare model had right into errors"
    return text + f": {sum(pur)} of {n} are classified correctly after purification."


def recovered_title(correct_adv, correct_pur) -> str:
    """A short figure title: 'purification recovered k of the m the attack left wrong'."""
    adv, pur = [bool(v) for v in correct_adv], [bool(v) for v in correct_pur]
    wrong = sum(not a for a in adv)
    recovered = sum((not a) and p for a, p in zip(adv, pur))
    return f"purification recovered {recovered} of the {wrong} wrong after the attack"
