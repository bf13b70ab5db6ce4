"""Fig. 7: t-SNE of penultimate features, and how well classes separate (k-NN accuracy in
feature space, silhouette in the t-SNE plane), so the figure's claim becomes a number.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..attacks.base import fgsm
from ..attacks.registry import attack_settings, build_attack
from ..checks import check_images
from ..evaluate import attack_overrides, pgd20_attack, pgd20_step, predict
from ..models import eval_mode
from ..purify import purify
from ..stats import wilson


def fig7_attacks(model: nn.Module, names: str | Sequence[str], cfg: Mapping) -> dict[str, Callable | None]:
    """The attacks of Fig. 7 against `model` at the profile's eps: name -> attack(x, y) (None for clean).

    'fgsm' is the kit's own; 'pgd20' is the kit's one PGD-20 (`evaluate.pgd20_attack`), 'pgd20_2eps'
    the same attack at twice the radius and step; other names go to the registry (`build_attack`)
    with the profile's radius and seed (`evaluate.attack_overrides`), at their full definition.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    eps = cfg["attack_eps"]  # resolved by config.get_profile
    pgd20 = attack_overrides("pgd20", cfg)
    pgd20 |= {"eps": 2 * attack_settings("pgd20", **pgd20)["eps"], "alpha": 2 * pgd20_step(cfg)}
    own = {"clean": None,
           "fgsm": lambda x, y: fgsm(model, x, y, eps),
           "pgd20": pgd20_attack(model, cfg),
           "pgd20_2eps": build_attack("pgd20", model, **pgd20)}
    return {name: own[name] if name in own else build_attack(name, model, **attack_overrides(name, cfg))
            for name in names}


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Penultimate-layer features `model.features(x)` (Fig. 7), in eval mode, as a float64 array."""
    check_images(x)
    with eval_mode(model):
        feats = torch.cat([model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    return feats.cpu().double().numpy()


def tsne_embed(features: np.ndarray, seed: int = 0, perplexity: float = 30.0, init: str = "pca",
               threads: int | None = 1) -> np.ndarray:
    """2-D t-SNE (van der Maaten & Hinton 2008), random_state = `seed`; perplexity capped below N / 3.

    `threads` caps the OpenMP threads of scikit-learn's Barnes-Hut step (None: the library's
    default). One thread keeps the sums in a fixed order, and on a busy machine spinning OpenMP
    threads made an 80-point t-SNE take 40 s instead of 2 s.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(features)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {n}.")
    perp = float(min(perplexity, (n - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perp, init=init, learning_rate="auto", random_state=seed)
    with threadpool_limits(limits=threads):
        emb = tsne.fit_transform(np.asarray(features, dtype=np.float64))
    return emb.astype(np.float32)


def separation_scores(features: np.ndarray, labels, embedding: np.ndarray | None = None, k: int = 5,
                      folds: int = 5, seed: int = 0) -> dict:
    """Cluster quality by true class: k-NN accuracy in feature space (stratified k-fold CV) and silhouettes.

    'knn_acc' is in [0, 1]; 'silhouette_2d' (t-SNE plane, when `embedding` is given) and
    'silhouette_feat' (feature space) are in [-1, 1]; higher is better separated.
    """
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    counts = np.bincount(labels)
    n_splits = int(min(folds, counts[counts > 0].min()))
    out = {"n": len(labels)}
    if n_splits >= 2 and len(np.unique(labels)) > 1:
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        knn = KNeighborsClassifier(n_neighbors=min(k, len(labels) - len(labels) // n_splits - 1))
        out["knn_acc"] = float(cross_val_score(knn, features, labels, cv=cv).mean())
        out["silhouette_feat"] = float(silhouette_score(features, labels))
        if embedding is not None:
            out["silhouette_2d"] = float(silhouette_score(embedding, labels))
    else:
        out |= {"knn_acc": float("nan"), "silhouette_feat": float("nan"), "silhouette_2d": float("nan")}
    return out


def fig7_panels(rows: dict, x: torch.Tensor, y: torch.Tensor, attacks: str | Sequence[str], cfg: Mapping,
                seed: int = 0, perplexity: float = 30.0, k: int = 5, progress: bool = True) -> tuple[dict, list[dict]]:
    """Fig. 7: per row and attack, penultimate features, their t-SNE and separation scores.

    `rows` maps a row name to (model, xi): xi None embeds the features of the attacked inputs
    (a baseline such as PGD-AT), a number embeds those of the purified inputs (TPAP, Eq. 7-8).
    Attacks are crafted on the bare model of their row (`fig7_attacks`). Returns the panels for
    `plot_tsne_grid` (each with its per-image verdicts under 'correct') and one tidy record per panel.
    """
    from tqdm.auto import tqdm

    names = [n.strip() for n in attacks.split(",") if n.strip()] if isinstance(attacks, str) else list(attacks)
    panels, records = {}, []
    with tqdm(total=len(rows) * len(names), desc="Fig. 7 panels", disable=not progress) as bar:
        for row, (model, xi) in rows.items():
            built = fig7_attacks(model, names, cfg)
            for name, attack in built.items():
                bar.set_postfix_str(f"{row} / {name}: attack and features")
                torch.manual_seed(seed)  # random starts, TI-DIM's input diversity
                x_in = x if attack is None else attack(x, y)
                if xi is not None:
                    x_in = purify(model, x_in, xi)
                feats = extract_features(model, x_in)
                y_pred = predict(model, x_in)
                bar.set_postfix_str(f"{row} / {name}: t-SNE")
                emb = tsne_embed(feats, seed=seed, perplexity=perplexity)
                scores = separation_scores(feats, y, emb, k=k, seed=seed)
                panels[(row, name)] = {"emb": emb, "labels": y.cpu().numpy(), "scores": scores,
                                       "correct": y_pred.cpu() == y.cpu()}  # per-image verdicts, for paired tests
                records.append({"row": row, "attack": name,
                                "accuracy": float((y_pred.cpu() == y.cpu()).float().mean())} | scores)
                bar.update()
    return panels, records


def knn_interval(record: Mapping, level: float = 0.95) -> tuple[float, float]:
    """The Wilson interval (fractions) of a panel's k-NN accuracy: each of its n points is classified once across
    the cross-validation folds, so knn_acc * n of them are right (rounded)."""
    n, acc = int(record["n"]), float(record["knn_acc"])
    if acc != acc:  # NaN: too few points per class for the cross-validated k-NN (cluster_scores)
        return float("nan"), float("nan")
    return wilson(round(acc * n), n, level)


def knn_verdict(record: Mapping, other: Mapping, level: float = 0.95) -> str:
    """'better' / 'worse' when the two k-NN accuracies' intervals are apart, else 'intervals overlap' (also when
    either could not be measured: 'not measured')."""
    (lo, hi), (olo, ohi) = knn_interval(record, level), knn_interval(other, level)
    if lo != lo or olo != olo:
        return "not measured"
    return "better" if lo > ohi else "worse" if hi < olo else "intervals overlap"


def fig7_claims(records, model: str = "TPAP", baseline: str = "PGD-AT") -> pd.DataFrame:
    """Per attack: does `model` cluster better than `baseline`? By k-NN accuracy, 'better' only when the 95 %
    Wilson intervals are apart (`knn_verdict`); the t-SNE silhouette has no interval and is shown, not judged."""
    df = pd.DataFrame(records).set_index(["row", "attack"])
    out = []
    for attack in df.loc[model].index:
        t, b = df.loc[(model, attack)], df.loc[(baseline, attack)]
        ci = {row: "{:.1f}-{:.1f} %".format(*(100 * v for v in knn_interval(r))) for row, r in ((baseline, b),
                                                                                               (model, t))}
        verdict = knn_verdict(t, b)
        out.append({"attack": attack,
                    f"kNN acc {baseline}": b.knn_acc, f"95 % CI {baseline}": ci[baseline],
                    f"kNN acc {model}": t.knn_acc, f"95 % CI {model}": ci[model],
                    f"{model} vs {baseline} (kNN)": verdict,
                    f"{model} clusters better (kNN)": verdict == "better",
                    f"silhouette {baseline}": b.silhouette_2d, f"silhouette {model}": t.silhouette_2d})
    return pd.DataFrame(out).set_index("attack")


def plot_tsne_grid(panels: dict, class_names: Sequence[str], rows: Sequence[str], cols: Sequence[str],
                   size: float = 2.8, point_size: float = 6.0):
    """Fig. 7: panels[(row, col)] = {'emb', 'labels', 'scores'}; coloured by true class, scores in each corner."""
    import seaborn as sns

    colors = sns.color_palette("tab10" if len(class_names) <= 10 else "husl", len(class_names))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(size * len(cols), size * len(rows) + 0.6),
                             squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            p = panels[(r, c)]
            lab = np.asarray(p["labels"])
            ax.scatter(p["emb"][:, 0], p["emb"][:, 1], c=[colors[v] for v in lab], s=point_size, linewidths=0)
            s = p["scores"]
            ax.set_xlabel(f"kNN {100 * s['knn_acc']:.0f}%   silhouette {s.get('silhouette_2d', float('nan')):.2f}",
                          fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(c, fontsize=9)
            if j == 0:
                ax.set_ylabel(r, fontsize=9)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[k], label=str(n)) for k, n in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(class_names), 10), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    return fig
