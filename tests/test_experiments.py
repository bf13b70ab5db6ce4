"""Direction tests of the experiments: each one moves the way the paper's argument says, and the
sanity checks flag what they exist to flag."""
import pytest
import torch
import torch.nn as nn

import tpap_nb as tp
from tpap_nb import report
from tpap_nb.experiments import fig5, tables
from tpap_nb.experiments.cost import time_round_robin

EPS, XI, ALPHA = 0.3, 0.15, 0.075
CFG = tp.get_profile("smoke", eps=EPS, xi=XI, seed=0)  # PGD-20: evaluate.pgd20_attack on this


class Quantised(nn.Module):
    """A model whose input is rounded to 4 grey levels: zero gradient w.r.t. x (masked gradients)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 3) / 3)


def test_ablation_purification_helps_against_pgd_and_hurts_fgsm(ro_model, test_xy):
    rows = tables.ablation(ro_model, *test_xy, CFG)
    acc = {(r["attack"], r["purification"]): r["accuracy"] for r in rows}
    assert len(rows) == 6 and all(r["n"] == len(test_xy[1]) for r in rows)
    assert acc["pgd20", True] > acc["pgd20", False] + 20  # Tab. 6: purification undoes PGD
    assert acc["fgsm", False] > acc["pgd20", False] + 20  # robust overfitting: FGSM is harmless to f
    assert acc["fgsm", True] < acc["fgsm", False]  # Sec. 4.3's limitation


def test_xi_sweep_starts_at_the_bare_model_and_purification_lifts_pgd(ro_model, test_xy):
    x, y = test_xy
    rows = tables.xi_sweep(ro_model, x, y, CFG, [0.0, XI])
    acc = {(r["xi"], r["attack"]): r["accuracy"] for r in rows}
    assert acc[0.0, "clean"] == pytest.approx(100 * tables.robust_accuracy(ro_model, x, y)["bare"])
    assert acc[XI, "pgd20"] > acc[0.0, "pgd20"] + 20


def test_fgsm_limitation_pushes_further_along_the_attack(ro_model, test_xy):
    lim = tables.fgsm_limitation(ro_model, *test_xy, EPS, XI)
    assert lim["linf_x_adv"] == pytest.approx(EPS, abs=1e-4)
    assert lim["linf_x_pur"] == pytest.approx(EPS + XI, abs=1e-4)  # the step goes on along the attack
    assert lim["acc_tpap_fgsm"] < lim["acc_bare_fgsm"]


def test_eps_sanity_falls_to_zero_and_checks_pass_on_a_real_model(ro_model, test_xy):
    x, y = test_xy[0][:64], test_xy[1][:64]
    rows = tables.eps_sanity(ro_model, x, y, [0, 0.3, 1.0], steps=10, xi=XI)
    bare = [r["acc_bare"] for r in rows]
    assert bare[0] > 80 and bare[-1] <= 5 and bare == sorted(bare, reverse=True)
    assert all("acc_tpap" in r for r in rows)
    iters = tables.iterations_sanity(ro_model, x, y, EPS, ALPHA, steps=(5, 10))
    assert all(c["passed"] for c in tables.checks_table(rows, iters))


def test_checks_table_flags_masked_gradients(ro_model, test_xy):
    x, y = test_xy[0][:64], test_xy[1][:64]
    masked = Quantised(ro_model).eval()
    rows = tables.eps_sanity(masked, x, y, [0, 0.3, 1.0], steps=10)
    checks = tables.checks_table(rows, tables.iterations_sanity(masked, x, y, EPS, ALPHA, steps=(5, 10)))
    assert rows[-1]["acc_bare"] > 5  # PGD gets no gradient, so accuracy does not fall to 0 ...
    assert not checks[0]["passed"]  # ... and the first check says so


def test_profile_table_and_side_by_side_keep_the_papers_order():
    recs = [{"attack": "pgd20", "acc_tpap": 70.123}, {"attack": "fgsm", "acc_tpap": 10.0}]
    assert list(tables.profile_table(recs, attacks=["fgsm", "pgd20"]).items()) == [("fgsm", 10.0), ("pgd20", 70.12)]
    df = tables.side_by_side({"TPAP": {"fgsm": 10.0}}, {"TPAP": {"fgsm": 61.41, "pgd20": 79.06}}, ["fgsm", "pgd20"])
    assert list(df.index) == ["paper: TPAP", "ours: TPAP"] and df.loc["ours: TPAP", "fgsm"] == 10.0
    assert df["pgd20"].isna().tolist() == [False, True]


@pytest.mark.slow
def test_fig5_sweep_trains_one_run_per_setting_at_its_eps(digits):
    cfg = tp.get_profile("smoke", epochs=4, width=4, n_train=128, n_eval=32, milestones=(3,))
    kw = dict(eps_multiples=(1.0, 2.0), batch_sizes=(32,), lr_multiples=(2.0,), epochs=2, progress=False)
    recs = fig5.fig5_sweep(cfg, **kw)
    settings = {(r["panel"], r["setting"]) for r in recs}
    assert settings == {("training eps", "1 x eps"), ("training eps", "2 x eps"), ("batch size", "bs 32"),
                        ("learning rate", f"lr {2 * cfg['lr']:.3g}")}
    by = {r["setting"]: r for r in recs if r["epoch"] == 2}
    assert by["2 x eps"]["eps"] == pytest.approx(2 * cfg["eps"]) and by["bs 32"]["batch_size"] == 32
    assert by[f"lr {2 * cfg['lr']:.3g}"]["lr"] == pytest.approx(2 * cfg["lr"])
    assert all(0 <= r[k] <= 100 for r in recs for k in ("train_fgsm", "test_pgd20", "tpap_pgd20"))
    again = fig5.fig5_sweep(cfg, **kw)
    assert again == recs  # the second call reuses the checkpoints


def _sweep_record(panel, setting, epoch, clean, fgsm_acc, **kw):
    rec = {"panel": panel, "setting": setting, "epoch": epoch, "train_clean": clean, "train_fgsm": fgsm_acc,
           "train_pgd20": 5.0, "test_clean": clean, "test_fgsm": fgsm_acc, "test_pgd20": 2.0, "tpap_pgd20": 60.0}
    return rec | kw


def test_fig5_sentences_name_the_runs_that_leak_and_overfit():
    recs = [_sweep_record("training eps", "1 x eps", e, 80.0, 70.0) for e in (1, 2)]
    recs += [_sweep_record("training eps", "2 x eps", 1, 40.0, 45.0),
             _sweep_record("training eps", "2 x eps", 2, 30.0, 95.0, train_pgd20=1.0)]
    leaks = fig5.label_leaking(recs)
    assert {(r["setting"], r["epoch"], r["split"]) for r in leaks} == {("2 x eps", e, s) for e in (1, 2)
                                                                       for s in ("train", "test")}
    text = report.fig5_leaking_sentence(recs)
    assert "1 of 2 runs" in text and "`2 x eps`" in text and "95.0 %" in text and "`1 x eps`" not in text
    assert "At no evaluated epoch" in report.fig5_leaking_sentence(recs[:2])
    ro = report.fig5_overfitting_sentence(recs)  # 2 x eps: train FGSM 95, train PGD-20 1, but test clean 30 (< 50)
    assert "`1 x eps` does not overfit" in ro and "`2 x eps` does not overfit" in ro
    recs[-1] |= {"train_clean": 60.0, "test_clean": 60.0, "test_fgsm": 90.0}
    assert "`2 x eps` overfits" in report.fig5_overfitting_sentence(recs)


def test_plot_fig5_has_a_row_per_lever_and_integer_epochs():
    import matplotlib.pyplot as plt

    from tpap_nb.plots import FIG5_PAIRS, plot_fig5

    levers = (("training eps", ("1 x eps", "2 x eps")), ("batch size", ("bs 32",)), ("learning rate", ("lr 0.1",)))
    recs = [_sweep_record(p, s, e, 50.0, 40.0) for p, ss in levers for s in ss for e in (1, 3, 5)]
    fig = plot_fig5(recs)
    fig.canvas.draw()
    axes = fig.axes
    assert len(axes) == 3 * len(FIG5_PAIRS)
    ticks = [float(t) for t in axes[-1].get_xticks() if 1 <= t <= 5]
    assert ticks and all(t == int(t) for t in ticks)  # integer epochs only
    legends = [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    assert [lg.get_title().get_text() for lg in legends] == ["training eps", "batch size", "learning rate"]
    plt.close(fig)


def test_accuracy_grid_and_heatmap_mark_what_was_not_run():
    import matplotlib.pyplot as plt

    from tpap_nb.plots import heatmap

    cfg = {"xi": 0.2, "pgd_steps": 5}
    rec = lambda a, b, t: {"attack": a, "acc_bare": b, "acc_tpap": t, "label": f"{a} (20 x 0.01, eps 0.3, n = 8)"}  # noqa: E731
    records = {"fgsm": [rec("fgsm", 90.0, 50.0), rec("pgd20", 0.0, 70.0)], "pgd": [rec("fgsm", 60.0, 55.0)]}
    clean = {"fgsm": {"bare": 0.9, "tpap": 0.85}, "pgd": {"bare": 0.8, "tpap": 0.7}}
    grid = tables.accuracy_grid(records, clean, cfg, ["fgsm", "pgd20"])
    assert list(grid.columns) == ["clean", "fgsm", "pgd20"] and len(grid) == 4
    assert "PGD-AT (PGD-5), bare" in grid.index and grid.loc["PGD-AT (PGD-5), + TPAP", "clean"] == pytest.approx(70)
    assert grid["pgd20"].isna().sum() == 2 and grid.loc["FGSM-RO (FGSM-AT, Algorithm 1), bare", "pgd20"] == 0.0
    fig = heatmap(grid)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("not run") == 2 and "0" in texts  # a real 0 is drawn as 0, a missing cell as "not run"
    plt.close(fig)
    assert tables.column_label(rec("pgd20", 0, 0)) == "pgd20\n20 x 0.01, eps 0.3"


def test_table_sentences_follow_the_numbers():
    bare, pur = {"clean": 90.0, "fgsm": 80.0, "pgd20": 1.0}, {"clean": 88.0, "fgsm": 60.0, "pgd20": 70.0}
    text = report.purification_sentence(bare, pur, {"without purification": {"pgd20": 0.18},
                                                    "with purification": {"pgd20": 79.06}}, n=100)
    assert "pgd20 1.0 % (0.2-5.4) -> 70.0 % (60.4-78.1) (+69.0 points, 95 % CI" in text
    assert "paper 0.2 -> 79.1, +78.9)" in text
    assert "helps on pgd20 and costs on fgsm here; on clean the change is within the uncertainty" in text
    recs = lambda t: [{"attack": "pgd20", "acc_tpap": t, "acc_bare": 0.0, "n": 500}]  # noqa: E731
    paper = {"FGSM": {"pgd20": 79.0}, "PGD-10": {"pgd20": 42.0}}
    same = report.table7_sentence({"FGSM": recs(60.0), "PGD-5": recs(30.0)}, paper, {"PGD-5": "PGD-10"})
    assert "FGSM 60.0 %" in same and "(ours agrees where it decides)" in same
    other = report.table7_sentence({"FGSM": recs(20.0), "PGD-5": recs(30.0)}, paper, {"PGD-5": "PGD-10"})
    assert "ours differs: PGD-5 above FGSM" in other
    assert "neither agrees nor differs" in report.table7_sentence({"FGSM": recs(30.0), "PGD-5": recs(30.0)}, paper,
                                                                  {"PGD-5": "PGD-10"})
    ok = [{"check": "a", "passed": True}, {"check": "b", "passed": True}]
    assert report.checks_sentence(ok).startswith("All 2 sanity checks pass")
    assert report.checks_sentence(ok + [{"check": "c", "passed": False}]).startswith("1 of 3 sanity checks fail (c)")


def test_differences_are_rendered_from_the_run():
    cfg = tp.get_profile("smoke")
    records = [{"attack": "fgsm", "acc_tpap": 40.0, "acc_bare": 80.0},
               {"attack": "pgd20", "acc_tpap": 70.0, "acc_bare": 3.0}]
    text = report.table2_differences(cfg, records, {"tpap": 0.9, "bare": 0.92}, {"clean": 86.25, "fgsm": 61.41,
                                                                          "pgd20": 79.06}, 100)
    assert "`small_cnn` on `digits`" in text and "not the absolute numbers" in text
    assert "model small_cnn (paper: resnet18); attack eps 0.3 (paper: 8/255)" in text and "width" not in text
    assert "loses 50.0 points here (95 % CI 35.5 to 61.6) and 24.8 in the paper (more here)" in text
    assert "keeps 3.0 % (95 % CI 1.0-8.5, n = 100) and TPAP 70.0 % (95 % CI 60.4-78.1, n = 100) here" in text
    assert "the paper reports 79.1 % for TPAP (above our interval)" in text
    paper_cfg = tp.get_profile("paper")
    assert "The setups match" in report.table2_differences(paper_cfg, records, {"tpap": 0.9}, {}, 10)
    cifar = report.table2_differences(tp.get_profile("cifar"), records, {"tpap": 0.9}, {}, 10)
    assert "attack eps 8/255" in cifar and "The setups match" not in cifar  # same data and model, not the same run
    assert "width 16 (paper: 64); training epochs 16 (paper: 150); training eps 12/255 (paper: 8/255)" in cifar


def test_bare_and_purified_maps_a_renamed_row_to_the_papers():
    recs = {"PGD-5": [{"attack": "pgd20", "acc_bare": 1.0, "acc_tpap": 30.0}]}
    df = tables.bare_and_purified(recs, {"PGD-5": {"bare": 0.8, "tpap": 0.7}}, {"PGD-10": {"pgd20": 42.74}},
                                  ["clean", "pgd20"], paper_names={"PGD-5": "PGD-10"})
    assert list(df.index) == ["paper: PGD-10 + TPAP", "ours: PGD-5 bare", "ours: PGD-5 + TPAP"]
    assert df.loc["ours: PGD-5 + TPAP", "clean"] == pytest.approx(70.0)


def test_time_round_robin_alternates_and_sizes_repeats():
    calls = []
    times, iters = time_round_robin({"a": lambda i: calls.append(("a", i)), "b": lambda i: calls.append(("b", i))},
                                    repeats=2, warmup=1)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert iters == {"a": 1, "b": 1} and all(len(t) == 2 for t in times.values())
    _, iters = time_round_robin({"a": lambda i: None}, repeats=1, warmup=1, min_time=0.01)
    assert iters["a"] > 1  # a no-op needs many calls to fill min_time
