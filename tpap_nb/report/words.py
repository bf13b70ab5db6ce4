"""The words every result sentence shares: how a number, a change and a radius are written.

Accuracies reach the sentences in the unit their records carry: `pct` and `points` take fractions
(robust_accuracy, a training history), `percent` takes percent (the record store, the tables).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..attacks.registry import radius  # noqa: F401  (8/255 or 0.3: how labels and sentences write a radius)
from ..stats import diff_text

SAME = 0.005  # fractions: differences below half a point are "unchanged"
TOL = 1.0  # points: a change smaller than this is reported as "level"


def radius_in(unit: float):
    """A writer of radii in one unit for a whole sentence: in 255ths (5.6/255) when `unit` (the attack eps) is a
    whole number of 255ths, else as numbers (0.075), so a sentence never mixes 'xi = 0/255' with 'xi = 0.03'."""
    k = unit * 255
    if unit > 0 and abs(k - round(k)) < 1e-6:
        return lambda v: "0" if abs(v) < 1e-12 else f"{255 * v:.3g}/255"
    return lambda v: f"{v:.3g}"


def pct(v: float) -> str:
    """A fraction as a percentage with one decimal: 0.934 -> '93.4 %'."""
    return f"{100 * v:.1f} %"


def percent(v: float) -> str:
    """A percentage with one decimal: 93.4 -> '93.4 %'."""
    return f"{v:.1f} %"


def points(d: float) -> str:
    """A difference of fractions in percentage points: 0.123 -> '12.3 points'."""
    return f"{100 * abs(d):.1f} points"


def join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def change(before: float, after: float, tol: float = TOL) -> str:
    """Percent values: 'rises by 3.1 points' / 'falls by ...' / 'stays level' (within tol points)."""
    d = after - before
    if d > tol:
        return f"rises by {d:.1f} points"
    if d < -tol:
        return f"falls by {-d:.1f} points"
    return "stays level"


def direction(before: float, after: float, tol: float = TOL) -> int:
    """+1, -1 or 0 (level within tol) for a move between two percent values."""
    d = after - before
    return 1 if d > tol else -1 if d < -tol else 0


def move(what: str, before: float, after: float, test: dict | None = None) -> str:
    """Fractions: 'takes clean accuracy down by 12.8 points (70.3 % -> 57.5 %)', or 'leaves ... unchanged (70.3 %)'.

    test: the paired test of the two (`stats.compare` / `stats.paired`, after minus before); with it the change is
    a change only when the test decides it, and a decided change carries its interval."""
    arrow = f"{pct(before)} \N{RIGHTWARDS ARROW} {pct(after)}"
    if test is not None:
        if not test["decided"]:
            return f"leaves {what} where it was ({arrow}, no difference at n = {test['n']})"
        return (f"takes {what} {'up' if after > before else 'down'} by {points(after - before)} ({arrow}; "
                f"{diff_text(test)})")
    if abs(after - before) < SAME:
        return f"leaves {what} unchanged ({pct(before)})"
    return f"takes {what} {'up' if after > before else 'down'} by {points(after - before)} ({arrow})"


def _bools(v) -> list[bool]:
    return [bool(b) for b in (v.flatten().tolist() if torch.is_tensor(v) else v)]


def recovered_counts(correct_adv, correct_pur) -> dict[str, int]:
    """Per-example verdicts (bools, 0/1 or tensors) of the bare model on x_adv and of the model on x_pur: n, how
    many the attack fooled, how many of those purification recovered, how many it turned wrong among the others."""
    adv, pur = _bools(correct_adv), _bools(correct_pur)
    if len(adv) != len(pur):
        raise ValueError(f"correct_adv and correct_pur differ in length ({len(adv)}, {len(pur)}).")
    return {"n": len(adv), "fooled": sum(not a for a in adv), "recovered": sum((not a) and p for a, p in zip(adv, pur)),
            "broken": sum(a and not p for a, p in zip(adv, pur))}


def recovered_sentence(correct_adv, correct_pur, attack: str = "PGD-20", seed: int | None = None,
                       correct_clean=None, correct_clean_pur=None, shown: str = "shown") -> str:
    """The examples of a figure in one sentence: how many the attack left wrong, how many of those purification
    recovered (and how many right ones it broke), how many are right after it.

    correct_adv / correct_pur: per-example verdicts on x_adv (bare model) and on x_pur; correct_clean (optional):
    the bare model on the clean x, correct_clean_pur: the model on the purified clean x. `shown` names the
    examples ("shown", "drawn for TPAP's figure"); `seed` the draw.
    """
    c = recovered_counts(correct_adv, correct_pur)
    if not c["n"]:
        raise ValueError("recovered_sentence needs at least one example.")
    for name, other in (("correct_clean", correct_clean), ("correct_clean_pur", correct_clean_pur)):
        if other is not None and len(_bools(other)) != c["n"]:
            raise ValueError(f"{name} has {len(_bools(other))} verdicts, not {c['n']}.")
    n, wrong = c["n"], c["fooled"]
    drawn = f" (drawn with seed {seed})" if seed is not None else ""
    text = f"Of the {n} examples {shown}{drawn}, "
    if correct_clean is not None:
        clean = _bools(correct_clean)
        already = sum((not k) and (not a) for k, a in zip(clean, _bools(correct_adv)))
        text += (f"the bare model gets {sum(clean)} right on the clean image and {n - wrong} on its {attack} version"
                 + (f" (of the {wrong} it gets wrong, {already} {'was' if already == 1 else 'were'} wrong before the "
                    "attack)" if already else ""))
    else:
        text += f"{attack} leaves the bare model wrong on {wrong}"
    text += f"; purification recovered {c['recovered']} of those {wrong}" if wrong else ""
    if c["broken"]:
        text += f", and turned {c['broken']} that the bare model had right into errors"
    text += f": {sum(_bools(correct_pur))} of {n} are classified correctly after purification"
    if correct_clean_pur is not None and correct_clean is not None:
        text += (f"; on the clean images it is right on {sum(_bools(correct_clean))} before and "
                 f"{sum(_bools(correct_clean_pur))} after purification")
    return text + "."


def recovered_title(correct_adv, correct_pur) -> str:
    """A short figure title: 'purification recovered k of the m wrong after the attack'."""
    c = recovered_counts(correct_adv, correct_pur)
    return f"purification recovered {c['recovered']} of the {c['fooled']} wrong after the attack"


def tour_counts(correct_clean, correct_adv, correct_pur) -> dict[str, int]:
    """The tour's shown examples: n, how many the attack fooled (right on x, wrong on x_adv), how many of those
    purification recovered, and how many clean-correct ones it broke (right on x and on x_adv, wrong on x_pur)."""
    clean, adv, pur = _bools(correct_clean), _bools(correct_adv), _bools(correct_pur)
    if not len(clean) == len(adv) == len(pur):
        raise ValueError(f"tour_counts needs one verdict per example in each: got {len(clean)}, {len(adv)}, "
                         f"{len(pur)}.")
    return {"n": len(clean), "fooled": sum(c and not a for c, a in zip(clean, adv)),
            "recovered": sum(c and not a and p for c, a, p in zip(clean, adv, pur)),
            "broken": sum(c and a and not p for c, a, p in zip(clean, adv, pur))}


def tour_title(correct_clean, correct_adv, correct_pur, attack: str = "PGD-20") -> str:
    """'PGD-20 fooled k of n; purification recovered r of them and broke b clean-correct ones' (`tour_counts`)."""
    c = tour_counts(correct_clean, correct_adv, correct_pur)
    return (f"{attack} fooled {c['fooled']} of {c['n']}; purification recovered {c['recovered']} of them and broke "
            f"{c['broken']} clean-correct {'one' if c['broken'] == 1 else 'ones'}")
