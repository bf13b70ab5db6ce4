"""The worked solutions of notebook 07 call one accuracy above another only when a paired test over the same images
decides (`stats.paired`); otherwise they say the two do not differ at this n. The answer cells run here on made-up
per-image verdicts (a stand-in for `adaptive.evaluate_adaptive`), once with a gap the test decides and once with a
gap of 2 points on 100 images that it does not (a fixed margin of 1 point would call that one a finding)."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from tpap_nb import stats
from tpap_nb.experiments import adaptive

ROOT = Path(__file__).resolve().parent.parent
NB07 = ROOT / "solutions" / "07_adaptive_attacks.ipynb"
N = 100


def right(k: int, n: int = N) -> torch.Tensor:
    """Verdicts with the first k of n images right: two such rows overlap as much as their counts allow."""
    return torch.arange(n) < k


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


def _exercise_code(path: Path, k: int) -> str:
    """The first code cell after the '### Exercise k' markdown cell."""
    cells = _cells(path)
    start = next(i for i, (kind, src) in enumerate(cells) if kind == "markdown" and src.startswith(f"### Exercise {k}"))
    return next(src for kind, src in cells[start + 1:] if kind == "code")


def _helpers(path: Path) -> str:
    """The function definitions of the setup cell (the cell that also loads networks and data is not run)."""
    setup = next(src for kind, src in _cells(path) if kind == "code" and "get_or_train" in src)
    tree = ast.parse(setup)
    return ast.unparse(ast.Module([n for n in tree.body if isinstance(n, ast.FunctionDef)], type_ignores=[]))


def _fake_adaptive(plan: dict) -> SimpleNamespace:
    """evaluate_adaptive's records and verdict matrix (TPAP rows, worst case last) from plan[attack] (or
    plan['pgd-smooth', tau]), without attacking anything."""
    def evaluate_adaptive(model, x, y, xi, eps, attacks=(), sources=None, tau=0.5, **_):
        names = [n for a in attacks for n in ([f"transfer:{s}" for s in (sources or {"bare": None})]
                                               if a == "transfer" else [a])]
        rows = [plan["pgd-smooth", tau] if n == "pgd-smooth" else plan[n] for n in names]
        records = [{"defence": "TPAP", "attack": n, "grad": "none", "eps": eps, "xi": xi, "n": len(y),
                    "accuracy": r.float().mean().item(), "settings": "queries=50" if n == "square" else "",
                    "passes_per_pred": None, "passes_per_sample": 1.0, "seconds": 0.0} for n, r in zip(names, rows)]
        correct = torch.stack(rows)
        worst, worst_rows = adaptive.worst_case(records, correct)
        return records + worst, torch.cat([correct, worst_rows])

    return SimpleNamespace(evaluate_adaptive=evaluate_adaptive, DefendedClassifier=lambda model, xi: model)


def _answer(k: int, plan: dict) -> str:
    """The Markdown answer of exercise k of notebook 07 on the verdicts of `plan`."""
    said = []
    ns = {"pd": pd, "stats": stats, "Markdown": said.append, "display": lambda *a, **kw: None,
          "adaptive": _fake_adaptive(plan), "net": None, "pgd_at": None, "x": torch.zeros(N, 1), "y": torch.zeros(N),
          "xi": 0.1, "eps": 0.1, "scale": 1.0, "cfg": {"seed": 0}, "profile": "test", "taus": "0.1,0.5,2"}
    exec(_helpers(NB07), ns)  # noqa: S102 - the notebook's own helpers
    exec(_exercise_code(NB07, k), ns)  # noqa: S102 - the notebook's own answer cell
    assert len(said) == 1, f"exercise {k} should render one answer, rendered {len(said)}"
    return said[0]


def test_the_fake_gaps_are_what_the_tests_say():
    assert stats.paired(right(80), right(20))["decided"]
    assert not stats.paired(right(52), right(50))["decided"]


def test_square_against_the_protocol_is_a_paired_verdict():
    decided = _answer(2, {"clean": right(90), "transfer:bare": right(80), "square": right(20)})
    assert "removes that much" in decided and "+60.0 points (95 % CI" in decided, decided
    close = _answer(2, {"clean": right(90), "transfer:bare": right(52), "square": right(50)})
    assert "do not differ at n = 100" in close and "removes" not in close, close


@pytest.mark.parametrize("tau01, helps", [(50, False), (10, True)])
def test_the_surrogate_helps_only_when_the_paired_test_says_so(tau01, helps):
    plan = {("pgd-smooth", 0.1): right(tau01), ("pgd-smooth", 0.5): right(50), ("pgd-smooth", 2.0): right(50),
            "pgd-bpda": right(52)}
    text = _answer(3, plan)
    assert ("helps the attacker beyond the uncertainty at smooth, tau = 0.1" in text) == helps, text
    assert ("No surrogate differs from BPDA at n = 100" in text) == (not helps), text


def test_the_protocols_place_among_the_sources_is_a_paired_verdict():
    sources = ("transfer:bare FGSM-RO", "transfer:PGD-AT", "transfer:F itself (BPDA)")
    weakest = _answer(1, dict(zip(sources, (right(90), right(20), right(10)))))
    assert "the protocol is the weakest source" in weakest, weakest
    mixed = _answer(1, dict(zip(sources, (right(52), right(50), right(10)))))
    assert "weaker than F itself (BPDA)" in mixed and "not separated from PGD-AT at n = 100" in mixed, mixed
    assert "weakest" not in mixed, mixed
