"""Notebook 05's sentences: Fig. 7's separation scores (k-NN accuracy, a fraction) in words; one method is called
better than the other only where the 95 % Wilson intervals of their k-NN accuracies are apart."""
from __future__ import annotations

import pandas as pd

from ..experiments.tsne import knn_interval, knn_verdict
from .words import join


def _ci(record) -> str:
    if pd.isna(record["knn_acc"]):
        return "not measured (too few images per class for the cross-validated k-NN)"
    lo, hi = knn_interval(record)
    return f"{100 * record['knn_acc']:.0f} % (95 % CI {100 * lo:.0f}-{100 * hi:.0f}, n = {int(record['n'])})"


def _points(d: float) -> str:
    """A change of k-NN accuracy (fractions) in whole points: '+17', '-23', '0' (never '-0'), 'not measured'."""
    if pd.isna(d):
        return "not measured"
    text = f"{100 * d:+.0f}"
    return "0" if text in ("+0", "-0") else text


def fig7_sentence(records, model: str = "TPAP", baseline: str = "PGD-AT") -> str:
    """Each row's k-NN accuracy under every attack against its own clean panel, then per attack whether `model`
    separates the classes better or worse than `baseline` (only where the intervals are apart)."""
    df = pd.DataFrame(records).set_index(["row", "attack"])
    parts = []
    for row in (baseline, model):
        if (row, "clean") not in df.index:
            continue
        base = df.loc[(row, "clean")]
        changes = ", ".join(f"{a} {_points(df.loc[(row, a)].knn_acc - base.knn_acc)}" for a in df.loc[row].index
                            if a != "clean")
        parts.append(f"{row}'s k-NN accuracy is {_ci(base)} on clean inputs"
                     + (f" and changes by {changes} points under the attacks" if not pd.isna(base.knn_acc) else ""))
    attacks = [a for a in df.loc[model].index if a != "clean" and (baseline, a) in df.index]
    verdicts = {a: knn_verdict(df.loc[(model, a)], df.loc[(baseline, a)]) for a in attacks}
    better = [a for a, v in verdicts.items() if v == "better"]
    worse = [a for a, v in verdicts.items() if v == "worse"]
    even = [a for a, v in verdicts.items() if v == "intervals overlap"]
    tail = []
    if better:
        tail.append(f"{model}'s purified features separate the classes better than {baseline}'s attacked ones "
                    f"under {join(better)}")
    if worse:
        tail.append(f"{model}'s purified features separate the classes worse than {baseline}'s attacked ones under "
                    f"{join(worse)}")
    if even:
        tail.append(f"under {join(even)} the two k-NN accuracies' 95 % intervals overlap, so this run shows no "
                    "difference there")
    return ("; ".join(parts) + ". " + ("; ".join(tail) + "." if tail else "")).strip()


def _unmeasured(col) -> str:
    k = int((col == "not measured").sum())
    return f"; {k} not measured: too few images per class for the cross-validated k-NN" if k else ""


def fig7_claims_sentence(claims: pd.DataFrame, model: str = "TPAP", baseline: str = "PGD-AT") -> str:
    """`tsne.fig7_claims` on the attacked panels in one verdict on the paper's claim (TPAP clusters better under
    attack), by k-NN accuracy with intervals; the silhouette is counted, not judged (it has no interval)."""
    adv = claims.drop(index="clean", errors="ignore")
    col = adv[f"{model} vs {baseline} (kNN)"]
    k, n = int((col == "better").sum()), len(adv)
    higher = int((adv[f"silhouette {model}"] > adv[f"silhouette {baseline}"]).sum())
    verdict = "holds here" if k == n and n else "holds only in part here" if k else "is not shown here"
    return (f"**Measured, not eyeballed.** On the {n} attacks, {model}'s purified features separate the classes "
            f"better than {baseline}'s attacked features on {k} of {n} by k-NN accuracy with their 95 % intervals "
            f"apart ({int((col == 'worse').sum())} worse, {int((col == 'intervals overlap').sum())} within the "
            f"intervals{_unmeasured(col)}). The paper's claim ({model} clusters better under attack) {verdict}. "
            f"The t-SNE silhouette, "
            f"which has no interval, is higher for {model} on {higher} of {n}.")
