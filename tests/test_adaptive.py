"""Adaptive attacks on F(x) = f(P(x)): forward = TPAP, backward modes, pass counts, worst case, verdict."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from tpap_nb.attacks.base import fgsm
from tpap_nb.experiments.adaptive import (
    BareClassifier,
    DefendedClassifier,
    eps_sweep,
    evaluate_adaptive,
    gradient_masking_flag,
    pgd_adaptive,
    reaches_zero,
    worst_case,
)
from tpap_nb.plots import accuracy_bars
from tpap_nb.purify import TPAP
from tpap_nb.report import adaptive_sanity_sentence, adaptive_verdict

EPS, XI = 0.3, 0.15


def tiny_cnn(width: int = 16) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * width * 16, 10))


@pytest.fixture(scope="module")
def tiny():
    """A tiny CNN after seconds of FGSM-AT on sklearn digits (eval-mode FGSM, no random start, step=eps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses time to thread hand-offs
    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.images / 16, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1437], perm[1437:]
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        order = train[torch.randperm(len(train))]
        for i in range(0, len(order), 64):
            xb, yb = x[order[i:i + 64]], y[order[i:i + 64]]
            model.eval()
            x_adv = fgsm(model, xb, yb, EPS)
            model.train()
            loss = F.cross_entropy(model(x_adv), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    yield model, x[test][:64], y[test][:64]
    torch.set_num_threads(threads)


def _input_grad(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(module(x), y, reduction="sum"), x)
    return grad


@pytest.mark.parametrize("grad", ["bpda", "smooth", "exact"])
def test_forward_equals_tpap_in_every_mode(tiny, grad):
    model, x, _ = tiny
    with torch.no_grad():
        ref = TPAP(model, XI)(x)
        out = DefendedClassifier(model, XI, grad=grad)(x)
    # The attack path (input requiring grad) must give the same value as the no-grad one.
    out_graph = DefendedClassifier(model, XI, grad=grad)(x.clone().requires_grad_(True))
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(out_graph.detach(), ref, atol=1e-5)


def test_bpda_gradient_equals_exact_graph(tiny):
    model, x, y = tiny
    bpda, exact = DefendedClassifier(model, XI, grad="bpda"), DefendedClassifier(model, XI, grad="exact")
    # Away from the clip boundary (pixels in [0.3, 0.7], xi = 0.15): A1 and A3 agree exactly.
    x_mid = 0.3 + 0.4 * x
    g1, g3 = _input_grad(bpda, x_mid, y), _input_grad(exact, x_mid, y)
    assert g1.abs().sum() > 0
    assert torch.allclose(g1, g3, atol=1e-6)
    # On real tiny the clip binds: A3 = A1 times the clip mask of Eq. 8.
    with torch.enable_grad():
        x_in = x.clone().requires_grad_(True)
        logits = model(x_in)
        (g,) = torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1), reduction="sum"), x_in)
    raw = x + XI * g.sign()
    mask = ((raw >= 0) & (raw <= 1)).float()
    assert 0 < mask.mean() < 1
    assert torch.allclose(_input_grad(exact, x, y), _input_grad(bpda, x, y) * mask, atol=1e-6)


def test_smooth_surrogate_is_differentiable_and_differs_from_bpda(tiny):
    model, x, y = tiny
    g2 = _input_grad(DefendedClassifier(model, XI, grad="smooth"), x, y)
    assert torch.isfinite(g2).all() and g2.abs().sum() > 0
    # Away from the clip, BPDA = exact = the identity path; A2 must add the tanh(g / tau) path through g.
    x_mid = 0.3 + 0.4 * x
    g1 = _input_grad(DefendedClassifier(model, XI, grad="bpda"), x_mid, y)
    g2 = _input_grad(DefendedClassifier(model, XI, grad="smooth"), x_mid, y)
    assert torch.isfinite(g2).all()
    assert not torch.allclose(g1, g2, atol=1e-4)


def test_pass_counting(tiny):
    model, x, y = tiny
    n = len(x)
    d = DefendedClassifier(model, XI)
    with torch.no_grad():
        d(x)
    assert d.counts == {"forward": 2 * n, "backward": n, "hvp": 0, "predictions": n}
    assert d.passes_per_prediction() == 3
    d.reset_counts()
    _input_grad(d, x, y)  # an attacker's gradient through BPDA adds one backward of f at x_pur
    assert d.counts == {"forward": 2 * n, "backward": 2 * n, "hvp": 0, "predictions": n}
    s = DefendedClassifier(model, XI, grad="smooth")
    _input_grad(s, x, y)  # ... and through the surrogate one Hessian-vector product
    assert s.counts == {"forward": 2 * n, "backward": 2 * n, "hvp": n, "predictions": n}
    assert s.passes_per_prediction() == 6
    b = BareClassifier(model)
    with torch.no_grad():
        b(x)
    assert b.passes_per_prediction() == 1


def test_adaptive_pgd_beats_clean_and_sweep_reaches_zero(tiny):
    model, x, y = tiny
    d = DefendedClassifier(model, XI)
    with torch.no_grad():
        clean = (d(x).argmax(1) == y).float().mean().item()
        adv = (d(pgd_adaptive(d, x, y, EPS, steps=10, restarts=1)).argmax(1) == y).float().mean().item()
    assert clean > 0.5
    assert adv < clean - 0.2
    sweep = eps_sweep(model, x, y, XI, [0.05, 1.0], steps=10)
    assert sweep[0]["accuracy"] > sweep[1]["accuracy"]
    assert reaches_zero(sweep)
    assert not reaches_zero([{"eps": 1.0, "accuracy": 0.5}])


def test_evaluate_adaptive_records_and_worst_case(tiny):
    model, x, y = tiny
    x, y = x[:32], y[:32]
    attacks = ["clean", "transfer", "pgd-bpda", "pgd-smooth", "apgd-ce", "apgd-t", "autoattack", "square"]
    records, correct = evaluate_adaptive(model, x, y, XI, EPS, attacks=attacks, scale=0.05,
                                         references={"random": tiny_cnn().eval()})
    assert correct.shape == (len(records), len(y)) and correct.dtype == torch.bool
    keys = {"defence", "attack", "grad", "eps", "xi", "n", "accuracy", "settings", "passes_per_pred",
            "passes_per_sample", "seconds"}
    assert all(keys <= set(r) for r in records)
    for defence in ("TPAP", "bare", "random"):
        rows = [r for r in records if r["defence"] == defence]
        worst = [r for r in rows if r["attack"] == "worst-case"]
        assert len(worst) == 1
        assert all(worst[0]["accuracy"] <= r["accuracy"] for r in rows)
    by = {(r["defence"], r["attack"]): r for r in records}
    assert [r["attack"] for r in records if r["defence"] == "bare"][:3] == ["clean", "pgd", "apgd-ce"]
    assert by["TPAP", "pgd-bpda"]["accuracy"] < by["TPAP", "clean"]["accuracy"]
    assert by["TPAP", "transfer:bare"]["grad"] == "source:bare"
    assert math.isclose(by["TPAP", "square"]["passes_per_pred"], 3.0)
    assert math.isclose(by["bare", "square"]["passes_per_pred"], 1.0)
    tpap = [r for r in records if r["defence"] == "TPAP"]
    square = min(r["accuracy"] for r in tpap if r["attack"] == "square")
    gradient = min(r["accuracy"] for r in tpap if r["attack"] in ("pgd-bpda", "pgd-smooth", "apgd-ce", "apgd-t"))
    assert gradient_masking_flag(records) is (square < gradient)  # the rule, on these records
    assert ("its gradients are masked" in adaptive_verdict(records)) is (square < gradient)
    text = adaptive_verdict(records)
    assert f"{100 * by['TPAP', 'worst-case']['accuracy']:.1f} %" in text


def test_worst_case_is_per_sample():
    # Two attacks at 50% each, failing on different samples: nothing survives both.
    records = [_rec("TPAP", "clean", 1.0), _rec("TPAP", "pgd-bpda", 0.5), _rec("TPAP", "square", 0.5)]
    correct = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    worst, rows = worst_case(records, correct)
    assert worst[0]["accuracy"] == 0.0 and not rows.any()


def _rec(defence, attack, acc):
    return {"defence": defence, "attack": attack, "accuracy": acc, "eps": 0.3, "xi": 0.15 if defence == "TPAP"
            else None, "n": 100, "passes_per_sample": 1.0, "seconds": 0.1}


def test_gradient_masking_flag_and_verdict_follow_the_numbers():
    masked = [_rec("TPAP", "clean", 0.9), _rec("TPAP", "pgd-bpda", 0.6), _rec("TPAP", "square", 0.2),
              _rec("TPAP", "worst-case", 0.2), _rec("bare", "clean", 0.95), _rec("bare", "worst-case", 0.05)]
    assert gradient_masking_flag(masked) is True
    assert "above that of the bare model" in adaptive_verdict(masked) and "masked" in adaptive_verdict(masked)
    fine = [dict(r) for r in masked]
    fine[2]["accuracy"], fine[3]["accuracy"], fine[5]["accuracy"] = 0.7, 0.1, 0.3
    assert gradient_masking_flag(fine) is False
    tie = [dict(r) for r in masked]
    tie[2]["accuracy"] = 0.6  # Square only equals the best gradient attack: no evidence of masking
    assert gradient_masking_flag(tie) is False
    assert "below that of the bare model" in adaptive_verdict(fine) and "no robustness beyond" in adaptive_verdict(fine)
    with pytest.raises(ValueError, match="square"):
        gradient_masking_flag([_rec("TPAP", "pgd-bpda", 0.5)])
    with pytest.raises(ValueError, match="worst-case"):
        adaptive_verdict([_rec("TPAP", "clean", 0.9)])


def test_clear_errors(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match="gradient mode"):
        DefendedClassifier(model, XI, grad="sign")
    with pytest.raises(ValueError, match="Unknown attack"):
        evaluate_adaptive(model, x, y, XI, EPS, attacks=["pgd"])


def test_attacks_leave_the_callers_model_mode_alone():
    """torchattacks restores .train() on what it attacked; the wrapper must not pass that to the model."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(256, 10)).eval()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    evaluate_adaptive(model, x, y, 0.1, 0.1, attacks=("apgd-ce", "square"), scale=0.02)
    assert not model.training


def test_verdict_finds_the_papers_protocol_whatever_the_bare_source_is_called():
    records = [_rec("TPAP", "clean", 0.9), _rec("TPAP", "transfer:bare FGSM-RO", 0.8), _rec("TPAP", "pgd-bpda", 0.1),
               _rec("TPAP", "worst-case", 0.1)]
    text = adaptive_verdict(records)
    assert "(PGD crafted on the bare model, then purified) it keeps 80.0 % (71.1-86.7)" in text
    assert "overstates robustness by 70.0 points (95 % CI" in text and "eps = 0.3 (xi = 0.15" in text


def test_verdict_calls_worst_cases_apart_only_when_the_paired_test_decides():
    recs = [_rec("TPAP", "clean", 0.49), _rec("TPAP", "transfer:bare FGSM-RO", 0.65), _rec("TPAP", "pgd-bpda", 0.0),
            _rec("TPAP", "worst-case", 0.28), _rec("PGD-AT", "worst-case", 0.30), _rec("bare", "worst-case", 0.0)]
    text = adaptive_verdict(recs)  # 28 vs 30 of the same 100 images: not apart; 28 vs 0: apart
    assert "TPAP's worst case is not distinguishable from that of PGD-AT (30.0 % (21.9-39.6))" in text
    assert "TPAP's worst case is above that of the bare model" in text
    assert "no robustness beyond the best alternative" in text and "keeps an advantage" not in text
    for r in recs:
        r["eps"], r["xi"] = 8 / 255, (8 / 255 if r["defence"] == "TPAP" else None)
    assert "at eps = 8/255 (xi = 8/255;" in adaptive_verdict(recs)


def test_sanity_sentence_follows_the_sweep_and_the_masking_rule():
    sweep = [{"attack": "pgd-bpda", "eps": e, "accuracy": a} for e, a in ((0.0, 0.9), (0.3, 0.4), (0.6, 0.02))]
    records = [_rec("TPAP", "pgd-bpda", 0.3), _rec("TPAP", "square", 0.5)]
    text = adaptive_sanity_sentence(sweep, records)
    assert "from 90.0 % at eps = 0 to 2.0 % at eps = 0.6: it reaches about 0" in text
    assert "Square leaves TPAP 50.0 %, the strongest gradient attack (pgd-bpda) 30.0 %: Square does not" in text
    stuck = [dict(r, accuracy=0.5) if r["eps"] == 0.6 else r for r in sweep]
    records[1]["accuracy"] = 0.1
    text = adaptive_sanity_sentence(stuck, records)
    assert "stays above 5 %" in text and "a sign of masked gradients" in text
    assert "Square" not in adaptive_sanity_sentence(sweep)
    with pytest.raises(ValueError, match="eps_sweep"):
        adaptive_sanity_sentence([])


def test_accuracy_bars_label_every_bar_and_mark_zero_bars():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [_rec("TPAP", "clean", 0.9), _rec("TPAP", "pgd-bpda", 0.0), _rec("bare", "clean", 0.95),
               _rec("bare", "pgd", 0.0), _rec("bare", "square", 0.125)]
    fig = accuracy_bars(records, title="t")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert sorted(labels) == sorted(["90.0", "0.0", "95.0", "0.0", "12.5"])  # one value label per bar
    markers = [line for line in ax.lines if line.get_marker() == "o"]
    zero_x = sorted(x for line in markers for x in line.get_xdata())
    bars = {round(p.get_x() + p.get_width() / 2, 6): p.get_height() for p in ax.patches}
    assert len(zero_x) == 2 and all(bars[round(x, 6)] == 0 for x in zero_x)  # a marker on each 0 % bar only
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "pgd-bpda", "pgd", "square"]
    plt.close(fig)


def test_progress_bars_name_the_attack_running(tiny, capsys):
    model, x, y = tiny
    evaluate_adaptive(model, x[:8], y[:8], XI, EPS, attacks=("clean", "pgd-bpda"), scale=0.05, progress=True)
    err = capsys.readouterr().err
    assert "adaptive attacks" in err and "TPAP: pgd-bpda" in err
    eps_sweep(model, x[:8], y[:8], XI, [0.1], steps=1, progress=False)
    assert capsys.readouterr().err == ""


def test_counts_label_names_the_counts_that_ran():
    from tpap_nb.experiments import adaptive as adaptive_mod

    assert adaptive_mod.scaled_counts(0.5) == {"steps": 25, "apgd_steps": 50, "restarts": 2, "n_queries": 2500}
    assert adaptive_mod.counts_label(0.5) == ("PGD 25 steps x 2 restarts, APGD 50 steps x 2 restarts, Square 2,500 "
                                              "queries (x0.5 of 50, 100, 3, 5,000); AutoAttack at the official "
                                              "standard settings")
    assert "(x" not in adaptive_mod.counts_label(1.0)
    assert adaptive_mod.scaled_counts(0.1)["restarts"] == 1  # never below one
    assert adaptive_mod.counts_label(0.1).startswith("PGD 5 steps x 1 restart, APGD 10 steps x 1 restart, Square 500")
