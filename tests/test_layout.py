"""The package's shape (ARCHITECTURE.md): a core and its experiments, imports one way, no cycles,
and `import tpap_nb` without torchattacks."""
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


def _is_experiment(name: str) -> bool:
    return name == "tpap_nb.experiments" or name.startswith("tpap_nb.experiments.")


def test_the_graph_sees_real_imports():
    g = import_graph()
    assert "tpap_nb.purify" in g["tpap_nb.evaluate"]
    assert "tpap_nb.train" in g["tpap_nb.experiments.fig5"]
    assert "tpap_nb.plots" in g["tpap_nb.runner"]  # a function-level import counts too


def test_core_never_imports_an_experiment():
    g = import_graph()
    wrong = {m: sorted(d for d in deps if _is_experiment(d)) for m, deps in g.items()
             if not _is_experiment(m) and m not in OUTSIDE}
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
