"""Notebook 07's sentences: the conclusion of an adaptive-attack run and its sanity checks, from the records of
`experiments.adaptive` (accuracies as fractions) alone."""
from __future__ import annotations

from ..experiments.adaptive import GRADIENT_ATTACKS, gradient_masking_flag, protocol_attack, reaches_zero
from .benchmark import acc_text, comparison
from .words import radius_in


def _acc(a: float, n: int | None) -> str:
    """An accuracy given as a fraction, with its interval (`benchmark.acc_text`, which takes percent)."""
    return acc_text(100 * a, n, short=True) if n else f"{100 * a:.1f} %"


def _compare(a: float, b: float, n: int | None) -> dict | None:
    """`benchmark.comparison` of two accuracies given as fractions of the same n images."""
    return comparison(100 * a, 100 * b, n)


def adaptive_verdict(records: list[dict]) -> str:
    """The one-paragraph conclusion of an evaluate_adaptive run, written from its records alone. Every accuracy
    carries its 95 % interval, and one is called above or below another only when the paired test on the same
    images decides it (`stats.compare`)."""
    by = {(r["defence"], r["attack"]): r["accuracy"] for r in records}
    worst = {r["defence"]: r for r in records if r["attack"] == "worst-case"}
    if "TPAP" not in worst:
        raise ValueError("verdict needs the records of evaluate_adaptive (with a TPAP worst-case row).")
    t, acc = worst["TPAP"], worst["TPAP"]["accuracy"]
    n, r = t.get("n"), radius_in(t["eps"])
    text = [f"On {n} test images at eps = {r(t['eps'])} (xi = {r(t['xi'])}; accuracies with their 95 % "
            "intervals)" + (f", TPAP is {_acc(by['TPAP', 'clean'], n)} accurate on clean images"
                            if ("TPAP", "clean") in by else "")]
    paper = by.get(("TPAP", protocol_attack(records)))
    if paper is not None:
        text.append(f"Under the paper's protocol (PGD crafted on the bare model, then purified) it keeps "
                    f"{_acc(paper, n)}")
    attacked = [x for x in records if x["defence"] == "TPAP" and x["attack"] not in ("clean", "worst-case")]
    if attacked:
        best = min(attacked, key=lambda x: x["accuracy"])
        text.append(f"Attacked as a whole pipeline F(x) = f(P(x)), its per-sample worst case over "
                    f"{len(attacked)} attacks is {_acc(acc, n)} (strongest: {best['attack']}, "
                    f"{100 * best['accuracy']:.1f} %)")
    if paper is not None:
        c = _compare(paper, acc, n)
        if c is None:
            text.append(f"The paper's protocol overstates robustness by {100 * (paper - acc):.1f} points"
                        if paper - acc > 0.005 else "Adaptive attacks do no better than the paper's protocol")
        elif c["decided"] and c["diff"] > 0:
            text.append(f"The paper's protocol overstates robustness by {100 * (paper - acc):.1f} points (95 % CI "
                        f"{c['low']:.1f} to {c['high']:.1f}, McNemar p = {c['p_mcnemar']:.2g})")
        else:
            text.append(f"Adaptive attacks are not shown to do better than the paper's protocol at n = {n}")
    others = {"the bare model" if d == "bare" else d: x["accuracy"] for d, x in worst.items() if d != "TPAP"}
    ahead = []
    for label, other in others.items():
        c = _compare(acc, other, n)
        if c is None:
            rel = "above" if acc > other + 0.005 else "below" if acc < other - 0.005 else "level with"
        else:
            rel = ("above" if c["diff"] > 0 else "below") if c["decided"] else "not distinguishable from"
        ahead.append(rel == "above")
        text.append(f"TPAP's worst case is {rel} that of {label} ({_acc(other, n)})")
    names = {x["attack"] for x in attacked}
    if "square" in names and names & set(GRADIENT_ATTACKS):
        text.append("Square, which uses no gradients, beats every gradient attack on TPAP: its gradients "
                    "are masked and the gradient-attack numbers are loose upper bounds"
                    if gradient_masking_flag(records) else
                    "Square, which uses no gradients, does not beat the gradient attacks: no sign of masking")
    if others:
        text.append("Under adaptive attacks TPAP keeps an advantage over every alternative" if all(ahead) else
                    "Under adaptive attacks TPAP gives no robustness beyond the best alternative")
    text.append("All robust accuracies are upper bounds: a stronger attack can only lower them")
    return ". ".join(text) + "."


def adaptive_sanity_sentence(sweep: list[dict], records: list[dict] | None = None, tol: float = 0.05) -> str:
    """The sanity checks in words, from an `eps_sweep` (and `evaluate_adaptive` records for the masking test)."""
    if not sweep:
        raise ValueError("sanity_sentence needs the records of eps_sweep (one per eps).")
    pts = sorted(sweep, key=lambda r: r["eps"])
    first, last = pts[0], pts[-1]
    r = radius_in(next((p["eps"] for p in pts if p["eps"] > 0), 1.0))
    text = (f"Adaptive {first['attack']} on F takes TPAP from {100 * first['accuracy']:.1f} % at eps = "
            f"{r(first['eps'])} to {100 * last['accuracy']:.1f} % at eps = {r(last['eps'])}: ")
    text += ("it reaches about 0, so the attack can break F when the budget allows"
             if reaches_zero(sweep, tol) else
             f"it stays above {100 * tol:.0f} %, so the attack (or its gradient through P) is too weak and every "
             "adaptive number below is a loose upper bound")
    if records is not None:
        rs = [r for r in records if r["defence"] == "TPAP"]
        free = [r for r in rs if r["attack"] == "square"]
        grads = [r for r in rs if r["attack"] in GRADIENT_ATTACKS]
        if free and grads:
            best = min(grads, key=lambda r: r["accuracy"])
            text += (f". Gradient-free Square leaves TPAP {100 * min(x['accuracy'] for x in free):.1f} %, the "
                     f"strongest gradient attack ({best['attack']}) {100 * best['accuracy']:.1f} %: "
                     + ("Square does better, a sign of masked gradients" if gradient_masking_flag(records) else
                        "Square does not do better, no sign of masked gradients"))
    return text + "."
