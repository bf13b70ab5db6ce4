"""Worked solutions 00-02 call one accuracy above another only through a paired test (tpap_nb.stats), never by a
fixed margin such as `v > acc_fgsm + 0.005` or `abs(a - b) < 0.01` (issue 21's rule for sentences)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAIRED = ["00_start_here.ipynb", "01_train_fgsm_ro.ipynb", "02_purification.ipynb"]

# A fixed margin: a comparison against a name plus or minus a number, an absolute difference below a number, or
# the words a margin used to print.
MARGIN = re.compile(r"[<>]=?\s*[A-Za-z_][\w.\[\]'\"]*\s*[+-]\s*\d+(?:\.\d+)?(?![\w.])"
                    r"|\babs\([^\n]*\)\s*<=?\s*\d"
                    r"|less than a point|a point or more|about as good|level with")
# What the rule asks for instead.
PAIRED_CALL = re.compile(r"\b(?:paired|compare|compare_sentence)\(")


def _code(name: str) -> str:
    nb = json.loads((ROOT / "solutions" / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("old", [
    "weaker = [k for k, v in acc_steps.items() if v > acc_fgsm + 0.005]",
    "flat = next((k for k, k2 in zip(a, b) if abs(acc_steps[k2] - acc_steps[k]) < 0.01), None)",
    'return ("leaves accuracy unchanged" if abs(d) < 0.005 else',
    'return more if a > b + 1 else less if a < b - 1 else same',
    'verb = "better" if b > a + 1 else "worse" if b < a - 1 else "about as good"',
])
def test_the_margin_check_catches_the_comparisons_it_replaced(old):
    assert MARGIN.search(old), old


@pytest.mark.parametrize("fine", [
    "history[:k + 1]", "reach = math.ceil(s['eps'] / s['alpha'] - 1e-9)", "f\"step{'s' * (flat > 1)}\"",
    "r['decided'] and r['diff'] > 0", "before = [m for m in drops if m < first]",
])
def test_the_margin_check_leaves_other_code_alone(fine):
    assert not MARGIN.search(fine), fine


@pytest.mark.parametrize("name", PAIRED)
def test_solutions_compare_accuracies_by_a_paired_test_not_a_margin(name):
    code = _code(name)
    found = [m.group(0) for m in MARGIN.finditer(code)]
    assert not found, (f"solutions/{name} compares accuracies by a fixed margin ({found}): use tpap_nb.stats.paired "
                       "on per-image verdicts (or stats.compare on counts when there are none)")
    assert PAIRED_CALL.search(code), f"solutions/{name} states a comparison without a paired test"
