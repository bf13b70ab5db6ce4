"""Issue 21: Tab. 2 / 6 / 7 sentences call a number above another only when a paired test on the same images
decides; every accuracy carries n and its interval; TPAP above its own clean accuracy is flagged and explained."""
import numpy as np
import pytest
import torch

from tpap_nb import report, stats
from tpap_nb.paper import TABLE6


def test_paired_counts_is_the_least_favourable_pairing():
    r = stats.paired_counts(60, 55, 100)
    assert r["a_only"] + r["b_only"] == 85 and not r["decided"]  # 5 images in 100, pairing unknown: no finding
    assert stats.paired_counts(90, 10, 100)["decided"]
    # any real pairing of the same counts decides at least as easily
    a = np.r_[np.ones(60), np.zeros(40)].astype(bool)
    b = np.r_[np.ones(55), np.zeros(45)].astype(bool)
    assert stats.paired(a, b)["p_mcnemar"] <= r["p_mcnemar"] and stats.paired(a, b)["low"] >= r["low"]
    with pytest.raises(ValueError, match="not a count"):
        stats.count_of(80.0, 32)
    v = np.random.default_rng(0).random(37) > 0.5
    assert (stats.unpack_verdicts(stats.pack_verdicts(torch.tensor(v))) == v).all()


def test_small_differences_are_within_the_uncertainty():
    bare, pur = {"clean": 90.0, "fgsm": 62.0, "pgd20": 1.0}, {"clean": 88.0, "fgsm": 59.0, "pgd20": 70.0}
    text = report.purification_sentence(bare, pur, TABLE6, n=100)
    assert "helps on pgd20 and costs on no column" in text
    assert "on clean, fgsm the change is within the uncertainty (n = 100)" in text
    assert "88.0 % (80.2-93.0)" in text and "On n = 100 test images" in text


def test_table6_sentence_uses_the_per_image_verdicts():
    n = 200
    bare = torch.zeros(n, dtype=torch.bool)
    bare[:100] = True
    pur = bare.clone()
    pur[100:112] = True  # 12 images gained, none lost: decided with the pairing, not from the counts alone
    rows = [{"attack": "pgd20", "purification": False, "accuracy": 50.0, "n": n, "_correct": bare},
            {"attack": "pgd20", "purification": True, "accuracy": 56.0, "n": n, "_correct": pur}]
    assert "helps on pgd20" in report.table6_sentence(rows)
    unpaired = [{k: v for k, v in r.items() if k != "_correct"} for r in rows]
    assert "pgd20 the change is within the uncertainty" in report.table6_sentence(unpaired)


def _rec(attack, tpap, bare=0.0, n=100, clean=None, label=None):
    return {"attack": attack, "acc_tpap": tpap, "acc_bare": bare, "n": n, "acc_tpap_clean": clean,
            "label": label or f"{attack} (20 x 0.003, eps 8/255, n = {n})"}


def test_table7_ranks_only_beyond_the_uncertainty():
    paper = {"FGSM": {"pgd20": 79.0}, "PGD-10": {"pgd20": 42.0}, "CW2": {"pgd20": 30.0}}
    close = report.table7_sentence({"FGSM": [_rec("pgd20", 33.0)], "PGD-5": [_rec("pgd20", 30.0)]}, paper,
                                   {"PGD-5": "PGD-10"})
    assert "no two of them differ beyond the uncertainty" in close and "neither agrees nor differs" in close
    far = report.table7_sentence({"FGSM": [_rec("pgd20", 20.0, n=500)], "PGD-5": [_rec("pgd20", 60.0, n=500)],
                                  "CW2": [_rec("pgd20", 59.0, n=500)]}, paper, {"PGD-5": "PGD-10"})
    assert "PGD-5 above FGSM" in far and "ours differs: PGD-5 above FGSM, CW2 above FGSM" in far
    assert "PGD-5 above CW2" not in far and "60.0 % (55.6-64.2)" in far


def test_table2_differences_carry_intervals():
    import tpap_nb as tp

    cfg = tp.get_profile("smoke")
    recs = [_rec("fgsm", 40.0, 80.0), _rec("pgd20", 70.0, 3.0)]
    star = [_rec("fgsm", 43.0)]
    text = report.table2_differences(cfg, recs, {"tpap": 0.9, "bare": 0.92},
                                     {"clean": 86.25, "fgsm": 61.41, "pgd20": 79.06}, 100, star)
    assert "loses 50.0 points here (95 % CI" in text and "(more here)" in text
    assert "no gain: within the uncertainty (n = 100" in text
    assert "TPAP 70.0 % (95 % CI 60.4-78.1, n = 100)" in text and "79.1 % for TPAP (above our interval)" in text


def test_above_clean_is_flagged_with_its_budget():
    recs = [_rec("aa", 41.0, 0.0, n=1000, clean=31.0,
                 label="aa (100 iterations, APGD-CE, 1 restart, eps 8/255, n = 1000)"),
            _rec("pgd20", 33.0, 0.0, n=1000, clean=31.0),
            _rec("cw2", 90.0, 0.0, n=1000, clean=31.0, label="cw2 (10 iterations, unbounded, n = 1000)")]
    text = report.above_clean_sentence(recs)
    assert "`aa` (eps 8/255): 41.0 %" in text and "`cw2` (unbounded)" in text and "`pgd20`" not in text
    assert "crafted on the bare network" in text and "failed against this pipeline, not that it helps" in text
    assert "cw2 is unbounded minimal-norm" in text
    assert report.above_clean_sentence(recs, clean_tpap=95.0).startswith("Under no attack")
    # the same 10 points on 100 images: not beyond the uncertainty without the pairing
    assert report.above_clean_sentence([_rec("aa", 41.0, clean=31.0)]).startswith("Under no attack")


def test_ablation_rows_carry_verdicts_for_table6(ro_model, test_xy):
    from tests.test_experiments import CFG
    from tpap_nb.experiments import tables

    rows = tables.ablation(ro_model, *test_xy, CFG)
    assert all(len(r["_correct"]) == r["n"] and 100 * r["_correct"].float().mean() == pytest.approx(r["accuracy"])
               for r in rows)
    text = report.table6_sentence(rows, TABLE6)
    assert "helps on pgd20" in text and f"On n = {len(test_xy[1])} test images" in text


def test_run_attacks_records_carry_per_image_verdicts_that_match_their_accuracies(ro_model, test_xy):
    """Tab. 2's comparisons are paired per image only when the records keep each image's verdict."""
    import tpap_nb as tp
    from tpap_nb.evaluate import run_attacks
    from tpap_nb.report.benchmark import above_clean, verdicts_of
    from tpap_nb.stats import unpack_verdicts

    x, y = test_xy
    x, y = x[:40], y[:40]
    rec, = run_attacks(ro_model, x, y, ["fgsm"], 0.15, tp.get_profile("smoke"), progress=False)
    for side, acc in (("bare", rec["acc_bare"]), ("tpap", rec["acc_tpap"]), ("tpap_clean", rec["acc_tpap_clean"])):
        v = unpack_verdicts(rec[f"correct_{side}"])
        assert v.shape == (40,) and 100 * v.mean() == pytest.approx(acc)
        assert (verdicts_of(rec, side) == v).all()
    # a record whose TPAP accuracy sits far above its clean accuracy is flagged, judged on the kept verdicts
    fake = rec | {"acc_tpap": 100.0, "acc_tpap_clean": 50.0, "correct_tpap": tp.stats.pack_verdicts([True] * 40),
                  "correct_tpap_clean": tp.stats.pack_verdicts([True] * 20 + [False] * 20)}
    flagged, = above_clean([fake])
    assert flagged["comparison"]["decided"]
