"""The shared figures keep their text apart (tpap_nb/plots.py): the status footnote below every x label, the
suptitle above every panel title, whole-number epochs."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tpap_nb import plots  # noqa: E402

STATUS = ("unmeasured: a reasoned guess until a GPU has run it, with a status line long enough to run under "
          "every panel of the figure and past its right edge (docs/gpu.md)")


def _history(epochs: int = 3) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        rows.append({"epoch": e, **{f"{p}_{k}": 0.1 * e + 0.05 * i for i, (p, k) in enumerate(
            (p, k) for p in ("train", "test", "tpap") for k in ("clean", "fgsm", "pgd20"))}})
    return rows


def _drawn_labels(ax):
    """The tick labels matplotlib draws (those of ticks inside the view limits) and the axis labels."""
    drawn = []
    for ticks, labels, (lo, hi) in ((ax.get_xticks(), ax.get_xticklabels(), ax.get_xlim()),
                                    (ax.get_yticks(), ax.get_yticklabels(), ax.get_ylim())):
        drawn += [lab for t, lab in zip(ticks, labels) if min(lo, hi) <= t <= max(lo, hi)]
    return [a for a in [*drawn, ax.xaxis.label, ax.yaxis.label] if a.get_visible() and a.get_text()]


@pytest.fixture
def saved_curves(tmp_path, monkeypatch):
    monkeypatch.setenv("TPAP_FIGURES", str(tmp_path))
    plots.set_style()
    fig = plots.plot_history(_history(), title="FGSM-RO, small CNN on digits: a long title to sit over the panels")
    meta = plots.save_figure(fig, "01_training_curves", {"profile": "gpu", "status": STATUS, "device": "cpu"})
    yield fig, meta, tmp_path
    plt.close(fig)


def test_status_line_sits_below_every_label(saved_curves):
    fig, meta, folder = saved_curves
    assert (folder / "01_training_curves.png").exists() and meta["profile_status"] == STATUS
    renderer = fig.canvas.get_renderer()
    status = [t for t in fig.texts if t.get_gid() == plots.STATUS_GID]
    assert len(status) == 1 and STATUS in status[0].get_text()
    foot = status[0].get_window_extent(renderer)
    for ax in fig.axes:
        for box in (a.get_window_extent(renderer) for a in _drawn_labels(ax)):
            assert not foot.overlaps(box) and foot.y1 <= box.y0, "the status line overlaps an axis label"
    plots.status_line(fig, "again")  # written twice: one line
    assert [t.get_text() for t in fig.texts if t.get_gid() == plots.STATUS_GID] == ["again"]


def test_suptitle_clears_the_panel_titles(saved_curves):
    fig, _, _ = saved_curves
    renderer = fig.canvas.get_renderer()
    top = fig.get_suptitle() and fig._suptitle.get_window_extent(renderer)
    assert top, "the curves figure has a suptitle"
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        assert not top.overlaps(title) and top.y0 >= title.y1, "the suptitle overlaps a panel title"


def test_epoch_ticks_are_whole_numbers(saved_curves):
    fig, _, _ = saved_curves
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_one_thread_is_singular():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert plots.device_name() == "cpu (1 thread)"
    finally:
        torch.set_num_threads(n)
