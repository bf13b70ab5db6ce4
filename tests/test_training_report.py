"""The sentences of notebooks 00 and 01 (tpap_nb.report.training) say what the numbers say."""
import pytest

import tpap_nb as tp
from tpap_nb import report
from tpap_nb.config import PROFILES
from tpap_nb.paper import TABLE6


def _h(epoch, clean, fgsm, pgd, test_clean=0.9, test_fgsm=0.9, test_pgd=0.01, tpap_clean=0.88, tpap_pgd=0.6):
    return {"epoch": epoch, "train_clean": clean, "train_fgsm": fgsm, "train_pgd20": pgd, "test_clean": test_clean,
            "test_fgsm": test_fgsm, "test_pgd20": test_pgd, "tpap_clean": tpap_clean, "tpap_pgd20": tpap_pgd}


def test_tour_verdict_reads_both_rows():
    acc = {"clean": {"bare": 0.703, "tpap": 0.575}, "PGD-20": {"bare": 0.014, "tpap": 0.256}}
    text = report.tour_verdict(acc, 1000)
    assert "1000 test images" in text and "70.3 %" in text and "1.4 %" in text
    assert "clean accuracy down by 12.8 points" in text and "PGD-20 accuracy up by 24.2 points" in text
    assert "McNemar p" in text  # a decided change carries its paired interval
    assert "gives back 35 %" in text  # 24.2 of the 68.9 points the attack took
    assert "gains more under attack than it costs" in text
    costly = {"clean": {"bare": 0.9, "tpap": 0.6}, "PGD-20": {"bare": 0.1, "tpap": 0.2}}
    assert "gains less under attack than it costs" in report.tour_verdict(costly, 1000)


def test_tour_verdict_calls_a_change_only_when_the_paired_test_decides():
    small = {"clean": {"bare": 0.9, "tpap": 0.8}, "PGD-20": {"bare": 0.1, "tpap": 0.2}}  # 9 -> 8 and 1 -> 2 of 10
    text = report.tour_verdict(small, 10)
    assert "leaves clean accuracy where it was (90.0 % → 80.0 %, no difference at n = 10)" in text
    assert "does not undo the PGD-20 attack" in text and "gives back" not in text
    big = report.tour_verdict(small, 1000)  # the same accuracies on 1,000 images are decided
    assert "takes clean accuracy down by 10.0 points" in big and "gains" in big


def test_tour_verdict_says_when_purification_does_not_help():
    acc = {"clean": {"bare": 0.9, "tpap": 0.9}, "PGD-5": {"bare": 0.1, "tpap": 0.05}}
    text = report.tour_verdict(acc, 100, "PGD-5")
    assert "leaves clean accuracy where it was (90.0 % → 90.0 %" in text
    assert "does not undo the PGD-5 attack" in text and "gives back" not in text
    assert "costs no clean accuracy" not in text  # nothing is weighed when nothing was given back
    with pytest.raises(ValueError, match="PGD-20"):
        report.tour_verdict(acc, 100)  # the attack's row is named by the caller


def test_tour_verdict_flags_tpap_above_the_clean_accuracy():
    acc = {"clean": {"bare": 0.488, "tpap": 0.486}, "PGD-20": {"bare": 0.0, "tpap": 0.634}}  # cifar's tour, n = 500
    text = report.tour_verdict(acc, 500)
    assert "ends above the bare model's own clean accuracy (63.4 % against 48.8 %)" in text
    assert "gives back" not in text and "costs no clean accuracy that 500 images can detect" in text
    level = {"clean": {"bare": 0.488, "tpap": 0.486}, "PGD-20": {"bare": 0.0, "tpap": 0.49}}
    assert "ends above" not in report.tour_verdict(level, 500) and "gives back 100 %" in report.tour_verdict(level, 500)


def test_curves_verdict_tells_collapse_from_not_learning():
    collapsed = [_h(1, 0.6, 0.5, 0.3), {"epoch": 2}, _h(3, 0.93, 0.99, 0.01)]
    text = report.curves_verdict(collapsed)
    assert "between epoch 1 and epoch 3" in text and "it collapsed" in text and "98.0 points above" in text
    assert "PGD-20 accuracy up by 59.0 points" in text
    untrained = [_h(1, 0.2, 0.09, 0.09)]
    text = report.curves_verdict(untrained)
    assert "has not learned the task yet" in text and "collapsed, as" not in text and "are level" in text
    leaking = [_h(1, 0.16, 0.95, 0.0)]  # the CIFAR-10 trial at batch 32: FGSM 95 %, clean 16 %
    assert "has not learned the task yet" in report.curves_verdict(leaking)
    cifar = [_h(16, 0.48, 0.97, 0.0)]  # the cifar profile's shipped network: 48 % clean on ten classes
    assert "it collapsed, as in the paper's Fig. 4" in report.curves_verdict(cifar)
    robust = [_h(1, 0.8, 0.6, 0.4)]
    assert "did not collapse" in report.curves_verdict(robust, "PGD-20")
    with pytest.raises(ValueError, match="no evaluated epoch"):
        report.curves_verdict([{"epoch": 1}])


def test_overfitting_verdict_follows_the_test():
    passed = tp.robust_overfitting_test([_h(5, 0.93, 0.95, 0.05)])
    text = report.overfitting_verdict(passed)
    assert passed["robust_overfit"] and "epoch 5" in text and "passes all 4 criteria" in text
    assert "train FGSM 95.0 %" in text and "train PGD-20 5.0 %" in text
    failed = tp.robust_overfitting_test([_h(7, 0.8, 0.5, 0.3, test_fgsm=0.7)])
    text = report.overfitting_verdict(failed)
    assert not failed["robust_overfit"] and "fails 2 of the 4 criteria" in text
    assert '"train FGSM acc > 90%" fails (50.0 %)' in text and '"train PGD-20 acc < 10%" fails (30.0 %)' in text
    assert "test FGSM acc >= 50%\" fails" not in text and "not an FGSM-RO network" in text
    low_clean = tp.robust_overfitting_test([_h(16, 0.48, 0.97, 0.0, test_clean=0.454, test_fgsm=0.954)])
    text = report.overfitting_verdict(low_clean)  # the cifar profile: only clean accuracy misses the 50 % line
    assert "fails 1 of the 4 criteria" in text and "The overfitting itself is there" in text
    assert "this kit's reading" in text and "not an FGSM-RO network" not in text


def test_paper_pattern_both_ways():
    paper = TABLE6["without purification"]
    same = report.paper_pattern({"clean": 89.7, "fgsm": 92.5, "pgd20": 0.3}, paper)
    assert "94.41 %" in same and "The pattern is the paper's" in same
    other = report.paper_pattern({"clean": 90.0, "fgsm": 60.0, "pgd20": 40.0}, paper)
    assert "FGSM accuracy is below clean accuracy and PGD-20 accuracy is not below 10 %" in other


def test_paper_claim_and_recipe_come_from_the_tables():
    claim = report.paper_claim(TABLE6)
    assert f"{TABLE6['with purification']['pgd20']:g} %" in claim and "Tab. 6" in claim
    paper = report.recipe_sentence(PROFILES["paper"], "The paper")
    assert "75, 90, 140" in paper and "eps = 8/255" in paper and "batch 128" in paper
    short = report.recipe_sentence(PROFILES["smoke"] | {"milestones": (5,)})
    assert "none within the run" in short and "eps = 0.3" in short
