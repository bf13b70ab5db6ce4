"""TPAP purification (Eq. 5-9) against the equation by hand and against torchattacks.FGSM."""
import pytest
import torch
import torch.nn.functional as F
import torchattacks

import tpap_nb as tp


def eq7_by_hand(model, x, xi):
    """Eq. 6-8 written out with explicit autograd."""
    x = x.clone().requires_grad_(True)
    logits = model(x)
    y_pred = logits.argmax(1)
    loss = F.cross_entropy(logits, y_pred, reduction="sum")
    loss.backward()
    return (x + xi * x.grad.sign()).clamp(0, 1).detach()


@pytest.mark.parametrize("xi", [0.05, 8 / 255, 0.3])
def test_purify_matches_eq7(ro_model, test_xy, xi):
    x, _ = test_xy
    ro_model.zero_grad(set_to_none=True)
    want = eq7_by_hand(ro_model, x, xi)
    ro_model.zero_grad(set_to_none=True)
    got = tp.purify(ro_model, x, xi)
    assert torch.allclose(got, want, atol=1e-6)
    assert (got - x).abs().max() <= xi + 1e-6
    assert (got - x).abs().max() >= xi - 1e-6  # a real step of size xi, not a no-op


def test_purify_matches_torchattacks_fgsm_on_y_pred(ro_model, test_xy):
    x, _ = test_xy
    xi = 0.15
    with torch.no_grad():
        y_pred = ro_model(x).argmax(1)
    ref = torchattacks.FGSM(ro_model, eps=xi)(x, y_pred)
    assert torch.allclose(tp.purify(ro_model, x, xi), ref, atol=1e-6)


def test_purify_leaves_weights_mode_and_grads_alone(ro_model, test_xy):
    x, _ = test_xy
    before = {k: v.clone() for k, v in ro_model.state_dict().items()}
    ro_model.train()
    ro_model.zero_grad(set_to_none=True)
    tp.purify(ro_model, x, 0.1)
    assert ro_model.training, "purify must restore the caller's mode"
    assert all(p.grad is None for p in ro_model.parameters()), "input-only backward: no weight grads"
    for k, v in ro_model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed (BN statistics must not move)"
    ro_model.eval()


def test_tpap_module_under_no_grad(ro_model, test_xy):
    x, y = test_xy
    defended = tp.TPAP(ro_model, xi=0.15)
    with torch.no_grad():
        logits = defended(x)
    assert logits.shape == (len(x), 10)
    with torch.no_grad():
        direct = ro_model(tp.purify(ro_model, x, 0.15))
    assert torch.allclose(logits, direct, atol=1e-5)
    assert not ro_model.training


def test_purification_recovers_pgd_on_robust_overfit_model(ro_model, test_xy):
    """The paper's effect on a tiny FGSM-trained model: TPAP accuracy on PGD-20 exceeds the bare model's."""
    from tpap_nb.attacks import pgd
    from tpap_nb.evaluate import robust_accuracy

    x, y = test_xy
    acc = robust_accuracy(ro_model, x, y, lambda a, b: pgd(ro_model, a, b, 0.3, 0.075, 20), xi=0.15)
    assert acc["tpap"] > acc["bare"] + 0.1, acc


@pytest.mark.parametrize("bad, match", [
    (torch.rand(4, 1, 8, 8) * 2, "outside \\[0, 1\\]"),
    (torch.rand(1, 8, 8), "shape"),
    ((torch.rand(4, 1, 8, 8) * 255).to(torch.uint8), "dtype"),
])
def test_bad_pixels_and_shapes_give_one_clear_error(ro_model, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tp.purify(ro_model, bad, 0.1)


def test_predicting_through_a_tpap_wrapper_leaves_the_inner_networks_mode_alone():
    """eval_mode(TPAP(net)) used to restore the wrapper's train flag onto every submodule: net left in
    train mode, its BatchNorm then updated by every later 'bare' call."""
    from tpap_nb.evaluate import predict
    from tpap_nb.models import build_model, eval_mode

    torch.manual_seed(0)
    net = build_model("small_cnn", 10, 1, 4).eval()
    running = net.body[0][1].running_mean.clone()
    predict(tp.TPAP(net, 0.1), torch.rand(8, 1, 8, 8))
    assert not net.training and torch.equal(net.body[0][1].running_mean, running)
    wrapper = tp.TPAP(net, 0.1)
    with eval_mode(wrapper):
        assert not wrapper.training and not net.training
    assert wrapper.training and not net.training  # each module back to its own flag
