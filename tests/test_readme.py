"""The README is short, links what it promises, and its numbers are the figures' (tpap_nb/readme.py)."""
import json
import re
import shutil
from pathlib import Path

import pytest

from tpap_nb import config, landing, readme

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
            if meta.name != "runtimes.json":
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


def _not_overfitted(folder: Path) -> None:
    """Make a profile's 01 figure JSON say FGSM-AT did not robustly overfit (bare PGD-20 well above 10 %)."""
    path = folder / "01_training_curves.json"
    meta = json.loads(path.read_text())
    meta["numbers"] |= {"test_clean": 39.6, "test_fgsm": 24.8, "test_pgd20": 24.4, "tpap_pgd20": 23.2}
    path.write_text(json.dumps(meta))


def test_a_cifar_part_comes_first_once_its_figures_exist(tmp_path):
    figures = tmp_path / "figures"
    shutil.copytree(ROOT / "figures" / readme.DEMO, figures / readme.DEMO)
    first = next(iter(readme.SHOWN_FIRST))
    alone = readme.results_section(figures)
    assert f"`{first}`" not in alone
    (figures / first).mkdir()
    shutil.copy(figures / readme.DEMO / "01_training_curves.json", figures / first)  # a run still going
    assert readme.results_section(figures) == alone
    shutil.rmtree(figures / first)
    shutil.copytree(figures / readme.DEMO, figures / first)
    section = readme.results_section(figures)  # both overfit: CIFAR-10 first, in full; the demo in brief
    assert section.index(f"### `{first}`") < section.index(f"### `{readme.DEMO}`") < section.index("### Under adaptive")
    assert f"(figures/{first}/01_training_curves.png)" in section
    demo = section[section.index(f"### `{readme.DEMO}`"):section.index("### Under adaptive")]
    assert "![training curves]" in demo and "| paper TPAP |" not in demo and "**Robust overfitting" in demo
    adaptive = section[section.index("### Under adaptive"):]
    assert adaptive.index(f"`{first}`") < adaptive.index(f"`{readme.DEMO}`") and adaptive.count("![adaptive]") == 1
    before, _, after = readme.split(README.read_text())
    assert len(f"{before}{readme.START}\n{section}\n{readme.END}{after}") <= 8000  # both fit the README's length
    tables = readme.tables_section(figures)
    assert tables.index(f"## `{first}`") < tables.index(f"## `{readme.DEMO}`") and "| ours TPAP* |" in tables


def test_profiles_are_ordered_by_whether_they_overfit(tmp_path):
    """Overfitting profiles first (with their curves), then the adaptive verdict, then one sentence for each
    profile that did not overfit, with its numbers."""
    figures = tmp_path / "figures"
    first = next(iter(readme.SHOWN_FIRST))
    for p in (readme.DEMO, first):
        shutil.copytree(ROOT / "figures" / readme.DEMO, figures / p)
    _not_overfitted(figures / first)
    section = readme.results_section(figures)
    heads = re.findall(r"^### (.*)$", section, re.M)
    assert heads == [f"`{readme.DEMO}` (digits, offline): FGSM-AT robustly overfits",
                     "Under adaptive attacks (beyond the paper)", "Where FGSM-AT did not overfit"]
    last = section.split("### Where FGSM-AT did not overfit", 1)[1].strip()
    assert last.startswith(f"**`{first}` (") and last.count(". ") <= 2 and "![" not in last  # its one sentence
    assert "PGD-20 stays at 24.4 % (" in last and "above 10 %" in last and "below clean 39.6 % (" in last
    assert f"(figures/{readme.DEMO}/01_training_curves.png)" in section
    assert readme.overfits({"test_clean": 90, "test_fgsm": 80, "test_pgd20": 10})
    assert not readme.overfits({"test_clean": 90, "test_fgsm": 79.9, "test_pgd20": 1})
    assert not readme.overfits({"test_clean": 90, "test_fgsm": 95, "test_pgd20": 10.1})


def test_the_readme_reads_as_english():
    text = README.read_text()
    _, section, _ = readme.split(text)
    assert not re.search(r"\b1 threads\b", text) and "issue 13" not in text.lower()
    assert "commit" not in section  # the figures' JSON and the executed copies name the commit
    assert readme._r(0.03, {"eps": 8 / 255}) == "7.65/255" and readme._r(8 / 255, {"eps": 8 / 255}) == "8/255"
    assert readme._r(0.21, {"eps": 0.3}) == "0.21"
    for radius in re.findall(r"(?:eps|xi) = ([\d./]+)", section.split("### `quick`")[0]):
        assert radius.endswith("/255") or "cifar" not in section.split("### `quick`")[0], radius


def test_every_accuracy_has_its_interval_or_its_n():
    good = ("Bare PGD-20 is 24.4 % (21-28) and clean 39.6 (35-44); the rule is PGD-20 <= 10 %, above 10 %.\n\n"
            "On 500 test images bare PGD-20 is 24.4 % and clean 39.6.\n\n"
            "| ours TPAP | 92.0 | 5.0 |\n\n95 % intervals throughout; eps = 0.3, xi = 0.21, 0.59x the time.")
    assert landing.unqualified(good) == []
    bad = "Under the paper's protocol TPAP keeps 80.0 % (clean 93.0 %).\n\nBare PGD-20 is 24.4 and FGSM 24.8 (21-29)."
    assert landing.unqualified(bad) == ["80.0", "93.0", "24.4"]
    _, section, _ = readme.split(README.read_text())
    assert landing.unqualified(section) == []
    assert landing.unqualified(readme.results_section(ROOT / "figures")) == []


def test_figure_json_accuracies_carry_their_n():
    """The figures' JSON the README reads its accuracies from say on how many images each was measured."""
    needs = {"01_training_curves": "n_eval", "02_xi_sweep": "n_eval", "03_attack_heatmap": "n_attack",
             "07_adaptive_attacks": "n_adaptive"}
    for folder in (ROOT / "figures").iterdir():
        for name, key in needs.items():
            path = folder / f"{name}.json"
            if path.exists():
                n = json.loads(path.read_text())["settings"].get(key)
                assert isinstance(n, int) and n > 0, f"{path} says no {key}"


def test_what_to_run_where_is_the_records(tmp_path):
    _, table, _ = readme.split(README.read_text(), landing.START, landing.END)
    assert table == landing.runtimes_table(ROOT / "figures")
    figures = tmp_path / "figures"
    secs = {f"notebooks/{p.name}": {"seconds": 60.0 * (i + 1), "device": "cpu", "threads": 1}
            for i, p in enumerate(runner_paths())}
    (figures / "quick").mkdir(parents=True)
    (figures / "quick" / "runtimes.json").write_text(json.dumps({"quick": secs}))
    (figures / "gpu").mkdir()
    gpu = {k: v | {"device": "NVIDIA H100", "seconds": 30.0} for k, v in secs.items()}
    (figures / "gpu" / "runtimes.json").write_text(json.dumps({"gpu": gpu}))
    text = landing.runtimes_table(figures)
    quick = next(line for line in text.splitlines() if line.startswith("| `quick`"))
    cells = [c.strip() for c in quick.strip("|").split("|")]
    assert cells[2:10] == ["1.0", "2.0", "3.0", "4.0", "5.0", "6.0", "7.0", "8.0"] and cells[10] == "36"
    assert cells[11] == "14" and cells[12] == "not measured"  # 00 -> 01 -> 02 -> 07
    assert "digits" in cells[1] and "1 torch thread" in text and "1 threads" not in text
    gpu_row = next(line for line in text.splitlines() if line.startswith("| `gpu`"))
    assert "4.0 (8 run, NVIDIA H100)" in gpu_row and "CIFAR-10" in gpu_row and "00 → 01 → 02 → 07" in text


def runner_paths():
    from tpap_nb import runner

    return runner.notebook_paths()


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
    assert "(2 threads; " in text and "commit" not in text and f"docs/measurements/{records.name}" in text
    assert "400 test images each, 95 % intervals ±4.9 points at most" in text  # Wilson at 200 of 400
    assert "1 of 2 end robustly overfitted" in text  # seed 1: FGSM 50 % against clean 90 %
    records.write_text(json.dumps(lines[0]) + "\n")
    assert readme.seed_spread(settings, folder) == ""  # one seed is no spread


def test_the_shipped_network_is_reported_on_its_test_images_with_intervals():
    text = readme.shipped_sentence("cifar")  # checkpoints/*.json: measured on 1,000 test images when exported
    assert "1,000 test images" in text and "PGD-20 0.0 (0-0.4)" in text  # a bound below 1 keeps its decimal
    assert readme.shipped_sentence("quick") == ""  # nothing shipped: no sentence
