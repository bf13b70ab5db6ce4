"""Notebook 05's sentence: Fig. 7's separation scores (k-NN accuracy, a fraction) in words."""
from __future__ import annotations

import pandas as pd


def fig7_sentence(records, model: str = "TPAP", baseline: str = "PGD-AT") -> str:
    """Each row's k-NN accuracy under every attack against its own clean panel, and where `model` falls behind."""
    df = pd.DataFrame(records).set_index(["row", "attack"])
    parts = []
    for row in (baseline, model):
        if (row, "clean") not in df.index:
            continue
        base = df.loc[(row, "clean")].knn_acc
        changes = ", ".join(f"{a} {100 * (df.loc[(row, a)].knn_acc - base):+.0f}" for a in df.loc[row].index
                            if a != "clean")
        parts.append(f"{row}'s k-NN accuracy is {100 * base:.0f} % on clean inputs and changes by {changes} points "
                     "under the attacks")
    attacks = [a for a in df.loc[model].index if a != "clean" and (baseline, a) in df.index]
    behind = [a for a in attacks if df.loc[(model, a)].knn_acc < df.loc[(baseline, a)].knn_acc]
    tail = (f"{model}'s purified features separate the classes worse than {baseline}'s attacked ones under "
            + (", ".join(behind) if behind else "none of the attacks") + ".")
    return "; ".join(parts) + ". " + tail
