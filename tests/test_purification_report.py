"""Notebook 02's sentences follow the records they are given (tpap_nb.report.purification)."""
import pytest

from tpap_nb import report
from tpap_nb.paper import TABLE6


def _ablation(clean, fgsm, pgd20, n=200):
    rows = []
    for attack, (off, on) in {"clean": clean, "fgsm": fgsm, "pgd20": pgd20}.items():
        rows += [{"attack": attack, "purification": False, "accuracy": off, "n": n},
                 {"attack": attack, "purification": True, "accuracy": on, "n": n}]
    return rows


def test_ablation_sentence_reports_each_change_and_compares_with_the_paper_only_where_decided():
    like_paper = report.ablation_sentence(_ablation((90.0, 89.5), (95.0, 60.0), (1.0, 70.0)), TABLE6)
    assert ("on clean images accuracy stays level, within the uncertainty (90.0 % without purification, 89.5 % with)"
            in like_paper)
    assert "on FGSM accuracy falls by 35.0 points (" in like_paper
    assert "on PGD-20 accuracy rises by 69.0 points (" in like_paper
    assert "On these 200 test images" in like_paper
    # clean's half-point change is undecided: it is not set against the paper either way
    assert "goes the way it goes in the paper's Tab. 6 on FGSM and PGD-20." in like_paper
    unlike = report.ablation_sentence(_ablation((90.0, 80.0), (50.0, 55.0), (1.0, 70.0)), TABLE6,
                                      names={"pgd20": "PGD-7"})
    assert "on PGD-7 accuracy rises" in unlike
    assert "on FGSM accuracy rises by 5.0 points, within the uncertainty" in unlike  # 10 of 200 images
    assert "on PGD-7, and not on clean images." in unlike
    against = report.ablation_sentence(_ablation((90.0, 80.0), (50.0, 55.0), (70.0, 1.0)), TABLE6)
    assert "goes against the paper's Tab. 6 on clean images and PGD-20" in against
    # per-image verdicts decide what the counts alone cannot: the same 5-point rise, every image moving one way
    rows = _ablation((90.0, 89.5), (50.0, 55.0), (1.0, 70.0))
    import numpy as np
    for r in rows:
        k = round(r["accuracy"] * r["n"] / 100)
        r["_correct"] = np.arange(r["n"]) < k  # nested: each image right without purification stays right
    paired = report.ablation_sentence(rows, TABLE6)
    assert "on FGSM accuracy rises by 5.0 points (" in paired
    nothing = report.ablation_sentence(_ablation((90.0, 89.5), (50.0, 51.0), (1.0, 1.5)), TABLE6)
    assert "No change here is beyond the uncertainty" in nothing
    with pytest.raises(ValueError, match="with and without purification"):
        report.ablation_sentence(_ablation((1, 2), (3, 4), (5, 6))[:-1])


def _sweep(curves):
    return [{"xi": xi, "attack": a, "accuracy": acc} for a, pts in curves.items() for xi, acc in pts]


def test_xi_sweep_sentence_says_best_xi_eps_and_the_paired_test():
    eps = 8 / 255
    xs = [0, 2 / 255, 4 / 255, 6 / 255, 8 / 255, 12 / 255]
    rec = _sweep({"clean": list(zip(xs, [80.0, 80.0, 79.0, 78.0, 76.0, 60.0])),
                  "pgd20": list(zip(xs, [5.0, 20.0, 25.0, 60.0, 40.0, 30.0]))})
    n = 100
    best = [True] * 60 + [False] * 40
    at_eps = [True] * 40 + [False] * 60  # the 20 extra right images of the best xi: McNemar decides
    text = report.xi_sweep_sentence(rec, xi=eps, eps=eps, n=n, verdicts={"pgd20": {6 / 255: best, eps: at_eps}})
    assert "On PGD-20, TPAP is best at xi = 6/255: 60.0 % (95 % CI 50.2-69.1, n = 100)" in text
    assert "at xi = eps = 8/255 it scores 40.0 % (95 % CI 30.9-49.8, n = 100)" in text
    assert "the best xi is better than xi = eps: xi = 6/255 above xi = 8/255" in text
    assert "goes from" not in text and "0.0235" not in text  # no wiggles, one unit
    # 80 -> 76 % of the same 100 images: not decided whatever the pairing, so no cost is claimed
    assert "costs no accuracy that 100 images can detect: 76.0 % against the bare model's 80.0 %" in text
    assert "Its lowest in the sweep is 60.0 % at xi = 12/255." in text
    # The same curve, but the best xi gains on as many images as it loses beside eps: no "better".
    tie = [True] * 50 + [False] * 50
    text = report.xi_sweep_sentence(rec, xi=eps, eps=eps, n=n, verdicts={"pgd20": {6 / 255: tie[::-1], eps: tie}})
    assert "better" not in text and "do not differ at n = 100" in text
    assert "not shown to beat xi = eps" in text
    # Without verdicts: no test, and the sentence says so; numbers with their Wilson interval from n.
    text = report.xi_sweep_sentence(rec, xi=eps, eps=eps, n=n)
    assert "not tested against each other" in text and "better" not in text
    # A clean cost the paired test decides (90 -> 50 % of 100 images) is called a cost, with its interval.
    steep = _sweep({"clean": [(0, 90.0), (eps, 50.0)], "pgd20": [(0, 5.0), (eps, 40.0)]})
    text = report.xi_sweep_sentence(steep, xi=eps, eps=eps, n=n)
    assert "costs accuracy: 50.0 % against the bare model's 90.0 %, -40.0 points (95 % CI" in text


def test_xi_sweep_sentence_when_eps_is_best_or_missing():
    rec = _sweep({"pgd20": [(0, 5.0), (0.15, 30.0), (0.3, 50.0), (0.45, 50.0)],
                  "clean": [(0, 90.0), (0.15, 89.5), (0.3, 89.8), (0.45, 70.0)]})
    text = report.xi_sweep_sentence(rec, xi=0.21, eps=0.3)
    assert "best at xi = 0.3: 50.0 %, which is xi = eps" in text  # a tie goes to eps; no n: no interval
    assert "does not cost accuracy: 89.8 % against the bare model's 90.0 % (within 1 point)" in text
    assert "/255" not in text
    missing = report.xi_sweep_sentence(rec, xi=0.25, eps=0.25)
    assert "the sweep has no xi = eps = 0.25" in missing
    assert report.sweep_best(rec, "pgd20", 0.3) == 0.3
    with pytest.raises(ValueError, match="no xi > 0"):
        report.sweep_best(rec, "fgsm", 0.3)


def test_radius_in_keeps_one_unit():
    r = report.radius_in(8 / 255)
    assert [r(v) for v in (0, 2 / 255, 0.7 * 8 / 255, 8 / 255)] == ["0", "2/255", "5.6/255", "8/255"]
    assert report.radius_in(0.3)(0.21) == "0.21"


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


def test_fgsm_limitation_sentence_writes_every_radius_in_one_unit():
    lim = {"linf_x_adv": 8 / 255, "linf_x_pur": 14 / 255, "same_sign_fraction": 0.8, "acc_bare_fgsm": 50.0,
           "acc_tpap_fgsm": 30.0, "acc_bare_fgsm_eps_plus_xi": 28.0}
    text = report.fgsm_limitation_sentence(lim, eps=8 / 255, xi=8 / 255)
    assert "on average 14/255 (L-inf) from the clean images, against 8/255 before purification (eps = 8/255, " \
           "eps + xi = 16/255)" in text
