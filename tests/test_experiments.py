"""Direction tests of the experiments: each one moves the way the paper's argument says, and the
sanity checks flag what they exist to flag."""
import pytest
import torch
import torch.nn as nn

import tpap_nb as tp
from tpap_nb.experiments import fig5, tables
from tpap_nb.experiments.cost import time_round_robin

EPS, XI, ALPHA = 0.3, 0.15, 0.075
CFG = {"eps": EPS, "xi": XI, "seed": 0}  # PGD-20: evaluate.pgd20_attack on this


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
    recs = fig5.fig5_sweep(cfg, eps_multiples=(1.0, 2.0), batch_sizes=(32,), epochs=2, progress=False)
    settings = {(r["panel"], r["setting"]) for r in recs}
    assert settings == {("eps", "1 x eps"), ("eps", "2 x eps"), ("batch size", "bs 32")}
    by = {r["setting"]: r for r in recs if r["epoch"] == 2}
    assert by["2 x eps"]["eps"] == pytest.approx(2 * cfg["eps"]) and by["bs 32"]["batch_size"] == 32
    assert all(0 <= r[k] <= 100 for r in recs for k in ("train_fgsm", "test_pgd20", "tpap_pgd20"))
    again = fig5.fig5_sweep(cfg, eps_multiples=(1.0, 2.0), batch_sizes=(32,), epochs=2, progress=False)
    assert again == recs  # the second call reuses the checkpoints


def test_time_round_robin_alternates_and_sizes_repeats():
    calls = []
    times, iters = time_round_robin({"a": lambda i: calls.append(("a", i)), "b": lambda i: calls.append(("b", i))},
                                    repeats=2, warmup=1)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert iters == {"a": 1, "b": 1} and all(len(t) == 2 for t in times.values())
    _, iters = time_round_robin({"a": lambda i: None}, repeats=1, warmup=1, min_time=0.01)
    assert iters["a"] > 1  # a no-op needs many calls to fill min_time
