"""The shared words of every result sentence (tpap_nb.report.words): the facts a sentence states are those of the
verdicts it was given, counted here independently."""
from __future__ import annotations

import random
import re

import pytest
import torch

from tpap_nb import report


def _count(adv, pur, clean=None):
    fooled = [i for i, a in enumerate(adv) if not a]
    return {"n": len(adv), "fooled": len(fooled), "recovered": sum(1 for i in fooled if pur[i]),
            "broken": sum(1 for i, a in enumerate(adv) if a and not pur[i]), "right_after": sum(map(bool, pur)),
            "clean_right": None if clean is None else sum(map(bool, clean))}


@pytest.mark.parametrize("seed", range(6))
def test_recovered_sentence_states_the_counts_of_its_verdicts(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 12)
    adv, pur, clean = ([rng.random() < 0.5 for _ in range(n)] for _ in range(3))
    want = _count(adv, pur, clean)
    assert report.recovered_counts(adv, pur) == {k: want[k] for k in ("n", "fooled", "recovered", "broken")}
    assert report.recovered_counts(torch.tensor(adv), torch.tensor(pur)) == report.recovered_counts(adv, pur)
    text = report.recovered_sentence(adv, pur, "PGD-7", seed=seed)
    assert text.startswith(f"Of the {n} examples shown (drawn with seed {seed}), ")
    assert f"PGD-7 leaves the bare model wrong on {want['fooled']}" in text
    assert f"{want['right_after']} of {n} are classified correctly after purification" in text
    if want["fooled"]:
        assert f"purification recovered {want['recovered']} of those {want['fooled']}" in text
    else:
        assert "recovered" not in text
    assert (f"turned {want['broken']} that the bare model had right into errors" in text) == (want["broken"] > 0)
    with_clean = report.recovered_sentence(adv, pur, correct_clean=clean, correct_clean_pur=pur)
    assert f"the bare model gets {want['clean_right']} right on the clean image and {n - want['fooled']}" in with_clean
    assert re.search(rf"it is right on {want['clean_right']} before and {want['right_after']} after", with_clean)
    title = report.recovered_title(adv, pur)
    assert title == f"purification recovered {want['recovered']} of the {want['fooled']} wrong after the attack"


def test_recovered_sentence_refuses_verdicts_of_different_lengths():
    with pytest.raises(ValueError, match="length"):
        report.recovered_sentence([True], [True, False])
    with pytest.raises(ValueError, match="correct_clean has 2 verdicts, not 1"):
        report.recovered_sentence([True], [True], correct_clean=[True, False])
    with pytest.raises(ValueError, match="at least one"):
        report.recovered_sentence([], [])


def test_one_way_to_write_numbers_and_radii():
    assert report.pct(0.934) == report.percent(93.4) == "93.4 %"
    assert report.points(-0.123) == "12.3 points"
    assert report.radius(8 / 255) == "8/255" and report.radius(0.3) == "0.3"
    assert report.radius(0.6) == "0.6" and report.radius(0) == "0" and report.radius(12 / 255) == "12/255"
    assert report.join(["a"]) == "a" and report.join(["a", "b", "c"]) == "a, b and c"
    assert report.change(10.0, 13.1) == "rises by 3.1 points" and report.change(10.0, 10.5) == "stays level"
    from tpap_nb.attacks import registry

    assert report.radius is registry.radius  # one implementation, used by labels and sentences alike


def test_tour_title_counts_fooled_recovered_and_broken():
    clean = [True, True, True, True, False, True]
    adv = [False, False, True, True, False, False]
    pur = [True, False, False, True, True, True]
    assert report.tour_counts(clean, adv, pur) == {"n": 6, "fooled": 3, "recovered": 2, "broken": 1}
    assert report.tour_title(clean, adv, pur) == ("PGD-20 fooled 3 of 6; purification recovered 2 of them and "
                                                  "broke 1 clean-correct one")
    assert report.tour_title([True], [True], [True], "PGD-5").endswith("broke 0 clean-correct ones")
    with pytest.raises(ValueError, match="one verdict per example"):
        report.tour_counts([True], [True, False], [True])


def test_pgd_at_label_names_the_pgd_at_that_ran():
    assert report.pgd_at_label(3) == "PGD-3-AT here, PGD-10-AT in the paper"
    assert report.pgd_at_label(10) == "PGD-10-AT, as in the paper"
    assert report.pgd_at_name() == "PGD-10-AT" and report.pgd_at_name(5) == "PGD-5-AT"
