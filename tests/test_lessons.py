"""The notebooks as a course (issue 13): no hand-typed result numbers in prose, exercises that close every lesson,
worked solutions in solutions/ (not in the package), and run times stamped from the last recorded run."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tpap_nb import runner

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _cells(path: Path, kind: str = "markdown") -> list[tuple[int, str]]:
    nb = json.loads(path.read_text())
    return [(i, "".join(c["source"])) for i, c in enumerate(nb["cells"]) if c["cell_type"] == kind]


# ---------------------------------------------------------------- hand-typed result numbers
# Not prose a person typed: generated blocks and code. Removed before anything is looked at.
GENERATED = [
    re.compile(re.escape(runner.RUNTIME_START) + ".*?" + re.escape(runner.RUNTIME_END), re.S),  # the stamp
    re.compile(re.escape(runner.EXERCISE_START) + ".*?" + re.escape(runner.EXERCISE_END), re.S),  # exercises' time
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"```.*?```", re.S),
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"https?://\S+"),
]
CODE = re.compile(r"`[^`\n]*`")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
# Always a result, even inside a formula: arithmetic with its answer typed ("10 x 2 + 3 = 23", "PGD-10 = 23"),
# a percentage written in LaTeX.
RESULT = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:[-+*/×]|\\times|\\cdot)\s*)+\d+(?:\.\d+)?\s*=\s*\d+(?:\.\d+)?"
                    r"|\b[A-Za-z]+-\d+\s*=\s*\d+(?![\d.]|\s*(?:[x×]|steps?\b))"
                    r"|\d+(?:\.\d+)?\s*\\%")
# The allowlist: numbers that are references, names, settings or definitions, not results. Keep it small.
ALLOWED = {
    "reference": r"\b(?:Eqs?|Tabs?|Table|Figs?|Figure|Sec|Section|Alg|Algorithm|App|Appendix)\.?\s*\d+(?:\.\d+)*"
                 r"(?:\s*(?:[-–/,]|and)\s*\d+(?:\.\d+)*)*",  # Eq. 7, Tab. 2, Fig. 1/4, Sec. 4.3, Algorithm 1
    "version": r"\b\d+\.\d+\.\d+\b|\b(?:Python|PyTorch|torch|torchvision|torchattacks|advertorch|numpy|v)\s?"
               r"\d+(?:\.\d+)+",  # advertorch 0.2.3, torch 2.14
    "fraction": r"\b\d+\s*/\s*\d+\b",  # 8/255, 16/255
    "name": r"\b[A-Za-z][A-Za-z0-9]*-\d+(?:-\d+)*\b",  # PGD-20, WRN-34-10, ResNet-18, CIFAR-10
    "size": r"\b\d+\s*[×x]\s*\d+(?:\.\d+)?\b",  # 8×8 pixels, a 2×2 map, 20 x 0.0287 (steps x step)
    # lr 0.01, x0.1 (a factor), `object_threshold` to 0.5
    "setting": r"(?:\b(?:lr|learning rate|momentum|weight decay|eps|epsilon|xi|alpha|tau|beta|threshold)"
               r"\s*(?:=|:|of)?|(?<![A-Za-z])[×x]|CODE\s*(?:=|to|of)?)\s*\d+\.\d+",
    "threshold": r"(?:above|below|over|under|at least|at most|less than|more than|<=|>=|<|>|≤|≥)\s*"
                 r"\d+(?:\.\d+)?\s*%",  # Sec. 3.2's definition: above 90 % ... below 10 %
    "extreme": r"\b(?:0|100)\s*%",  # what to look for: "near 100 %", "towards 0 %"
}
ALLOWED_RE = re.compile("|".join(f"(?:{p})" for p in ALLOWED.values()))
# What is flagged: percentages, decimals, ratios ("2.8x", "4.6×") and durations ("~2 min", "66 s/epoch").
NUMBER = re.compile(r"\d+(?:[.,]\d+)?\s*(?:%|percent\b)"
                    r"|\b\d+\.\d+\b"
                    r"|\b\d+(?:\.\d+)?\s?[x×](?![\w\d])"
                    r"|\b\d+(?:\.\d+)?\s*(?:ms|s|sec|min|h|seconds?|minutes?|hours?)\b(?:\s*/\s*epoch)?")


def hand_typed_numbers(text: str) -> list[str]:
    """Snippets of `text` (a markdown cell) that state a number a person typed: a result, not a setting."""
    for pattern in GENERATED:
        text = pattern.sub(" ", text)
    text = CODE.sub("CODE", text)
    found = [m.group(0) for m in RESULT.finditer(text)]
    text = RESULT.sub(" ", text)
    formulas = MATH.findall(text)
    text = MATH.sub(" ", text)
    found += [m.group(0) for f in formulas for m in RESULT.finditer(f)]
    text = ALLOWED_RE.sub(" ", text)
    return found + [m.group(0).strip() for m in NUMBER.finditer(text)]


@pytest.mark.parametrize("sentence", [
    "PGD-20 accuracy going from 0.18 % to 79.06 % with clean accuracy 86.33 % → 86.25 % (Tab. 6).",  # 00
    "| `01_train_fgsm_ro` | Algorithm 1 | ~2 min | ~2.75 h on a 2080 Ti (Tab. 5: 66 s/epoch) |",  # 00
    "(`test_min`, 50 % by default); the paper's ResNet-18 has 86 % clean and 94 % FGSM test accuracy.",  # 01
    "one input-only backward, one classifying forward: about 3× the cost of plain inference.",  # 02
    "so PGD-10 training is $10 \\times 2 + 3 = 23$, FGSM-AT $2 + 3 = 5$ and TPAP's test $1 + 1 + 1 = 3$",  # 06
    "PGD-10 = 23 forward passes",  # issue 13's words for 06
    "against the kit's own 2.8-4.6x", "TPAP reaches 66.4% here", "a silhouette of 0.35",
    "TPAP keeps $79.06\\%$",
])
def test_the_check_catches_typed_results(sentence):
    assert hand_typed_numbers(sentence), sentence


@pytest.mark.parametrize("sentence", [
    "Algorithm 1 and Eq. 3-4, Sec. 4.3 and Sec. 4.1.2, Fig. 1/4, Tab. 2, 3, 6, 7",
    "eps = 8/255 and xi = 16/255; PGD-20, CW2, WRN-34-10 on CIFAR-10 with ResNet-18",
    "SGD momentum 0.9, weight decay $10^{-3}$, lr 0.01 with ×0.1 at epochs 75/90/140",
    "advertorch 0.2.3's SpatialTransformAttack; torch 2.14",
    "1. Set `cam_layer = \"body.3\"` (a 4×4 layer). 2. Raise `object_threshold` to 0.5.\n## 3. Attack",
    "accuracy on FGSM examples above 90 % and on other attacks below 10 %; near 100 % while PGD-20 falls to 0 %",
    "$\\epsilon = 0.3$ and $x_{pur} = x + \\xi\\,\\mathrm{sign}(\\nabla_x L)$; `xi=0.21` in code",
    "<!-- runtime -->\nMeasured run time: `quick` 5 min 12 s (CPU, 2 threads, commit abc1234).\n<!-- /runtime -->",
    "<!-- exercise-time -->\nHow long: all exercises as worked in `solutions/00.ipynb`, setup included: `quick` 14 s "
    "(CPU, 2 threads, commit abc1234).\n<!-- /exercise-time -->",
    "```python\nacc = 93.1\n```",
])
def test_the_check_lets_references_names_and_settings_through(sentence):
    assert hand_typed_numbers(sentence) == []


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=_name)
def test_no_hand_typed_result_number_in_markdown(path):
    """Results are rendered from the run's records (display(Markdown(...))); prose says what to look for."""
    bad = [(i, hits, text) for i, text in _cells(path) if (hits := hand_typed_numbers(text))]
    report = "\n".join(f"  cell {i}: {hits}\n    {text[:160]!r}" for i, hits, text in bad)
    assert not bad, (f"{_name(path)}: hand-typed numbers in markdown (render them from records, or put a setting "
                     f"in `code`):\n{report}")


# ---------------------------------------------------------------- exercises and solutions
def exercises(path: Path) -> list[int]:
    """The numbers of the exercises in the notebook's last cell, which must be a `## Exercises` markdown cell."""
    nb = json.loads(path.read_text())
    last = nb["cells"][-1]
    text = "".join(last["source"]).strip()
    if last["cell_type"] != "markdown" or not text.startswith("## Exercises"):
        return []
    return [int(n) for n in re.findall(r"^(\d+)\.\s", text, re.M)]


def solution_sections(path: Path) -> list[tuple[int, int]]:
    """(k, code cells until the next exercise) for each `### Exercise k` markdown cell of a solutions notebook."""
    nb = json.loads(path.read_text())
    sections = []
    for c in nb["cells"]:
        text = "".join(c["source"]).lstrip()
        m = re.match(r"### Exercise (\d+)\b", text) if c["cell_type"] == "markdown" else None
        if m:
            sections.append([int(m.group(1)), 0])
        elif c["cell_type"] == "code" and sections and "".join(c["source"]).strip():
            sections[-1][1] += 1
    return [tuple(s) for s in sections]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_every_lesson_ends_with_two_or_three_exercises(path):
    numbers = exercises(path)
    assert numbers in ([1, 2], [1, 2, 3]), (f"{_name(path)}: the last cell must be a markdown cell starting "
                                            f"'## Exercises' with exercises numbered 1. 2. (3.); found {numbers}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_every_exercise_has_a_worked_solution(path):
    solution = ROOT / "solutions" / path.name
    assert solution.exists(), f"solutions/{path.name} is missing (one solutions notebook per lesson, same name)"
    sections = solution_sections(solution)
    assert [k for k, _ in sections] == exercises(path), (
        f"solutions/{path.name}: expected one '### Exercise k' markdown cell per exercise of {_name(path)} "
        f"({exercises(path)}), found {[k for k, _ in sections]}")
    empty = [k for k, n in sections if n == 0]
    assert not empty, f"solutions/{path.name}: exercise(s) {empty} have no code cell"


def test_solutions_belong_to_lessons():
    orphans = [p.name for p in SOLUTIONS if not (ROOT / "notebooks" / p.name).exists()]
    assert not orphans, f"solutions without a lesson of the same name: {orphans}"


def test_no_answers_in_the_installed_package():
    """Solutions live where a teacher finds them and a student does not: solutions/, not tpap_nb."""
    assert not (ROOT / "tpap_nb" / "answers.py").exists()
    assert importlib.util.find_spec("tpap_nb.answers") is None
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "solutions" not in re.search(r"packages = \[(.*?)\]", pyproject).group(1)
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *NOTEBOOKS, *SOLUTIONS]
    stale = [_name(p) for p in pages if re.search(r"tpap_nb[/.]answers|test_answers", p.read_text())]
    assert not stale, f"still pointing at the removed tpap_nb/answers.py: {stale}"


# ---------------------------------------------------------------- run times and the install cell
@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=_name)
def test_run_time_stamp_and_install_cell_are_current(path):
    """The first markdown cell states the last recorded run time per profile (figures/<profile>/runtimes.json)."""
    stale = runner.stamp([path], check=True)
    assert not stale, (f"{_name(path)}: its run-time line or install cell differs from what the records say; "
                       f"run `python -m tpap_nb.runner --stamp` (part of `make readme`)")


def _notebook(tmp_path: Path, folder: str = "notebooks", name: str = "01_x.ipynb", text: str = "# 01 · Title") -> Path:
    nb = {"cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": [text]},
                    {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
                     "source": ["import tpap_nb as tp"]},
                    {"cell_type": "code", "execution_count": None, "id": "c", "metadata": {"tags": ["parameters"]},
                     "outputs": [], "source": ['profile: str = "quick"  # which profile\n', "n: int = 2  # a count"]},
                    {"cell_type": "code", "execution_count": None, "id": "d", "metadata": {}, "outputs": [],
                     "source": ["from pathlib import Path\n",
                                "Path('cwd.txt').write_text(str(Path.cwd()))\n", "print(profile, n)"]}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(runner.dumps(nb))
    return path


def test_the_stamp_writes_the_recorded_times_once(tmp_path):
    path = _notebook(tmp_path)
    rec = {"device": "cpu", "threads": 2, "commit": "abc1234", "date": "2026-11-26"}
    runtimes = {"smoke": {"notebooks/01_x.ipynb": rec | {"seconds": 41.2}},
                "quick": {"notebooks/01_x.ipynb": rec | {"seconds": 312.0}, "notebooks/02_y.ipynb": rec}}
    assert runner.stamp([path], runtimes) == [path]
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    assert first.startswith("# 01 · Title\n\n<!-- runtime -->\n")
    assert "Measured run time: `smoke` 41 s, `quick` 5 min 12 s (CPU, 2 threads, commit abc1234)." in first
    assert runner.stamp([path], runtimes) == []  # idempotent: one block, one install cell
    runtimes["quick"]["notebooks/01_x.ipynb"] = rec | {"seconds": 3725, "device": "NVIDIA H100", "commit": "def"}
    assert runner.stamp([path], runtimes, check=True) == [path] and "5 min 12 s" in path.read_text()
    runner.stamp([path], runtimes)
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert first.count(runner.RUNTIME_START) == 1 and "5 min 12 s" not in first
    assert "`smoke` 41 s (CPU, 2 threads, commit abc1234), `quick` 1 h 2 min (NVIDIA H100, commit def)." in first
    assert [c.get("metadata", {}).get("tags") for c in nb["cells"]].count([runner.INSTALL_TAG]) == 1
    assert nb["cells"][1]["metadata"]["tags"] == [runner.INSTALL_TAG] and nb["cells"][1]["outputs"] == []
    assert "none recorded yet" in runner.runtime_line("solutions/01_x.ipynb", runtimes)
    assert hand_typed_numbers(first) == []


def test_runtimes_are_merged_per_profile_and_read_from_the_profiles_folders(tmp_path):
    env = {"device": "cpu", "threads": 1, "commit": "abc", "date": "d"}
    quick = tmp_path / "figures" / "quick"
    runner.record_times([(Path("notebooks/00_a.ipynb"), 10.04), (Path("notebooks/01_b.ipynb"), 20)], "quick", env,
                        quick)
    runner.record_times([(Path("notebooks/01_b.ipynb"), 30)], "quick", env | {"commit": "new"}, quick)
    runner.record_times([(Path("solutions/01_b.ipynb"), 5)], "quick", env, quick)
    runner.record_times([(Path("notebooks/00_a.ipynb"), 1)], "smoke", env, tmp_path / "figures" / "smoke")
    got = runner.load_runtimes(tmp_path / "figures")
    assert list(got) == ["smoke", "quick"]  # profile order of config.PROFILES
    assert got["quick"]["notebooks/00_a.ipynb"]["seconds"] == 10.0
    assert got["quick"]["notebooks/01_b.ipynb"] == env | {"commit": "new", "seconds": 30}
    assert set(got["quick"]) == {"notebooks/00_a.ipynb", "notebooks/01_b.ipynb", "solutions/01_b.ipynb"}


def test_the_install_cell_is_a_no_op_where_the_kit_is_installed(capsys):
    code = runner.install_source()
    exec(compile(code, "install", "exec"), {"__name__": "cell"})  # tpap_nb is importable here: nothing happens
    assert capsys.readouterr().out == ""
    assert "--no-deps" in code and runner.TORCHATTACKS in code
    assert f"--no-deps {runner.TORCHATTACKS}" in (ROOT / "Makefile").read_text()  # as the README's route does


def test_the_install_cell_installs_a_kit_beside_the_notebook_or_says_what_to_run(tmp_path, monkeypatch):
    code = runner.install_source()
    ns = {"__name__": "cell"}
    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # as on Colab
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setattr(sys, "path", list(sys.path))
    alone = tmp_path / "alone" / "notebooks"
    alone.mkdir(parents=True)
    monkeypatch.chdir(alone)
    with pytest.raises(SystemExit, match="pip install -e KIT_FOLDER.*--no-deps torchattacks==3.5.1"):
        exec(compile(code, "install", "exec"), dict(ns))
    assert calls == []
    kit = tmp_path / "kit"
    (kit / "tpap_nb").mkdir(parents=True)
    (kit / "tpap_nb" / "__init__.py").write_text("")
    (kit / "pyproject.toml").write_text('[project]\nname = "tpap-nb"\n')
    (kit / "notebooks").mkdir()
    monkeypatch.chdir(kit / "notebooks")
    exec(compile(code, "install", "exec"), dict(ns))
    assert calls[0][-3:] == ["-q", "-e", str(kit)] and calls[1][-3:] == ["-q", "--no-deps", runner.TORCHATTACKS]
    assert sys.path[0] == str(kit)
    with_url = runner.install_source("https://example.org/tpap-nb")
    assert "git+https://example.org/tpap-nb" in with_url and "SystemExit" not in with_url


def test_the_runner_takes_a_missing_or_empty_solutions_folder(tmp_path, capsys):
    assert runner.notebook_paths(folder=tmp_path / "solutions") == []
    (tmp_path / "solutions").mkdir()
    assert runner.run("smoke", tmp_path / "out", folder=tmp_path / "solutions") == []
    assert "nothing to run" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="starts with '09'"):
        runner.notebook_paths("09", folder=tmp_path / "solutions")


@pytest.mark.slow
def test_the_runner_executes_in_the_notebooks_folder_and_records_times(tmp_path, monkeypatch):
    """papermill on a tiny notebook: cwd is the notebook's folder, the profile is injected, the time recorded."""
    path = _notebook(tmp_path, "solutions")
    monkeypatch.setenv("TPAP_FIGURES", str(tmp_path / "figs"))
    done = runner.run("smoke", tmp_path / "out", folder=tmp_path / "solutions")
    assert [name for name, _ in done] == ["01_x.ipynb"]
    assert (path.parent / "cwd.txt").read_text() == str(path.parent)
    executed = json.loads((tmp_path / "out" / "01_x.ipynb").read_text())
    printed = ["".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])]
    assert "smoke 2\n" in printed
    rec = json.loads((tmp_path / "figs" / "runtimes.json").read_text())["smoke"]["solutions/01_x.ipynb"]
    assert rec["seconds"] > 0 and rec["device"] == "cpu" and rec["threads"] >= 1 and rec["commit"]


def test_the_exercises_say_how_long_their_worked_solutions_took(tmp_path):
    """Issue 21: each notebook's exercises carry the recorded run time of its worked solutions, or say none is."""
    src = runner.REPO / "notebooks" / "03_attack_benchmark.ipynb"
    path = tmp_path / "notebooks" / src.name
    path.parent.mkdir()
    path.write_text(src.read_text())
    nb = runner.stamp_notebook(json.loads(path.read_text()), "notebooks/" + src.name, {})
    cell = next("".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith("## Exercises"))
    assert "How long: not measured yet" in cell and "make solutions" in cell
    rec = {"seconds": 312.0, "device": "cpu", "threads": 2, "commit": "abc1234", "date": "2026-12-06T00:00:00"}
    nb = runner.stamp_notebook(nb, "notebooks/" + src.name, {"quick": {"solutions/" + src.name: rec}})
    cell = next("".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith("## Exercises"))
    assert cell.count(runner.EXERCISE_START) == 1 and "`quick` 5 min 12 s (CPU, 2 threads" in cell
    assert "not measured" not in cell
