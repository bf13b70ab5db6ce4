"""The README is short, links what it promises, and its numbers are the figures' (tpap_nb/readme.py)."""
import json
import re
import shutil
from pathlib import Path

import pytest

from tpap_nb import readme

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


def test_the_section_follows_the_numbers(tmp_path):
    figures = tmp_path / "figures"
    shutil.copytree(ROOT / "figures", figures)
    path = figures / "01_training_curves.json"
    meta = json.loads(path.read_text())
    meta["numbers"]["tpap_pgd20"] = 12.34
    path.write_text(json.dumps(meta))
    section = readme.results_section(figures)
    assert "PGD-20 12.3 %." in section and section != readme.results_section(ROOT / "figures")
    page = tmp_path / "README.md"
    page.write_text(f"intro\n{readme.START}\nold\n{readme.END}\noutro\n")
    assert not readme.update(page, figures, check=True) and "old" in page.read_text()
    assert not readme.update(page, figures)
    assert readme.update(page, figures, check=True) and page.read_text().endswith("outro\n")
    (figures / "07_adaptive_attacks.json").unlink()
    with pytest.raises(FileNotFoundError, match="make run"):
        readme.results_section(figures)
