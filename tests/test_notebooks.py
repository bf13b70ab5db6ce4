"""Notebooks and their worked solutions are committed clean and follow the kit's parameter convention (STYLE.md)."""
import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))  # solutions/ may be empty or missing: no cases then
BOTH = NOTEBOOKS + SOLUTIONS
INSTALL_TAG = "install"  # the hosted-notebook install cell (tpap_nb.runner.stamp) that comes before the imports


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_there_are_ordered_notebooks_and_the_readme_lists_each():
    names = [p.name for p in NOTEBOOKS]
    assert names[:3] == ["00_start_here.ipynb", "01_train_fgsm_ro.ipynb", "02_purification.ipynb"]
    assert all(n[:2].isdigit() and n[2] == "_" for n in names)
    assert [int(n[:2]) for n in names] == list(range(len(names)))  # no gap, no duplicate number
    readme = (NOTEBOOKS[0].parent.parent / "README.md").read_text()
    assert all(f"| `{p.stem}` |" in readme for p in NOTEBOOKS)


@pytest.mark.parametrize("path", BOTH, ids=_name)
def test_the_profile_parameter_lists_the_profiles_that_exist(path):
    """`profile: str = ...  # smoke | quick | ...`: the comment names every profile of config.PROFILES, in order."""
    from tpap_nb.config import PROFILES

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    line = next(ln for ln in "".join(cell["source"]).splitlines() if ln.startswith("profile:"))
    listed = line.split("#", 1)[1].split(":")[0].split(";")[0].strip().split(" | ")
    assert sorted(listed) == sorted(PROFILES), f"{_name(path)} lists {listed}, the profiles are {sorted(PROFILES)}"


@pytest.mark.parametrize("path", BOTH, ids=_name)
def test_every_import_of_a_notebook_resolves(path):
    """A moved or renamed function breaks here, not minutes into a papermill run."""
    import importlib

    nb = json.loads(path.read_text())
    for cell in (c for c in nb["cells"] if c["cell_type"] == "code"):
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("tpap_nb"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"), f"{_name(path)}: {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("tpap_nb"):
                        importlib.import_module(alias.name)


@pytest.mark.parametrize("path", BOTH, ids=_name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{_name(path)}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", BOTH, ids=_name)
def test_one_parameters_cell_of_flat_typed_commented_literals(path):
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{_name(path)}: expected exactly one cell tagged 'parameters'"
    src = "".join(cells[0]["source"])
    tree = ast.parse(src)
    assert all(isinstance(node, ast.AnnAssign) for node in tree.body), "only `name: type = literal` lines"
    assert tree.body[0].target.id == "profile", "the first parameter names the profile"
    for node in tree.body:
        ast.literal_eval(node.value)  # a literal, nothing computed
        line = src.splitlines()[node.lineno - 1]
        assert "  # " in line, f"{path.name}: parameter line without a trailing comment: {line!r}"
        assert "=" not in line.split("#", 1)[1], f"papermill misparses '=' in comments: {line!r}"
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"
                  and INSTALL_TAG not in c.get("metadata", {}).get("tags", [])]
    assert code_cells.index(cells[0]) == 1, "the parameters cell comes right after the imports"
    installs = [i for i, c in enumerate(nb["cells"]) if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    first_code = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
    assert installs in ([], [first_code]), f"{path.name}: the install cell, if any, is the one first code cell"


def test_the_parameters_rule_holds_on_a_stamped_notebook(tmp_path):
    """The stamp inserts the install cell before the imports; the parameters cell is still right after them."""
    from tpap_nb import runner

    path = tmp_path / "notebooks" / NOTEBOOKS[1].name
    path.parent.mkdir()
    path.write_text(NOTEBOOKS[1].read_text())
    assert runner.stamp([path], runtimes={}) == [path]
    nb = json.loads(path.read_text())
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert INSTALL_TAG in first_code["metadata"]["tags"]
    test_one_parameters_cell_of_flat_typed_commented_literals(path)
    test_committed_without_outputs(path)
