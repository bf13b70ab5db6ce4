"""Notebook 02's sentences follow the records they are given (tpap_nb.report.purification)."""
import pytest

from tpap_nb import report
from tpap_nb.paper import TABLE6


def _ablation(clean, fgsm, pgd20, n=100):
    rows = []
    for attack, (off, on) in {"clean": clean, "fgsm": fgsm, "pgd20": pgd20}.items():
        rows += [{"attack": attack, "purification": False, "accuracy": off, "n": n},
                 {"attack": attack, "purification": True, "accuracy": on, "n": n}]
    return rows


def test_ablation_sentence_reports_each_change_and_compares_with_the_paper():
    like_paper = report.ablation_sentence(_ablation((90.0, 89.5), (95.0, 60.0), (1.0, 70.0)), TABLE6)
    assert "on clean images accuracy stays level (90.0 % without purification, 89.5 % with)" in like_paper
    assert "on FGSM accuracy falls by 35.0 points" in like_paper
    assert "on PGD-20 accuracy rises by 69.0 points" in like_paper
    assert "On these 100 test images" in like_paper
    assert "goes the way it goes in the paper's Tab. 6 on clean images, FGSM and PGD-20." in like_paper
    unlike = report.ablation_sentence(_ablation((90.0, 80.0), (50.0, 55.0), (1.0, 70.0)), TABLE6,
                                      names={"pgd20": "PGD-7"})
    assert "on PGD-7 accuracy rises" in unlike
    assert "on PGD-7, and not on clean images and FGSM." in unlike
    against = report.ablation_sentence(_ablation((90.0, 80.0), (50.0, 55.0), (70.0, 1.0)), TABLE6)
    assert "goes against the paper's Tab. 6 on clean images, FGSM and PGD-20" in against
    with pytest.raises(ValueError, match="with and without purification"):
        report.ablation_sentence(_ablation((1, 2), (3, 4), (5, 6))[:-1])


def _sweep(curves):
    return [{"xi": xi, "attack": a, "accuracy": acc} for a, pts in curves.items() for xi, acc in pts]


def test_xi_sweep_sentence_says_what_the_curves_do():
    # The shape issue 13 found: no clean cost, PGD-20 climbing past the small steps.
    rec = _sweep({"clean": [(0, 97.0), (0.1, 97.2), (0.2, 96.9), (0.4, 97.5)],
                  "pgd20": [(0, 5.0), (0.1, 20.0), (0.2, 60.0), (0.4, 70.0)]})
    text = report.xi_sweep_sentence(rec, xi=0.2, eps=0.2)
    assert "on clean images accuracy stays between 96.9 % and 97.5 %" in text
    assert "on PGD-20 accuracy rises from 5.0 % at xi = 0 to 70.0 % at xi = 0.4" in text
    assert "At the profile's xi = 0.2 (1.00 eps) TPAP scores 97.0" not in text
    assert "TPAP scores 96.9 % on clean images, 60.0 % on PGD-20" in text
    assert "no xi in the sweep costs more than 1 point of clean accuracy" in text
    assert "The smallest step (xi = 0.1) leaves PGD-20 at 20.0 %, 50.0 points below its best" in text
    # The opposite shape: clean pays, and the smallest step is already as good as any.
    rec = _sweep({"clean": [(0, 90.0), (0.1, 89.0), (0.2, 80.0), (0.4, 60.0)],
                  "pgd20": [(0, 5.0), (0.1, 50.0), (0.2, 50.5), (0.4, 30.0)]})
    text = report.xi_sweep_sentence(rec, xi=0.3, eps=0.2)
    assert "on clean images accuracy falls from 90.0 % at xi = 0 to 60.0 % at xi = 0.4" in text
    assert "on PGD-20 accuracy goes from 5.0 % at xi = 0 up to 50.5 % at xi = 0.2 and down to 30.0 % at xi = 0.4" \
        in text
    assert "profile's xi" not in text  # 0.3 was not swept: nothing said about it
    assert "Purification does cost clean accuracy here: at its lowest 60.0 % at xi = 0.4, against the bare " \
           "model's 90.0 %." in text
    assert "Already the smallest step (xi = 0.1) gives PGD-20 50.0 %" in text


def test_xi_sweep_sentence_names_every_turn_of_a_curve():
    rec = _sweep({"clean": [(0, 50.0), (0.1, 30.0), (0.2, 55.0)], "fgsm": [(0, 10.0), (0.1, 40.0), (0.2, 30.0),
                                                                          (0.3, 50.0)]})
    text = report.xi_sweep_sentence(rec, xi=0.1, eps=0.1)
    assert "on clean images accuracy goes from 50.0 % at xi = 0 down to 30.0 % at xi = 0.1 and up to 55.0 %" in text
    assert ("on FGSM accuracy goes from 10.0 % at xi = 0 up to 40.0 % at xi = 0.1, down to 30.0 % at xi = 0.2 and "
            "up to 50.0 % at xi = 0.3") in text
    assert "at its lowest 30.0 % at xi = 0.1, against the bare model's 50.0 % (55.0 % at the largest xi, 0.2)." in text
    # quick's clean curve: a dip at the smallest xi, a plateau, a collapse; a wiggle under 1 point is no turn.
    clean = [(0, 89.7), (0.075, 67.5), (0.15, 82.5), (0.21, 91.7), (0.225, 92.2), (0.3, 91.7), (0.45, 17.8),
             (0.6, 6.9)]
    text = report.xi_sweep_sentence(_sweep({"clean": clean}), xi=0.21, eps=0.3)
    assert ("goes from 89.7 % at xi = 0 down to 67.5 % at xi = 0.075, up to 92.2 % at xi = 0.225 and down to 6.9 % "
            "at xi = 0.6") in text
    tail = report.xi_sweep_sentence(_sweep({"clean": [(0, 50.0), (0.1, 70.0), (0.2, 69.5)]}), xi=0.1, eps=0.1)
    assert "rises from 50.0 % at xi = 0 to 70.0 % at xi = 0.1 (and 69.5 % at xi = 0.2)" in tail


def _lim(t, b, b2, same=0.8):
    return {"linf_x_adv": 0.3, "linf_x_pur": 0.45, "same_sign_fraction": same, "acc_bare_fgsm": b,
            "acc_tpap_fgsm": t, "acc_bare_fgsm_eps_plus_xi": b2}


def test_fgsm_limitation_sentence_checks_sec_4_3_against_the_numbers():
    holds = report.fgsm_limitation_sentence(_lim(t=40.0, b=90.0, b2=35.0), eps=0.3, xi=0.15)
    assert "closer to the bare model's at eps + xi, as Sec. 4.3 explains it" in holds
    assert "gamma has the sign of delta on 80.0 %" in holds and "eps + xi = 0.45" in holds
    fails = report.fgsm_limitation_sentence(_lim(t=85.0, b=90.0, b2=35.0), eps=0.3, xi=0.15)
    assert "does not account for it" in fails
    tie = report.fgsm_limitation_sentence(_lim(t=10.0, b=12.0, b2=11.5), eps=0.3, xi=0.15)
    assert "cannot tell" in tie
