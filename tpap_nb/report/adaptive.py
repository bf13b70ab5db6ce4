"""Notebook 07's sentences: the conclusion of an adaptive-attack run and its sanity checks, from the records of
`experiments.adaptive` (accuracies as fractions) alone."""
from __future__ import annotations

from ..experiments.adaptive import GRADIENT_ATTACKS, gradient_masking_flag, protocol_attack, reaches_zero


def adaptive_verdict(records: list[dict]) -> str:
    """The one-paragraph conclusion of an evaluate_adaptive run, written from its records alone."""
    by = {(r["defence"], r["attack"]): r["accuracy"] for r in records}
    worst = {r["defence"]: r for r in records if r["attack"] == "worst-case"}
    if "TPAP" not in worst:
        raise ValueError("verdict needs the records of evaluate_adaptive (with a TPAP worst-case row).")
    t, acc = worst["TPAP"], worst["TPAP"]["accuracy"]
    text = [f"On {t['n']} test images at eps = {t['eps']:.4g} (xi = {t['xi']:.4g})"
            + (f", TPAP is {by['TPAP', 'clean']:.1%} accurate on clean images"
               if ("TPAP", "clean") in by else "")]
    paper = by.get(("TPAP", protocol_attack(records)))
    if paper is not None:
        text.append(f"Under the paper's protocol (PGD crafted on the bare model, then purified) it keeps "
                    f"{paper:.1%}")
    attacked = [r for r in records if r["defence"] == "TPAP" and r["attack"] not in ("clean", "worst-case")]
    if attacked:
        best = min(attacked, key=lambda r: r["accuracy"])
        text.append(f"Attacked as a whole pipeline F(x) = f(P(x)), its per-sample worst case over "
                    f"{len(attacked)} attacks is {acc:.1%} (strongest: {best['attack']}, "
                    f"{best['accuracy']:.1%})")
    if paper is not None:
        text.append(f"The paper's protocol overstates robustness by {100 * (paper - acc):.1f} points"
                    if paper - acc > 0.005 else "Adaptive attacks do no better than the paper's protocol")
    others = {"the bare model" if d == "bare" else d: r["accuracy"] for d, r in worst.items() if d != "TPAP"}
    for label, other in others.items():
        rel = "above" if acc > other + 0.005 else "below" if acc < other - 0.005 else "level with"
        text.append(f"TPAP's worst case is {rel} that of {label} ({other:.1%})")
    names = {r["attack"] for r in attacked}
    if "square" in names and names & set(GRADIENT_ATTACKS):
        text.append("Square, which uses no gradients, beats every gradient attack on TPAP: its gradients "
                    "are masked and the gradient-attack numbers are loose upper bounds"
                    if gradient_masking_flag(records) else
                    "Square, which uses no gradients, does not beat the gradient attacks: no sign of masking")
    if others:
        text.append("Under adaptive attacks TPAP keeps an advantage over the alternatives"
                    if acc > max(others.values()) + 0.005 else
                    "Under adaptive attacks TPAP gives no robustness beyond the best alternative")
    text.append("All robust accuracies are upper bounds: a stronger attack can only lower them")
    return ". ".join(text) + "."


def adaptive_sanity_sentence(sweep: list[dict], records: list[dict] | None = None, tol: float = 0.05) -> str:
    """The sanity checks in words, from an `eps_sweep` (and `evaluate_adaptive` records for the masking test)."""
    if not sweep:
        raise ValueError("sanity_sentence needs the records of eps_sweep (one per eps).")
    pts = sorted(sweep, key=lambda r: r["eps"])
    first, last = pts[0], pts[-1]
    text = (f"Adaptive {first['attack']} on F takes TPAP from {first['accuracy']:.1%} at eps = {first['eps']:.3g} "
            f"to {last['accuracy']:.1%} at eps = {last['eps']:.3g}: ")
    text += ("it reaches about 0, so the attack can break F when the budget allows"
             if reaches_zero(sweep, tol) else
             f"it stays above {tol:.0%}, so the attack (or its gradient through P) is too weak and every "
             "adaptive number below is a loose upper bound")
    if records is not None:
        rs = [r for r in records if r["defence"] == "TPAP"]
        free = [r for r in rs if r["attack"] == "square"]
        grads = [r for r in rs if r["attack"] in GRADIENT_ATTACKS]
        if free and grads:
            best = min(grads, key=lambda r: r["accuracy"])
            text += (f". Gradient-free Square leaves TPAP {min(r['accuracy'] for r in free):.1%}, the strongest "
                     f"gradient attack ({best['attack']}) {best['accuracy']:.1%}: "
                     + ("Square does better, a sign of masked gradients" if gradient_masking_flag(records) else
                        "Square does not do better, no sign of masked gradients"))
    return text + "."
