"""The exercise answers (tpap_nb/answers.py) hold on a tiny FGSM-RO model."""
import pytest

import tpap_nb as tp
from tpap_nb import answers


def test_ex01_first_overfit_epoch_reads_the_history():
    h = [{"epoch": 1, "train_fgsm": 0.5, "train_pgd20": 0.3, "test_clean": 0.8, "test_fgsm": 0.5},
         {"epoch": 2},
         {"epoch": 3, "train_fgsm": 0.95, "train_pgd20": 0.05, "test_clean": 0.9, "test_fgsm": 0.9}]
    assert answers.ex01_first_overfit_epoch(h) == 3
    assert answers.ex01_first_overfit_epoch(h[:2]) is None


@pytest.mark.slow
def test_ex01_pgd_at_keeps_real_pgd_robustness(digits):
    # eps 0.1: a radius at which a small CNN can become genuinely robust in a few epochs
    cfg = tp.get_profile("smoke", epochs=6, width=8, eps=0.1, pgd_alpha=0.025, milestones=(5,), n_eval=128,
                         eval_every=6)
    res = answers.ex01_pgd_at_is_not_fgsm_ro(cfg, data=digits.subset(n_train=768))
    assert not res["robust_overfit"]
    assert res["train_pgd20"] > 0.1  # "other attacks < 10 %" fails: PGD-AT is not FGSM-RO


def test_ex02_direction_matters(ro_model, test_xy):
    cfg = tp.get_profile("smoke", eps=0.3, xi=0.15)
    res = answers.ex02_direction_matters(ro_model, *test_xy, cfg)
    assert res["away (Eq. 7)"] > res["toward"] + 10
    assert res["away (Eq. 7)"] > res["bare"]


def test_ex02_purify_twice_reports_both(ro_model, test_xy):
    import torch

    from tpap_nb.evaluate import pgd20_attack, robust_accuracy

    x, y = test_xy
    cfg = tp.get_profile("smoke", eps=0.3, xi=0.15)
    torch.manual_seed(0)
    res = answers.ex02_purify_twice(ro_model, x, y, cfg)
    for name in ("clean", "pgd20"):
        assert set(res[name]) == {"one step of xi", "two steps of xi/2"}
    # "one step of xi" is TPAP's accuracy, on the same inputs
    assert res["clean"]["one step of xi"] == 100 * robust_accuracy(ro_model, x, y, xi=0.15)["tpap"]
    x_adv = pgd20_attack(ro_model, cfg)(x, y)  # seeded from cfg: the same x_adv as the answer's
    acc = robust_accuracy(ro_model, x_adv, y, xi=0.15)
    assert res["pgd20"]["one step of xi"] == 100 * acc["tpap"] > 100 * acc["bare"]


@pytest.mark.slow
def test_ex07_answers_on_tiny_model(ro_model, test_xy):
    from tpap_nb.evaluate import robust_accuracy
    from tpap_nb.experiments.adaptive import DefendedClassifier, evaluate_adaptive

    x, y = test_xy[0][:48], test_xy[1][:48]
    res = answers.ex07_transfer_sources(ro_model, x, y, 0.15, 0.3, {"bare": ro_model,
                                        "F": DefendedClassifier(ro_model, 0.15)}, scale=0.2)
    assert set(res) == {"bare", "F"} and res["F"] <= res["bare"]
    records, _ = evaluate_adaptive(ro_model, x, y, 0.15, 0.3, attacks=("transfer", "square"), scale=0.02)
    sq = answers.ex07_square_vs_protocol(records)
    assert sq["worst case"] <= min(sq["paper protocol"], sq["square"])
    taus = answers.ex07_tau_sweep(ro_model, x, y, 0.15, 0.3, taus=(0.5,), scale=0.1)
    assert set(taus) == {"smooth tau=0.5", "bpda"}
    clean = 100 * robust_accuracy(ro_model, x, y, xi=0.15)["tpap"]
    assert all(v < clean - 20 for v in taus.values())  # PGD through F breaks TPAP with either gradient
