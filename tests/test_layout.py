"""The package's shape (docs/layout.md): layers, imports only downwards (or within a layer), no cycles, and
`import tpap_nb` without torchattacks."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tpap_nb"
# Modules that are neither core nor an experiment (and may import experiments): none. The exercises' worked
# solutions live in solutions/*.ipynb, outside the package (tests/test_lessons.py).
OUTSIDE: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names a `from ... import ...` refers to (submodules when they exist)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    names = [f"{target}.{a.name}" for a in node.names]
    return [target] + names


def import_graph() -> dict[str, set[str]]:
    """module -> tpap_nb modules it imports anywhere in its source (top level or inside functions)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                deps |= set(_resolve(name, path.name == "__init__.py", node))
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


# The layers, bottom first (docs/layout.md): a module may import its own layer and the layers below it, never one
# above. "tpap_nb" is the package's __init__ (its public names), on the level of what it re-exports.
LAYERS = (
    ("settings", ("runtime", "settings", "config", "checks", "paper", "stats", "plots")),
    ("data", ("data",)),
    ("models", ("models",)),
    ("purification and attacks", ("purify", "attacks")),
    ("evaluation", ("evaluate",)),
    ("training", ("train", "checkpoints")),
    ("runs", ("runs", "distributed", "")),
    ("experiments", ("experiments",)),
    ("report", ("report",)),
    ("entry points", ("runner", "readme", "landing")),
)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of a tpap_nb module (a package's submodules are in the package's layer)."""
    rel = module.removeprefix("tpap_nb").removeprefix(".")
    for i, (_, names) in enumerate(LAYERS):
        if any(rel == n or (n and rel.startswith(n + ".")) for n in names):
            return i
    return None


def test_every_module_has_a_layer():
    missing = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not missing, f"modules in no layer of LAYERS (add them where they belong, and to docs/layout.md): {missing}"


def upward_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """module (its layer) -> the modules of a higher layer it imports."""
    up = {m: sorted(f"{d} ({LAYERS[layer_of(d)][0]})" for d in deps if layer_of(d) > layer_of(m))
          for m, deps in graph.items()}
    return {f"{m} ({LAYERS[layer_of(m)][0]})": d for m, d in up.items() if d}


def test_no_module_imports_a_layer_above_its_own():
    up = upward_imports(import_graph())
    assert not up, f"imports of a layer above: {up}"


def test_the_layer_check_sees_a_violation():
    assert layer_of("tpap_nb.train") > layer_of("tpap_nb.evaluate") > layer_of("tpap_nb.data")
    assert layer_of("tpap_nb.experiments.tables") < layer_of("tpap_nb.report.benchmark")
    assert layer_of("tpap_nb.attacks.cw") == layer_of("tpap_nb.purify")
    assert layer_of("tpap_nb") == layer_of("tpap_nb.runs")
    g = import_graph()
    bad = g | {"tpap_nb.evaluate": g["tpap_nb.evaluate"] | {"tpap_nb.train"}}  # the history's old direction
    assert list(upward_imports(bad)) == ["tpap_nb.evaluate (evaluation)"]


def _is_experiment(name: str) -> bool:
    return name == "tpap_nb.experiments" or name.startswith("tpap_nb.experiments.")


def test_the_graph_sees_real_imports():
    g = import_graph()
    assert "tpap_nb.purify" in g["tpap_nb.evaluate"]
    assert "tpap_nb.runs" in g["tpap_nb.experiments.fig5"]
    assert "tpap_nb.plots" in g["tpap_nb.runner"]  # a function-level import counts too
    assert "tpap_nb.experiments.fig5" in g["tpap_nb.report.benchmark"]


def test_core_never_imports_an_experiment():
    g = import_graph()
    above = {"tpap_nb.report", "tpap_nb.runner", "tpap_nb.readme"}  # the layers above the experiments
    wrong = {m: sorted(d for d in deps if _is_experiment(d)) for m, deps in g.items()
             if not _is_experiment(m) and m not in OUTSIDE and not any(m == a or m.startswith(a + ".") for a in above)}
    wrong = {m: d for m, d in wrong.items() if d}
    assert not wrong, f"core modules import experiments: {wrong}"


def test_no_import_cycles():
    g = import_graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_import_tpap_nb_does_not_import_torchattacks():
    code = "import sys, tpap_nb, tpap_nb.attacks, tpap_nb.evaluate; print('torchattacks' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_a_missing_torchattacks_gives_one_clear_error():
    """With torchattacks hidden, the core works and AutoAttack says how to install it."""
    code = """
import sys
sys.modules["torchattacks"] = None  # as if not installed: `import torchattacks` raises ImportError
import torch
import tpap_nb as tp
from tpap_nb.attacks import build_attack
model = tp.build_model("small_cnn", 10, 1, width=4).eval()
x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
build_attack("pgd20", model, steps=2)(x, y)  # the kit's own attacks still run
try:
    build_attack("aa", model, steps=1, n_queries=10)(x, y)
except ImportError as err:
    print(type(err).__name__, err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("TorchattacksMissing") and "pip install --no-deps torchattacks==3.5.1" in out
