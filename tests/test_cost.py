"""Tab. 5 helpers: FLOP counts checked by hand and by structure; timings are only checked to exist."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import tpap_nb as tp
from tpap_nb import report
from tpap_nb.data import batches
from tpap_nb.experiments import cost
from tpap_nb.paper import TABLE5


def test_linear_layer_matches_hand_count():
    lin = nn.Linear(7, 5)
    x = torch.rand(3, 7)
    assert cost.count_flops(lambda: lin(x)) == 2 * 7 * 5 * 3
    # forward + backward for the input and the weight: 3 matrix products of the same size
    xg = x.clone().requires_grad_(True)
    assert cost.count_flops(lambda: lin(xg).sum().backward()) == 3 * 2 * 7 * 5 * 3
    assert cost.param_count(lin) == 7 * 5 + 5


def test_counter_handles_autograd_grad_on_a_leaf_and_agrees_with_flopcountermode():
    """pytorch/pytorch#131753: the stock counter raises here; ours counts the same FLOPs as .backward()."""
    model = tp.build_model("small_cnn", 10, 1, width=4).eval()
    x = torch.rand(5, 1, 8, 8)

    def with_grad():
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xi), torch.zeros(5, dtype=torch.long)), xi)

    def with_backward():
        xi = x.clone().requires_grad_(True)
        F.cross_entropy(model(xi), torch.zeros(5, dtype=torch.long)).backward(inputs=[xi])

    ours = cost.count_flops(with_grad)
    with FlopCounterMode(display=False) as stock:
        with_backward()
    assert ours == stock.get_total_flops() > 0


@pytest.mark.parametrize("arch,shape", [("small_cnn", (1, 8, 8)), ("resnet18", (3, 32, 32))])
def test_tpap_test_flops_are_about_three_forwards(arch, shape):
    torch.manual_seed(0)
    model = tp.build_model(arch, 10, shape[0], width=8).eval()
    x = torch.rand(4, *shape)
    plain = cost.test_flops_per_batch(model, x)
    tpap = cost.test_flops_per_batch(model, x, xi=0.1)
    assert 2.5 <= tpap / plain <= 4.5
    assert plain == cost.count_flops(lambda: model(x))


def test_fgsm_training_is_cheaper_than_pgd_by_the_hand_count():
    """Forward = 1 unit; an attack step = forward + input backward = 2; the update = forward + backward = 3."""
    torch.manual_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=8)
    cfg = tp.get_profile("smoke")
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    fgsm = cost.train_flops_per_batch(model, x, y, cfg, "fgsm")
    pgd = cost.train_flops_per_batch(model, x, y, cfg, "pgd")
    assert fgsm < pgd
    steps = cfg["pgd_steps"]
    assert fgsm / pgd == pytest.approx((2 + 3) / (2 * steps + 3), abs=0.02)


def test_measure_cost_extrapolates_and_leaves_the_model_alone(digits):
    cfg = tp.get_profile("smoke", width=4)
    torch.manual_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=4).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recs = cost.measure_cost(model, digits, cfg, n_batches=2, warmup=1)
    assert [r["method"] for r in recs] == ["PGD-AT", "TPAP"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training
    table = {r["method"]: r for r in recs}
    x, y = next(iter(batches(digits, cfg["batch_size"], shuffle=False, augment=False)))
    per_batch = cost.train_flops_per_batch(model, x, y, cfg, "pgd")
    expected = per_batch * len(digits.y_train) / cfg["batch_size"] / 1e12
    assert table["PGD-AT"]["train_tflops_per_epoch"] == pytest.approx(expected)
    for r in recs:
        assert all(math.isfinite(r[c]) and r[c] > 0 for c in cost.COLUMNS)
        assert len(r["train_s_per_batch"]) == 2
    ratios = cost.cost_ratios(table)
    assert 2.5 <= ratios["test FLOPs, TPAP / plain"] <= 4.5
    assert ratios["train FLOPs, FGSM-AT / PGD-AT"] < 1


def test_paper_table5_is_k_forward_passes():
    """DeepSpeed's count: every backward = 2 forwards, so PGD-10 = 10 x 3 + 3 = 33, FGSM = 6, TPAP test = 4."""
    eq = cost.forward_equivalents(TABLE5, train_per_test=50000 / 10000)
    assert eq["PGD-AT training"] == pytest.approx(33, rel=0.01)
    assert eq["FGSM-AT training"] == pytest.approx(6, rel=0.01)
    assert eq["TPAP test"] == pytest.approx(4, rel=0.01)


def test_recorded_train_seconds_reads_the_checkpoints_history(digits):
    import statistics

    cfg = tp.get_profile("smoke", epochs=3, width=4, eval_every=0)
    assert cost.recorded_train_seconds(cfg, "fgsm") is None  # not trained yet
    _, history, _ = tp.get_or_train(cfg, progress=False, data=digits.subset(n_train=64))
    secs = cost.recorded_train_seconds(cfg, "fgsm")
    assert secs == statistics.median(h["train_seconds"] for h in history) and secs > 0
    assert cost.recorded_train_seconds(cfg, "pgd") is None  # another recipe: its own checkpoint


def test_hand_count_matches_the_counter_and_the_paper():
    """'measured' is what FlopCounterMode counts (the test above); 'deepspeed' gives the paper's Tab. 5 exactly."""
    paper = cost.forward_equivalents(TABLE5, train_per_test=50000 / 10000)
    ds = cost.hand_count(10, "deepspeed")
    assert all(ds[k] == pytest.approx(paper[k], rel=0.01) for k in paper)
    assert cost.hand_count(5) == {"PGD-AT training": 13, "FGSM-AT training": 5, "plain test": 1, "TPAP test": 3}
    assert cost.hand_count(5, clean_bn_forward=True)["FGSM-AT training"] == 6
    text = report.hand_count_sentence(tp.get_profile("quick"))
    assert "PGD-5" in text and "5 x 2 + 3, 13 forwards" in text and "PGD-10" in text  # the paper's, named as such
    with pytest.raises(ValueError, match="convention"):
        cost.hand_count(10, "flops")


def test_ratio_sentence_renders_the_measured_ratios():
    ours = {"PGD-AT": {"train_s_per_epoch": 30.0, "test_s_per_epoch": 1.0, "train_tflops_per_epoch": 13.0,
                       "test_tflops_per_epoch": 1.0},
            "TPAP": {"train_s_per_epoch": 10.0, "test_s_per_epoch": 2.5, "train_tflops_per_epoch": 5.0,
                     "test_tflops_per_epoch": 3.0}}
    text = report.ratio_sentence(ours, TABLE5, 5)
    assert "one PGD-AT epoch (PGD-5) costs 3.0 FGSM-AT epochs in time and 2.6 in FLOPs (the hand count: 2.6" in text
    assert "TPAP's test costs 2.5 plain tests in time and 3.0 in FLOPs" in text
    assert f"the paper's PGD-10: {273.89 / 66.26:.1f} in time" in text


def test_untrained_model_is_the_profiles_architecture_and_writes_no_checkpoint(digits, tmp_path):
    cfg = tp.get_profile("smoke")
    model, data = cost.untrained_model(cfg, digits)
    assert not model.training and model.fc.out_features == data.num_classes == 10
    assert cost.param_count(model) == cost.param_count(tp.build_model("small_cnn", 10, 1, cfg["width"]))
    again, _ = cost.untrained_model(cfg, digits)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))  # seeded
    assert not (tmp_path / "runs" / "checkpoints").exists()  # nothing trained, nothing saved


def test_recorded_train_seconds_falls_back_to_the_shipped_network(digits, tmp_path, monkeypatch):
    from tpap_nb import runs as R

    monkeypatch.setattr(R, "SHIPPED", tmp_path / "shipped")
    cfg = tp.get_profile("smoke", epochs=2, width=4, n_train=64, eval_every=0)
    tp.get_or_train(cfg, progress=False)
    rec = R.export(cfg, "fgsm", n_test=32)
    tp.train.checkpoint_path(tp.train.recipe_config(cfg, "fgsm")).unlink()  # a fresh clone: the shipped one only
    assert cost.recorded_train_seconds(cfg, "fgsm") == rec["median_epoch_seconds"] > 0
    assert cost.recorded_train_seconds(cfg | {"retrain": True}, "fgsm") is None  # it would train instead
