"""tpap_nb.stats: Wilson intervals, the paired comparison on the same images, and their words, against references."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from tpap_nb import stats


def table(both, a_only, b_only, neither):
    """Per-image verdicts (a, b) with the given 2x2 counts."""
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return np.array(a), np.array(b)


# ---------------------------------------------------------------- Wilson
def test_wilson_matches_the_formula_by_hand():
    # 426 of 1,000, z = 1.959964: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p q / n + z^2 / 4n^2) / (...)
    low, high = stats.wilson(426, 1000)
    assert low == pytest.approx(0.395692, abs=1e-6) and high == pytest.approx(0.456874, abs=1e-6)
    # Wilson 1927 / Newcombe 1998 (independent proportions), 81 of 263: 0.2553 to 0.3662
    assert stats.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (9, 10), (10, 10), (3, 1000), (500, 1000)])
def test_wilson_contains_the_estimate_within_zero_one(k, n):
    low, high = stats.wilson(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert low < high


def test_wilson_at_the_ends_and_as_n_grows():
    assert stats.wilson(0, 20)[0] == 0.0 and stats.wilson(20, 20)[1] == 1.0
    assert stats.wilson(0, 20)[1] == pytest.approx(1.959964 ** 2 / (20 + 1.959964 ** 2), abs=1e-6)  # z^2 / (n + z^2)
    widths = [np.subtract(*stats.wilson(n // 2, n)[::-1]) for n in (10, 100, 1000, 10000)]
    assert all(w1 > w2 for w1, w2 in zip(widths, widths[1:]))
    assert np.subtract(*stats.wilson(50, 100, level=0.99)[::-1]) > widths[1]  # a higher level, a wider interval


@pytest.mark.parametrize("k,n,level", [(-1, 10, 0.95), (11, 10, 0.95), (0, 0, 0.95), (1, 10, 95)])
def test_wilson_refuses_impossible_counts_and_levels(k, n, level):
    with pytest.raises(ValueError, match="n >= 1|level"):
        stats.wilson(k, n, level)


# ---------------------------------------------------------------- paired
def test_paired_matches_the_published_newcombe_intervals():
    # Fagerland, Lydersen & Laake (2017), Ch. 8, Cavo et al. 2012: 59, 6 / 16, 80 -> -0.0621 (-0.1186 to -0.0046)
    r = stats.paired(*table(59, 6, 16, 80))
    assert (r["diff"], r["low"], r["high"]) == pytest.approx((-6.21, -11.86, -0.46), abs=0.01)
    assert (r["a_only"], r["b_only"], r["n"]) == (6, 16, 161)
    assert r["high"] < 0 and r["p_mcnemar"] > 0.05 and not r["decided"]  # decided needs both to agree
    # Newcombe 1998, Table II, example (a): 36, 12 / 2, 0 -> 0.0569 to 0.3404 (method 10)
    r = stats.paired(*table(36, 12, 2, 0))
    assert (r["low"], r["high"]) == pytest.approx((5.69, 34.04), abs=0.01)


@pytest.mark.parametrize("counts", [(59, 6, 16, 80), (36, 12, 2, 0), (5, 0, 0, 5), (0, 3, 0, 0), (40, 1, 9, 50),
                                    (200, 30, 31, 739)])
def test_mcnemar_p_is_the_exact_binomial_test(counts):
    r = stats.paired(*table(*counts))
    b, c = counts[1], counts[2]
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert r["p_mcnemar"] == pytest.approx(expected, rel=1e-12)


def test_paired_on_constructed_cases():
    same = stats.paired(*table(40, 0, 0, 60))  # identical verdicts
    assert same["diff"] == 0 and same["low"] <= 0 <= same["high"] and not same["decided"]
    assert same["p_mcnemar"] == 1.0
    balanced = stats.paired(*table(400, 50, 50, 500))  # many discordant, balanced
    assert balanced["diff"] == 0 and not balanced["decided"]
    clear = stats.paired(*table(500, 80, 5, 415))  # a right where b is wrong, 16 times as often
    assert clear["diff"] == pytest.approx(7.5) and clear["low"] > 0 and clear["decided"]
    assert clear["acc_a"] == pytest.approx(58.0) and clear["acc_b"] == pytest.approx(50.5)
    flipped = stats.paired(*table(500, 5, 80, 415))
    assert flipped["diff"] == pytest.approx(-7.5) and flipped["high"] < 0 and flipped["decided"]
    assert (flipped["low"], flipped["high"]) == pytest.approx((-clear["high"], -clear["low"]))  # symmetric
    tiny = stats.paired(*table(0, 3, 0, 0))  # 3 of 3 against 0 of 3: the interval excludes 0, McNemar p = 0.25
    assert tiny["low"] > 0 and tiny["p_mcnemar"] == 0.25 and not tiny["decided"]
    few = stats.paired(*table(60, 4, 1, 35))  # 3 images apart in 100: not decided
    assert not few["decided"] and few["low"] < 0 < few["high"]
    for r in (same, balanced, clear, flipped, few):
        assert -100 <= r["low"] <= r["diff"] <= r["high"] <= 100


def test_paired_narrows_with_n_and_takes_tensors():
    small, large = stats.paired(*table(50, 10, 5, 35)), stats.paired(*table(500, 100, 50, 350))
    assert small["diff"] == pytest.approx(large["diff"])
    assert large["high"] - large["low"] < small["high"] - small["low"]
    a, b = table(50, 10, 5, 35)
    assert stats.paired(torch.tensor(a), torch.tensor(b)) == small
    assert stats.paired(a.tolist(), b.astype(int)) == small
    with pytest.raises(ValueError, match="same images"):
        stats.paired(a, b[:-1])


# ---------------------------------------------------------------- words
def test_pct_ci_reads_as_the_issue_asks():
    assert stats.pct_ci(426, 1000) == "42.6 % (95 % CI 39.6-45.7, n = 1,000)"
    assert stats.pct_ci(426, 1000, short=True) == "42.6 % (39.6-45.7)"
    assert stats.pct_ci(0, 64) == "0.0 % (95 % CI 0.0-5.7, n = 64)"
    assert stats.pct_ci(64, 64, short=True).startswith("100.0 % (94.3-100.0)")


def test_compare_sentence_says_above_only_when_decided():
    a, b = table(500, 80, 5, 415)
    text = stats.compare_sentence(a, b, "TPAP", "the bare model")
    assert text.startswith("TPAP above the bare model (58.0 % vs 50.5 %, +7.5 points (95 % CI ")
    assert "n = 1,000" in text and "McNemar p = " in text
    assert stats.compare_sentence(b, a, "TPAP", "the bare model").startswith("TPAP below the bare model")
    a, b = table(60, 4, 1, 35)
    text = stats.compare_sentence(a, b, "TPAP", "the bare model")
    assert text.startswith("TPAP and the bare model do not differ at n = 100 (64.0 % vs 61.0 %, +3.0 points")
    assert "above" not in text and "below" not in text
    assert math.isclose(stats.paired(a, b)["diff"], 3.0)
