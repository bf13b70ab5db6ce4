"""Tests of the attack registry (Sec. 4.1.3): every attack, checked against references or known answers."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks
from sklearn.datasets import load_digits

from tpap_nb.attacks import ATTACKS, PAPER_ATTACKS, attack_info, attack_settings, build_attack
from tpap_nb.attacks import cw as cw_module
from tpap_nb.attacks.cw import cw_l2
from tpap_nb.attacks.ddn import ddn
from tpap_nb.attacks.fwa import fwa, plan_to_image, transport_cost, window_offsets
from tpap_nb.attacks.stadv import flow_tv, flow_warp, stadv_loss
from tpap_nb.attacks.tidim import fitted_kernel, gaussian_kernel, tidim
from tpap_nb.purify import TPAP

LINF = ("fgsm", "pgd20", "pgd100", "aa", "tidim", "dim")
# Digits are 8x8 with 17 grey levels, so the CIFAR eps of 8/255 is below one grey level: the
# "lowers accuracy" test uses larger budgets and fewer iterations (explicit counts, labelled
# "custom" by attack_label) to stay fast.
DIGITS = {
    "fgsm": dict(eps=0.2),
    "pgd20": dict(eps=0.2, alpha=0.03),
    "pgd100": dict(eps=0.2, alpha=0.01, steps=30),
    "cw2": dict(lr=0.1),
    "cw2_l2": dict(lr=0.1, budget=2.0),
    "ddn": dict(),
    "ddn_l2": dict(budget=2.0),
    "aa": dict(eps=0.2, steps=5, n_queries=250),
    "sta": dict(steps=5, search_steps=2),
    "fwa": dict(eps=0.1, steps=10),
    "tidim": dict(eps=0.2, alpha=0.03, steps=10),
    "dim": dict(eps=0.2, alpha=0.03, steps=10),
    "sta_advertorch": dict(),
    "sta_flow1": dict(),
}


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16
    return x, torch.tensor(data.target)


def _train(model, x, y, steps, lr):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def cnn(digits):
    """An undefended small CNN on digits (about 95% test accuracy)."""
    x, y = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 16, 10))
    return _train(model, x[:1500], y[:1500], 60, 0.05)


@pytest.fixture(scope="module")
def batch(digits):
    x, y = digits
    return x[1500:1548], y[1500:1548]


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def adversarials(cnn, batch):
    """Each registry attack run once on the digits batch, with the DIGITS settings."""
    x, y = batch
    torch.manual_seed(0)
    return {name: build_attack(name, cnn, **DIGITS[name])(x, y) for name in ATTACKS}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_lowers_accuracy(name, cnn, batch, adversarials):
    x, y = batch
    clean, attacked = _acc(cnn, x, y), _acc(cnn, adversarials[name], y)
    assert clean > 0.85
    assert attacked < clean - 0.1, f"{name}: clean {clean:.3f}, attacked {attacked:.3f}"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_outputs_are_detached_images_in_the_ball(name, batch, adversarials):
    x, _ = batch
    x_adv = adversarials[name]
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if name in LINF:
        eps = attack_settings(name, **DIGITS[name])["eps"]
        assert (x_adv - x).abs().max() <= eps + 1e-6


def test_fgsm_and_pgd_equal_torchattacks(cnn, batch):
    x, y = batch
    ours = build_attack("fgsm", cnn, eps=0.1)(x, y)
    torch.testing.assert_close(ours, torchattacks.FGSM(cnn, eps=0.1)(x, y), atol=1e-6, rtol=0)
    ours = build_attack("pgd20", cnn, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    theirs = torchattacks.PGD(cnn, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


class _Offset(nn.Module):
    """Logits + 100: same argmax and CE; keeps torchattacks' CW away from its (1 - onehot) * Z slip."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 100


def test_cw_without_binary_search_equals_torchattacks(cnn, batch, monkeypatch):
    x, y = batch
    x = x * 0.9 + 0.05  # no pixel at 0 or 1, where torchattacks' CW starts at atanh(+-1)
    monkeypatch.setattr(cw_module, "_ONE_MINUS_EPS", 1.0)  # start at atanh(2x - 1) exactly, as torchattacks
    model = _Offset(cnn)
    ours = cw_l2(model, x, y, c=10.0, kappa=0.0, steps=10, lr=0.05, binary_search_steps=1)
    theirs = torchattacks.CW(model, c=10, kappa=0, steps=10, lr=0.05)(x, y)
    assert (ours != x).any(), "the comparison needs some successful examples"
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_cw_binary_search_finds_more_examples(cnn, batch):
    x, y = batch
    one = cw_l2(cnn, x, y, c=0.1, kappa=0.0, steps=10, lr=0.1, binary_search_steps=1)
    four = cw_l2(cnn, x, y, c=0.1, kappa=0.0, steps=10, lr=0.1, binary_search_steps=4)
    assert _acc(cnn, four, y) < _acc(cnn, one, y)


def test_ddn_norm_shrinks_with_more_iterations(cnn, batch):
    x, y = batch
    short, long = (ddn(cnn, x, y, steps=s, levels=None) for s in (10, 50))
    both = (cnn(short).argmax(1) != y) & (cnn(long).argmax(1) != y) & (cnn(x).argmax(1) == y)
    assert both.sum() >= 10
    norm = lambda a: (a - x)[both].flatten(1).norm(dim=1).mean()  # noqa: E731
    assert norm(long) < 0.9 * norm(short)  # here about 0.54 vs 0.75: the norm keeps shrinking


def test_ddn_output_is_quantised(cnn, batch):
    x, y = batch
    x = x * 0.97  # off the 16-level grid, so quantisation is visible
    x_adv = ddn(cnn, x, y, steps=20, levels=16)
    moved = (x_adv != x).flatten(1).any(1)
    assert moved.sum() > 10
    grid = x_adv[moved] * 15
    torch.testing.assert_close(grid, grid.round(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,unbounded", [("cw2_l2", "cw2"), ("ddn_l2", "ddn")])
def test_l2_budget_is_never_exceeded(name, unbounded, cnn, batch):
    x, y = batch
    settings = dict(lr=0.1) if name == "cw2_l2" else {}
    free = build_attack(unbounded, cnn, **settings)(x, y)
    budget = float(torch.quantile((free - x).flatten(1).norm(dim=1), 0.5))  # half the examples are beyond it
    bounded = build_attack(name, cnn, budget=budget, **settings)(x, y)
    assert ((free - x).flatten(1).norm(dim=1) > budget + 1e-6).any()
    assert (bounded - x).flatten(1).norm(dim=1).max() <= budget + 1e-6


def test_stadv_warp_moves_pixels_by_resampling(batch):
    x, _ = batch
    flow = torch.zeros(len(x), 2, 8, 8)
    torch.testing.assert_close(flow_warp(x, flow), x, atol=1e-6, rtol=0)
    flow[:, 0] = 1.0  # every pixel samples its right neighbour
    torch.testing.assert_close(flow_warp(x, flow)[..., :-1], x[..., 1:], atol=1e-6, rtol=0)
    flow[:, 0] = 0.5  # half way: the mean of the two neighbours
    mean = (x[..., 1:] + x[..., :-1]) / 2
    torch.testing.assert_close(flow_warp(x, flow)[..., :-1], mean, atol=1e-6, rtol=0)


def test_stadv_loss_has_the_flow_smoothness_term(cnn, batch):
    x, y = batch
    torch.manual_seed(0)
    flow = 0.3 * torch.randn(len(x), 2, 8, 8)
    assert flow_tv(torch.zeros_like(flow)).abs().max() == 0
    assert flow_tv(torch.full_like(flow, 0.7)).abs().max() < 1e-5  # a translation is perfectly smooth
    tv = flow_tv(flow)
    assert (tv > 0).all()
    diff = stadv_loss(cnn, x, y, flow, tau=1.0) - stadv_loss(cnn, x, y, flow, tau=0.0)
    torch.testing.assert_close(diff, tv, atol=1e-4, rtol=1e-5)
    smooth = stadv_loss(cnn, x, y, torch.zeros_like(flow), tau=10.0)
    assert (stadv_loss(cnn, x, y, flow, tau=10.0) > smooth).all()


def test_fwa_plan_stays_in_the_wasserstein_ball(cnn, batch):
    x, y = batch
    eps = 0.05
    x_adv, pi = fwa(cnn, x, y, eps=eps, kernel_size=3, steps=5, return_plan=True)
    offsets = window_offsets(3)
    assert pi.min() >= 0
    torch.testing.assert_close(pi.sum(-1), x, atol=1e-5, rtol=0)  # each pixel sends out its own mass
    torch.testing.assert_close(plan_to_image(pi, offsets), x_adv)
    torch.testing.assert_close(x_adv.sum((2, 3)), x.sum((2, 3)), atol=1e-4, rtol=1e-5)  # mass per channel
    budget = eps * x.sum((1, 2, 3))
    cost = transport_cost(pi, offsets)
    assert (cost <= budget * (1 + 1e-4) + 1e-6).all()
    assert (cost > 0.5 * budget).all(), "the attack should use its Wasserstein budget"


def test_fwa_window_matches_the_reference_for_even_kernels():
    assert sorted({dy for dy, _ in window_offsets(4)}) == [-2, -1, 0, 1]
    assert sorted({dy for dy, _ in window_offsets(3)}) == [-1, 0, 1]


def test_tidim_equals_torchattacks_tifgsm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(32, 10)).eval()
    x, y = torch.rand(16, 3, 16, 16), torch.randint(0, 10, (16,))
    kw = dict(eps=0.05, alpha=0.01, steps=5, decay=1.0, len_kernel=5, nsig=3, resize_rate=17 / 16,
              diversity_prob=0.5)
    reference = torchattacks.TIFGSM(model, **kw)
    torch.testing.assert_close(gaussian_kernel(5, 3), reference.stacked_kernel[0, 0], atol=1e-7, rtol=0)
    torch.manual_seed(1)
    theirs = reference(x, y)
    torch.manual_seed(1)
    ours = tidim(model, x, y, resize_back=False, **kw)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_tidim_kernel_fits_small_images():
    kernel = fitted_kernel(7, 3.0, 4, 4)
    assert kernel.shape == (3, 3)
    middle = gaussian_kernel(7, 3.0)[2:5, 2:5]  # the same Gaussian, truncated
    torch.testing.assert_close(kernel, middle / middle.sum())


def _exact_linf_robust(linear, x, y, eps):
    """Exact L-inf robustness of a linear classifier in the box [0, 1]: worst case per rival class j."""
    weight, bias = linear.weight, linear.bias
    flat, robust = x.flatten(1), linear(x.flatten(1)).argmax(1) == y
    for j in range(weight.shape[0]):
        w = weight[y] - weight[j]
        worst = (flat - eps * w.sign()).clamp(0, 1)
        robust &= (y == j) | ((w * worst).sum(1) + bias[y] - bias[j] > 0)
    return robust


@pytest.fixture(scope="module")
def linear(digits):
    """A 10-class linear classifier f(x) = W x + b on digits, whose exact robust accuracy is known."""
    x, y = digits
    return _train(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), x[:1500], y[:1500], 200, 0.05)


@pytest.mark.slow
def test_autoattack_reaches_the_exact_robust_accuracy_of_a_linear_model(digits, linear):
    x, y = digits
    x, y, eps = x[1500:1600], y[1500:1600], 0.06
    exact = int(_exact_linf_robust(linear[1], x, y, eps).sum())
    assert 20 < exact < 80
    # Square is a gradient-free fallback that a linear model never needs; 100 queries keep this fast.
    x_adv = build_attack("aa", linear, eps=eps, n_queries=100)(x, y)
    assert abs(int((linear(x_adv).argmax(1) == y).sum()) - exact) <= 1


def test_pgd_reaches_the_exact_robust_accuracy_of_a_binary_linear_model(digits):
    """For 2 classes CE is monotone in the margin, so PGD's ascent finds the exact worst case."""
    x, y = digits
    y = (y >= 5).long()
    model = _train(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), x[:1500], y[:1500], 200, 0.05)
    x, y, eps = x[1500:1600], y[1500:1600], 0.04
    exact = int(_exact_linf_robust(model[1], x, y, eps).sum())
    assert 20 < exact < 80
    for name in ("pgd20", "pgd100"):
        x_adv = build_attack(name, model, eps=eps, alpha=0.01)(x, y)
        assert abs(int((model(x_adv).argmax(1) == y).sum()) - exact) <= 1, name


def test_unknown_names_and_settings_are_clear_errors(cnn):
    with pytest.raises(ValueError, match="known attacks: fgsm, pgd20"):
        build_attack("pgd", cnn)
    with pytest.raises(ValueError, match=r"valid settings: alpha, batch_size, eps"):
        build_attack("pgd20", cnn, epsilon=0.1)
    with pytest.raises(ValueError, match="always runs its definition"):
        attack_settings("pgd20", scale=0.5)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_attacking_a_gradient_free_model_is_a_clear_error(cnn, batch):
    x, y = batch
    with pytest.raises(RuntimeError, match="Attack the undefended model"):
        build_attack("fgsm", TPAP(cnn))(x, y)


def test_settings_are_the_definition_and_info():
    assert attack_settings("pgd100")["steps"] == 100
    assert attack_settings("pgd20")["steps"] == 20
    assert attack_settings("aa")["n_queries"] == 5000 and attack_settings("aa")["steps"] == 100
    assert attack_settings("cw2")["binary_search_steps"] == 4
    assert set(PAPER_ATTACKS) <= set(ATTACKS)
    assert "torchattacks" in attack_info("aa") and "own DDN" in attack_info("ddn")


def test_attacks_run_in_eval_mode_and_restore_the_mode(batch):
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            seen.append(self.training)
            return self.linear(x.flatten(1))

    x, y = batch
    model = Spy().train()
    a = build_attack("fgsm", model, batch_size=16)(x, y)
    b = build_attack("fgsm", model)(x, y)
    assert seen and not any(seen) and model.training
    torch.testing.assert_close(a, b)
