"""The README is short, links what it promises, and its numbers are the figures' (tpap_nb/readme.py)."""
import json
import re
import shutil
from pathlib import Path

import pytest

from tpap_nb import config, readme

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_readme_is_read_in_five_minutes():
    assert len(README.read_text()) <= 8000


def test_results_section_is_what_the_figures_json_says():
    """Fails when figures/ changed and `make readme` was not run (or the section was edited by hand)."""
    _, committed, _ = readme.split(README.read_text())
    assert committed == readme.results_section(ROOT / "figures")
    assert readme.update(check=True)


def test_every_link_and_image_exists():
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        assert (ROOT / target).exists(), target


def test_each_profile_has_its_own_figure_folder():
    """Issue 11: regenerating one profile never overwrites another's; only `make run` writes figures/."""
    assert not list((ROOT / "figures").glob("*.png")), "figures belong in figures/<profile>/"
    assert (ROOT / "figures" / readme.DEMO / "01_training_curves.json").exists()
    for sub in (ROOT / "figures").iterdir():
        assert sub.is_dir() and sub.name in config.PROFILES, f"figures/{sub.name} is not a profile's folder"
        for meta in sub.glob("*.json"):
            if meta.name not in ("runtimes.json", "00_tour.json"):  # 00's tour runs digits whatever the profile
                assert json.loads(meta.read_text())["profile"] == sub.name, f"{meta} was made by another profile"
    make = (ROOT / "Makefile").read_text()
    assert "TPAP_FIGURES=figures/$(PROFILE)" in make and "make run PROFILE=cifar" in README.read_text()


def test_the_section_follows_the_numbers(tmp_path):
    figures = tmp_path / "figures"
    shutil.copytree(ROOT / "figures", figures)
    path = figures / readme.DEMO / "01_training_curves.json"
    meta = json.loads(path.read_text())
    meta["numbers"]["tpap_pgd20"] = 12.34
    path.write_text(json.dumps(meta))
    section = readme.results_section(figures)
    assert "PGD-20 12.3 (" in section and section != readme.results_section(ROOT / "figures")
    page = tmp_path / "README.md"
    page.write_text(f"intro\n{readme.START}\nold\n{readme.END}\noutro\n")
    assert not readme.update(page, figures, check=True) and "old" in page.read_text()
    assert not readme.update(page, figures)
    assert readme.update(page, figures, check=True) and page.read_text().endswith("outro\n")
    (figures / readme.DEMO / "07_adaptive_attacks.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"make run PROFILE={readme.DEMO}"):
        readme.results_section(figures)


def test_a_cifar_part_comes_first_once_its_figures_exist(tmp_path):
    figures = tmp_path / "figures"
    shutil.copytree(ROOT / "figures" / readme.DEMO, figures / readme.DEMO)
    first = next(iter(readme.SHOWN_FIRST))
    alone = readme.results_section(figures)
    assert f"### `{first}`" not in alone
    (figures / first).mkdir()
    shutil.copy(figures / readme.DEMO / "01_training_curves.json", figures / first)  # a run still going
    assert readme.results_section(figures) == alone
    shutil.rmtree(figures / first)
    shutil.copytree(figures / readme.DEMO, figures / first)
    section = readme.results_section(figures)
    assert section.index(f"### `{first}`") < section.index(f"### `{readme.DEMO}`")
    assert f"(figures/{first}/01_training_curves.png)" in section
    demo = section[section.index(f"### `{readme.DEMO}`"):]  # below it, the demo in brief: no figures, no table
    assert "![" not in demo and "| paper TPAP |" not in demo and "**Robust overfitting" in demo
    assert len(section) < 1.6 * len(alone)  # two profiles still fit the README's length
    tables = readme.tables_section(figures)
    assert tables.index(f"## `{first}`") < tables.index(f"## `{readme.DEMO}`") and "| ours TPAP* |" in tables


def test_the_spread_is_rendered_from_seed_records(tmp_path):
    settings = json.loads((ROOT / "figures" / readme.DEMO / "03_attack_heatmap.json").read_text())["settings"]
    rec = {"split": "test", "xi": settings["xi"], "n": 400, "commit": "abc", "threads": 2,
           "clean_bn_forward": False, "bare_clean": 90.0, "bare_fgsm": 93.0, "tpap_clean": 91.0, "bare_pgd20": 1.0,
           "tpap_pgd20": 80.0}
    folder = tmp_path / "docs" / "measurements"
    folder.mkdir(parents=True)
    lines = [rec | {"seed": 0}, rec | {"seed": 1, "bare_pgd20": 7.25, "tpap_pgd20": 70.0, "bare_fgsm": 50.0},
             rec | {"seed": 2, "tpap_pgd20": 1.0, "xi": settings["xi"] * 2},  # another xi: not this setting
             rec | {"seed": 3, "train_eps": settings["eps"] * 2}]  # another training eps: not this setting
    records = folder / readme.SEED_RECORDS[readme.DEMO]
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    text = readme.seed_spread(settings, folder)
    assert "seeds 0, 1 " in text and "PGD-20 4.1 (1.0-7.2) %" in text and "PGD-20 75.0 (70.0-80.0) %" in text
    assert "commit abc, 2 threads" in text and f"docs/measurements/{records.name}" in text
    assert "400 test images each, 95 % intervals ±4.9 points at most" in text  # Wilson at 200 of 400
    assert "1 of 2 end robustly overfitted" in text  # seed 1: FGSM 50 % against clean 90 %
    records.write_text(json.dumps(lines[0]) + "\n")
    assert readme.seed_spread(settings, folder) == ""  # one seed is no spread
