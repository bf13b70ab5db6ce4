"""Figure style, the one save helper (PNG + PDF with a provenance JSON beside it) and the drawing of every figure
the notebooks share (training curves, image panels, heatmaps, Fig. 5, Grad-CAM grids, accuracy bars)."""
from __future__ import annotations

import datetime as _dt
import functools
import json
import subprocess
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .config import REPO, figures_root, get_device
from .runtime import runtime_for

STATUS_GID = "tpap-status"  # the status line save_figure writes under a figure
PALETTE = {"clean": "#1b9e77", "fgsm": "#d95f02", "pgd20": "#7570b3", "tpap": "#e7298a"}
LABELS = {"clean": "clean", "fgsm": "FGSM", "pgd20": "PGD-20"}


def set_style() -> None:
    """One look for every figure of the kit."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight"})


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit the figures come from, read once per process; '+dirty' when tracked files other than
    figures/ have uncommitted changes (a run rewriting the tracked figures does not make it dirty)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)figures"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device=None) -> str:
    """'cpu (N threads)' or the GPU's name; None means the CPU."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'' if n == 1 else 's'})"


class Saved(dict):
    """The provenance record of a saved figure; shows as one line in a notebook, naming the folder it went to."""

    folder = None  # where save_figure wrote it (not part of the JSON record)

    def __repr__(self) -> str:
        where = self.folder or "figures"
        try:
            where = where.resolve().relative_to(REPO)
        except (AttributeError, ValueError):
            pass
        return f"saved {where}/{self['figure']} (profile {self['profile']}, {self['device']}, commit {self['commit']})"


def save_figure(fig, name: str, cfg: Mapping | None = None, pdf: bool = False, device=None, **numbers) -> Saved:
    """Save `fig` as <name>.png (and .pdf) with <name>.json (profile, device, commit, date, numbers) in
    `config.figures_root()`: $TPAP_FIGURES (`make run`: figures/<profile>/), else build/figures/.

    `device` is where the numbers were computed (default: the device cfg['device'] resolves to,
    the one `get_or_train` uses).
    """
    out = figures_root()
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg or {}
    status = cfg.get("status")  # config.PROFILE_STATUS, resolved by get_profile
    if status:  # a profile that is not what its settings suggest says so on the image, below everything else
        status_line(fig, f"profile {cfg['profile']}: {status}")
    # bbox_inches="tight" grows the saved image to hold whatever lies outside the axes (the status line included)
    fig.savefig(out / f"{name}.png", bbox_inches="tight")
    if pdf:
        fig.savefig(out / f"{name}.pdf", bbox_inches="tight")
    if device is None:
        device = get_device(cfg.get("device") or "auto")
    # Where the numbers were computed, as the run's runtime resolves it here (threads, precision, memory format).
    where = runtime_for(cfg, torch.device(device)).describe() if cfg.get("profile") else device_name(device)
    meta = {"figure": f"{name}.png", "profile": cfg.get("profile"), "profile_status": status,
            "device": where,
            "commit": git_commit(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "settings": {k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool, tuple, list))},
            "numbers": numbers}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1, default=str))
    saved = Saved(meta)
    saved.folder = out
    return saved


def status_line(fig, text: str, pad_points: float = 6.0):
    """Write `text` under everything `fig` draws (x labels, tick labels, legends below the axes), left-aligned
    with it, after the figure's layout has run; bbox_inches="tight" then grows the image to hold it. A line
    written before is replaced."""
    for old in [t for t in fig.texts if t.get_gid() == STATUS_GID]:
        old.remove()
    fig.canvas.draw()  # runs the layout engine (constrained layout) so the extents below are final
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, figure origin
    width, height = fig.get_size_inches()
    return fig.text(box.x0 / width, (box.y0 - pad_points / 72) / height, text, fontsize=7, color="0.3",
                    ha="left", va="top", gid=STATUS_GID, transform=fig.transFigure)


def integer_epochs(ax) -> None:
    """Epochs are whole numbers: no 2.5 on an epoch axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_history(history: list[dict], title: str = ""):
    """Fig. 1 / Fig. 4: train and test accuracy per epoch on clean, FGSM and PGD-20 inputs (+ TPAP); constrained
    layout keeps the suptitle off the panel titles, epochs are integer ticks."""
    rows = [h for h in history if "test_clean" in h]
    ep = [h["epoch"] for h in rows]
    held = rows[-1].get("eval_split", "test") if rows else "test"  # a trial's history: its held-out validation images
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), sharey=True, layout="constrained")
    for ax, prefix, sub in zip(axes, ("train", "test", "tpap"),
                               ("train set (bare model)", f"{held} set (bare model)", f"{held} set, TPAP-purified")):
        for kind in ("clean", "fgsm", "pgd20"):
            ax.plot(ep, [100 * h[f"{prefix}_{kind}"] for h in rows], marker="o", ms=3,
                    color=PALETTE[kind], label=LABELS[kind])
        ax.set_title(sub)
        ax.set_xlabel("epoch")
        integer_epochs(ax)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(-2, 102)
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    return fig


def show_images(rows: dict, titles: dict | None = None, cmap="gray", diff_scale: float | None = None):
    """A grid: one row per example, one column per named image tensor (C, H, W) in `rows`'s values."""
    names = list(rows)
    n = rows[names[0]].shape[0]
    fig, axes = plt.subplots(n, len(names), figsize=(1.9 * len(names), 1.9 * n), squeeze=False)
    for j, name in enumerate(names):
        for i in range(n):
            img = rows[name][i].detach().cpu()
            ax = axes[i, j]
            if name.startswith(("delta", "gamma")):  # perturbation maps, centred on grey
                scale = diff_scale or float(img.abs().max()) or 1.0
                img = (img / (2 * scale) + 0.5).clamp(0, 1)
            ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if titles and (name, i) in titles:
                ax.set_title(titles[(name, i)], fontsize=8)
            if i == 0 and not (titles and (name, 0) in titles):
                ax.set_title(name, fontsize=9)
    return fig


def heatmap(table, title: str = "", fmt: str = ".0f", missing: str = "not run", wrap: int = 15):
    """Accuracy heatmap (rows: training recipe x defence, columns: attacks), 0-100 %.

    A NaN cell is a combination that was not run: it is hatched and labelled `missing`, never
    drawn as a blank or a 0. Column labels are wrapped at `wrap` characters (newlines kept).
    """
    import textwrap

    import seaborn as sns
    from matplotlib.patches import Rectangle

    n_rows, n_cols = table.shape
    fig, ax = plt.subplots(figsize=(3.0 + 1.05 * n_cols, 1.8 + 0.42 * n_rows))
    sns.heatmap(table, annot=True, fmt=fmt, vmin=0, vmax=100, cmap="viridis", cbar_kws={"label": "accuracy (%)"},
                linewidths=0.5, linecolor="white", ax=ax)
    for i, j in zip(*np.where(table.isna().to_numpy())):
        ax.add_patch(Rectangle((j, i), 1, 1, facecolor="0.94", edgecolor="0.55", hatch="///", lw=0))
        ax.text(j + 0.5, i + 0.5, missing, ha="center", va="center", fontsize=7, color="0.2",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    ax.set_xticks(np.arange(n_cols) + 0.5)
    ax.set_xticklabels(["\n".join(textwrap.fill(part, wrap) for part in str(c).split("\n")) for c in table.columns],
                       rotation=0, fontsize=7.5, va="top")
    ax.set_yticks(np.arange(n_rows) + 0.5)
    ax.set_yticklabels([str(r) for r in table.index], rotation=0, fontsize=8.5)
    ax.set(xlabel="", ylabel="", title=title)
    return fig


# Fig. 5's columns: (title, metric drawn solid, metric drawn dashed). Label leaking shows where a
# dashed FGSM line runs above the solid clean line of the same colour.
FIG5_PAIRS = (("train set: clean (solid), FGSM (dashed)", "train_clean", "train_fgsm"),
              ("test set: clean (solid), FGSM (dashed)", "test_clean", "test_fgsm"),
              ("test PGD-20: bare (solid), TPAP (dashed)", "test_pgd20", "tpap_pgd20"))


def plot_fig5(records, pairs=FIG5_PAIRS, title: str = ""):
    """Fig. 5: accuracy per epoch, one row per lever (training eps, batch size, learning rate), one colour per setting.

    Each column draws two metrics of the same runs (`pairs`: solid and dashed), on integer epochs;
    each row's legend sits outside its last panel, so nothing overlaps the curves.
    """
    import pandas as pd
    from matplotlib.lines import Line2D

    df = pd.DataFrame(records)
    panels = list(dict.fromkeys(df["panel"]))
    fig, axes = plt.subplots(len(panels), len(pairs), figsize=(3.9 * len(pairs) + 1.8, 2.7 * len(panels) + 0.6),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for i, panel in enumerate(panels):
        sub = df[df.panel == panel]
        settings = list(dict.fromkeys(sub["setting"]))
        colors = plt.get_cmap("viridis")([0.05 + 0.8 * k / max(1, len(settings) - 1) for k in range(len(settings))])
        for j, (name, solid, dashed) in enumerate(pairs):
            ax = axes[i, j]
            for setting, color in zip(settings, colors):
                run = sub[sub.setting == setting].sort_values("epoch")
                ax.plot(run.epoch, run[solid], color=color, ls="-", marker="o", ms=3.5)
                ax.plot(run.epoch, run[dashed], color=color, ls="--", marker="s", ms=3.5, mfc="white")
            ax.set_ylim(-3, 103)
            integer_epochs(ax)
            if i == 0:
                ax.set_title(name, fontsize=9)
            if i == len(panels) - 1:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel(f"by {panel}\naccuracy (%)")
        handles = [Line2D([], [], color=c, marker="o", ms=4, label=s) for s, c in zip(settings, colors)]
        axes[i, -1].legend(handles=handles, title=panel, loc="center left", bbox_to_anchor=(1.03, 0.5),
                           frameon=False, fontsize=8, title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_cam_grid(images: dict[str, torch.Tensor], cams: dict[str, np.ndarray], titles: dict | None = None,
                  row_labels: Sequence[str] | None = None, alpha: float = 0.55, size: float = 1.9,
                  contour: float | None = 0.5):
    """One row per example, one column per input: the image with its Grad-CAM map over it (jet).

    Maps are drawn with nearest interpolation (a map cell is a block of pixels) on one colour scale
    per row, 0 to the largest value among that row's maps, with the row's colour bar: within a row
    the colours compare the evidence across inputs. Grey images also get a white contour at pixel
    value `contour` and their map is drawn opaque (blending a colour map with grey pixels makes colours
    the colour bar does not have), so the object stays visible as an outline.
    """
    names = list(images)
    n = len(images[names[0]])
    fig, axes = plt.subplots(n, len(names), figsize=(size * len(names) + 0.9, size * n + 0.5), squeeze=False,
                             layout="constrained")
    for i in range(n):
        vmax = max(float(np.max(cams[name][i])) for name in names) or 1.0
        for j, name in enumerate(names):
            ax = axes[i, j]
            img = images[name][i].detach().cpu().permute(1, 2, 0).numpy()
            grey = img.shape[-1] == 1 and contour is not None
            if not grey:
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
            mappable = ax.imshow(cams[name][i], cmap="jet", alpha=1.0 if grey else alpha, vmin=0, vmax=vmax,
                                 interpolation="nearest")
            if grey:  # grey images: the object's outline in white over the opaque map
                ax.contour(img[..., 0], levels=[contour], colors="white", linewidths=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title((titles or {}).get((name, i), name), fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
        bar = fig.colorbar(mappable, ax=axes[i, :].tolist(), shrink=0.9, pad=0.02)
        bar.ax.tick_params(labelsize=7)
        bar.set_label("Grad-CAM", fontsize=7)
    return fig


def accuracy_bars(records: list[dict], title: str = "", fmt: str = "%.1f"):
    """Bar chart of accuracy (%) per attack and defence; every bar labelled with its value, and bars at 0 %
    marked at the axis so they stay visible. Returns the figure."""
    attacks = list(dict.fromkeys(r["attack"] for r in records))
    defences = list(dict.fromkeys(r["defence"] for r in records))
    acc = {(r["defence"], r["attack"]): 100 * r["accuracy"] for r in records}
    width = 0.8 / len(defences)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.35 * len(attacks) * len(defences) + 2), 4.6))
    for k, defence in enumerate(defences):
        idx = [i for i, a in enumerate(attacks) if (defence, a) in acc]
        pos = [i + (k - (len(defences) - 1) / 2) * width for i in idx]
        heights = [acc[defence, attacks[i]] for i in idx]
        bars = ax.bar(pos, heights, width, label=defence, color=f"C{k}", edgecolor="white", linewidth=0.5)
        ax.bar_label(bars, fmt=fmt, padding=2, fontsize=7, rotation=90)
        zero = [p for p, h in zip(pos, heights) if h < 0.05]
        if zero:  # a bar of height 0 draws nothing: mark it where it stands
            ax.plot(zero, [0.0] * len(zero), ls="none", marker="o", ms=4, mfc=f"C{k}", mec="black", mew=0.6,
                    clip_on=False, zorder=3)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(attacks)), attacks, rotation=35, ha="right")
    ax.set(ylabel="accuracy (%)", xlabel="", ylim=(-3, 112), title=title)
    ax.legend(title="defence", fontsize=8, ncols=len(defences), loc="upper right")
    fig.tight_layout()
    return fig
