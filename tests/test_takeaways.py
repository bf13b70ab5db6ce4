"""report.takeaways: the three takeaways (ideas by hand, numbers from the run) and what to expect on a profile
(from its recorded figures), including a profile without a recorded run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpap_nb import config, report
from tpap_nb.stats import wilson


def test_every_notebook_has_three_takeaways_without_typed_numbers():
    assert sorted(report.TAKEAWAYS) == [f"0{i}" for i in range(8)]
    for nb, ideas in report.TAKEAWAYS.items():
        assert len(ideas) == 3
        assert not any("%" in idea for idea in ideas), nb  # no accuracies: those come from the run


def test_takeaways_numbers_match_the_records():
    # 9 of 64 right after purification, 0 of 64 on the bare model: the counts behind the fractions.
    ev = report.on_this_run({"bare model on PGD-20": 0 / 64, "TPAP on PGD-20": 9 / 64}, n=64)
    low, high = wilson(9, 64)
    assert f"TPAP on PGD-20 14.1 % (95 % CI {100 * low:.1f}-{100 * high:.1f}, n = 64)" in ev
    assert "bare model on PGD-20 0.0 % (95 % CI 0.0-5.7, n = 64)" in ev
    lo, hi = wilson(350, 360)  # 97.2 % of 360
    assert report.on_this_run({"clean": 97.2}, n=360, percent=True) == \
        f"On this run: clean 97.2 % (95 % CI {100 * lo:.1f}-{100 * hi:.1f}, n = 360)."
    assert "not measured" in report.on_this_run({"square": None}, n=10)
    text = report.takeaways("00", [ev])
    assert text.startswith("1. An adversarial example") and ev in text
    assert text.count("\n") == 2 and "On this run" not in text.split("\n")[2]  # no evidence: the idea alone
    assert report.on_this_run({"test time, TPAP / plain": 3.934, "square": None}, ratio=True) == \
        "On this run: test time, TPAP / plain 3.93; square not measured."


def test_takeaways_refuse_unknown_notebooks_and_extra_evidence():
    with pytest.raises(ValueError, match="No takeaways for notebook '09'"):
        report.takeaways("09")
    with pytest.raises(ValueError, match="at most one evidence sentence per takeaway"):
        report.takeaways("01", ["a", "b", "c", "d"])


def _figure(folder, name, profile, numbers, settings=None, status=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"figure": f"{name}.png", "profile": profile, "commit": "abc1234",
                                                     "device": "cpu (1 threads)", "date": "2026-11-26T08:00:00",
                                                     "profile_status": status, "settings": settings or {},
                                                     "numbers": numbers}))


def test_expectations_read_the_profiles_recorded_figures(tmp_path):
    _figure(tmp_path, "01_training_curves", "quick",
            {"train_fgsm": 99.17, "train_pgd20": 0.83, "test_pgd20": 0.28, "tpap_pgd20": 82.78}, {"n_eval": 360})
    text = report.expectations("01", "quick", tmp_path)
    assert text.startswith("**What to expect on `quick`.** The recorded run (commit abc1234, cpu (1 thread), "
                           "2026-11-26) found: ")
    lo, hi = wilson(357, 360)  # 99.17 % of 360
    assert f"train FGSM 99.2 % (95 % CI {100 * lo:.1f}-{100 * hi:.1f}, n = 360)" in text
    assert f"TPAP 82.8 % (95 % CI {100 * wilson(298, 360)[0]:.1f}-" in text
    _figure(tmp_path, "07_adaptive_attacks", "quick", {"table": {"TPAP": {"transfer:bare FGSM-RO": 80.0,
                                                                          "worst-case": 0.0}}},
            {"n_adaptive": 100}, status="a guess")
    text = report.expectations("07", "quick", tmp_path)
    lo, hi = wilson(80, 100)
    assert f"TPAP under transfer:bare FGSM-RO 80.0 % (95 % CI {100 * lo:.1f}-{100 * hi:.1f}, n = 100), " \
           "worst-case 0.0 %" in text
    assert "The profile is a guess." in text
    assert "other settings" not in text
    now = config.get_profile("quick") | {"xi": 8 / 255}
    _figure(tmp_path, "02_xi_sweep", "quick", {"records": []}, {"model": "small_cnn", "xi": 0.21, "n_eval": 360})
    text = report.expectations("02", "quick", tmp_path, cfg=now)
    assert "That run used other settings than this one (xi 0.21, now 8/255), so its numbers are a rough guide" in text


def test_expectations_say_when_no_recorded_run_exists(tmp_path):
    text = report.expectations("03", "gpu", tmp_path / "nothing")
    assert "No recorded run of notebook 03 exists for this profile (no 03_*.json in figures/gpu/)" in text
    # A figure another profile made (cifar's old digits tour) is not this profile's record.
    _figure(tmp_path, "00_tour", "quick", {"clean": {"bare model (%)": 97.2, "TPAP (%)": 83.3}})
    text = report.expectations("00", "cifar", tmp_path)
    assert "No recorded run of notebook 00 exists for this profile (00_tour.json was made by `quick`)" in text
    _figure(tmp_path, "02_xi_sweep", "smoke", {"unexpected": 1})
    assert "holds numbers in a form this kit no longer reads" in report.expectations("02", "smoke", tmp_path)


def test_expectations_read_the_tracked_figures():
    text = report.expectations("06", "quick")  # figures/quick/06_cost_ratios.json is tracked
    assert "train time, FGSM-AT / PGD-AT" in text


NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("0*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_says_what_to_expect_and_ends_with_three_takeaways(path):
    cells, nb = _cells(path), path.stem[:2]
    src = ["".join(c["source"]) for c in cells]
    params = next(s for s, c in zip(src, cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    assert all(p in params.split("\n")[0] for p in config.PROFILES), f"{path.name}: the profile line lists " \
                                                                        f"{sorted(config.PROFILES)}"
    expect = next(i for i, s in enumerate(src) if f'report.expectations("{nb}"' in s)
    take = next(i for i, s in enumerate(src) if f'report.takeaways("{nb}"' in s)
    exercises = next(i for i, s in enumerate(src) if s.lstrip().startswith("## Exercises"))
    assert expect < len(src) // 3 and take < exercises, path.name


def test_start_here_lists_every_profile():
    first = "".join(_cells(NOTEBOOKS[0])[0]["source"])
    assert all(f"| `{p}` |" in first for p in config.PROFILES)


def test_on_this_run_tests_two_numbers_on_the_same_images():
    from tpap_nb import report
    far = report.on_this_run({"bare": 0.0, "TPAP": 0.634}, 500, paired=True)
    assert "second minus first: +63.4 points (95 % CI" in far
    near = report.on_this_run({"PGD-AT bare": 37.0, "PGD-AT + TPAP": 31.0}, 200, percent=True, paired=True)
    assert "the two do not differ at n = 200" in near and "points" not in near  # cifar's 03: 6 points on 200
    assert "on the counts alone" in near
    # With the per-image verdicts the same 6 points can be decided: 12 images lost, none gained
    bare = [True] * 74 + [False] * 126
    tpap = [True] * 62 + [False] * 138
    decided = report.on_this_run({"PGD-AT bare": 37.0, "PGD-AT + TPAP": 31.0}, 200, percent=True,
                                 paired=(bare, tpap))
    assert "paired test on the same images, second minus first: -6.0 points" in decided
    assert "paired" not in report.on_this_run({"bare": 0.0, "TPAP": 0.634}, 500)  # only where asked
    assert "paired" not in report.on_this_run({"a": 37.0, "b": None}, 200, percent=True, paired=True)
