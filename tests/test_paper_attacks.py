"""The attacks the paper ran (the authors' DIM, advertorch's STA) and the budgeted STA: issue 12.

Small seeded models on random 3 x 16 x 16 images, labels = the model's own predictions (clean
accuracy 100 %), CPU, a few seconds each.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tpap_nb.attacks import sta_advertorch as sta_adv_module
from tpap_nb.attacks.dim import PAPER_SETTINGS as DIM_PAPER
from tpap_nb.attacks.dim import dim, resize_pad
from tpap_nb.attacks.sta_advertorch import PAPER_SETTINGS as STA_PAPER
from tpap_nb.attacks.sta_advertorch import sta_advertorch
from tpap_nb.attacks.sta_flow1 import sta_flow1
from tpap_nb.attacks.stadv import flow_warp

EPS = 8 / 255


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def linear():
    """A seeded linear classifier on raw pixels: undefended, and sensitive to small warps."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)).eval()


@pytest.fixture
def cnn():
    """A seeded tiny conv net (any input size: adaptive pooling), for the step-by-step reference."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 10)
    ).eval()


class ConstantModel(nn.Module):
    """Logits that ignore the input: its prediction can never change."""

    def __init__(self, top: int = 3):
        super().__init__()
        self.register_buffer("logits", torch.linspace(-1, 1, 10).roll(top - 9))
        self.anchor = nn.Parameter(torch.zeros(()))  # so the output depends (trivially) on the input

    def forward(self, x):
        return self.logits.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True) * self.anchor


def _predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


# ---------------------------------------------------------------- the authors' DIM


def _nearest(img: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Nearest resize by index gathering: source index floor(i * in / out) in float32, as PyTorch's 'nearest'."""
    in_h, in_w = img.shape[-2:]
    rows = torch.floor(torch.arange(out_h, dtype=torch.float32) * torch.tensor(in_h / out_h, dtype=torch.float32))
    cols = torch.floor(torch.arange(out_w, dtype=torch.float32) * torch.tensor(in_w / out_w, dtype=torch.float32))
    rows = rows.long().clamp(max=in_h - 1)
    cols = cols.long().clamp(max=in_w - 1)
    return img[:, :, rows][:, :, :, cols]


def _authors_dim_reference(model, x, y, eps, alpha, steps, decay, prob, image_resize, gen):
    """attack/DIM/DIM.py of tly18/TPAP, step by step (one coin per step for the batch, then rnd, top, left)."""
    x_nat = x.clone()
    x_adv = x.clone()
    momentum = 0
    h, w = x.shape[-2:]
    for _ in range(steps):
        x_var = x_adv.clone().requires_grad_(True)
        coin = torch.rand(1, generator=gen).item()
        if coin < prob:
            rnd = torch.randint(w, image_resize, (1,), generator=gen).item()
            rem = image_resize - rnd
            top = torch.randint(0, rem, (1,), generator=gen).item()
            left = torch.randint(0, rem, (1,), generator=gen).item()
            up = _nearest(x_var, rnd, rnd)
            canvas = torch.zeros(len(x), x.shape[1], image_resize, image_resize)
            canvas[:, :, top:top + rnd, left:left + rnd] = up  # zero padding, the rest bottom / right
            x_in = _nearest(canvas, h, w)
        else:
            x_in = x_var
        loss = nn.CrossEntropyLoss()(model(x_in), y)
        loss.backward()
        grad = x_var.grad.detach()
        velocity = grad / grad.abs().mean()
        momentum = decay * momentum + velocity
        x_adv = x_adv + alpha * torch.sign(momentum)
        x_adv = torch.clamp(x_adv, x_nat - eps, x_nat + eps)
        x_adv = torch.clamp(x_adv, 0, 1)
    return x_adv.detach()


@pytest.mark.parametrize("image_resize, prob", [(33, 0.5), (24, 0.5), (20, 1.0), (24, 0.0)])
def test_dim_matches_hand_written_authors_update(cnn, image_resize, prob):
    x = _images(6)
    y = _predict(cnn, x)
    kw = dict(eps=EPS, alpha=0.003, steps=20, decay=1.0, prob=prob, image_resize=image_resize)
    ours = dim(cnn, x, y, **kw, generator=torch.Generator().manual_seed(5))
    ref = _authors_dim_reference(cnn, x, y, EPS, 0.003, 20, 1.0, prob, image_resize, torch.Generator().manual_seed(5))
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0), (ours - ref).abs().max()


def test_dim_paper_settings_and_cifar_transform_is_identity(cnn):
    assert DIM_PAPER == dict(eps=8 / 255, alpha=0.003, steps=20, decay=1.0, prob=0.5, image_resize=33,
                             random_start=False)
    x = _images(4, size=32, seed=3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # 32 -> 33 (rnd = 32, pads 0), nearest back to 32: every pixel where it was
        assert torch.equal(resize_pad(x, 33, gen), x)
    y = _predict(cnn, x)
    with_di = dim(cnn, x, y, prob=1.0, generator=torch.Generator().manual_seed(1))
    without = dim(cnn, x, y, prob=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(with_di, without)


def test_dim_stays_in_eps_ball_and_unit_box(linear):
    x = _images(8)
    y = _predict(linear, x)
    for random_start in (False, True):
        x_adv = dim(linear, x, y, eps=EPS, image_resize=24, random_start=random_start,
                    generator=torch.Generator().manual_seed(0))
        assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
        assert (x_adv - x).abs().max() <= EPS + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_dim_seeded(cnn):
    x = _images(6)
    y = _predict(cnn, x)

    def run(seed):
        return dim(cnn, x, y, image_resize=24, prob=0.5, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_dim_lowers_undefended_accuracy(linear):
    x = _images(32)
    y = _predict(linear, x)  # clean accuracy 100 %
    x_adv = dim(linear, x, y, **DIM_PAPER, generator=torch.Generator().manual_seed(0))
    acc = (_predict(linear, x_adv) == y).float().mean().item()
    assert acc <= 0.75, acc


def test_dim_zero_gradient_gives_x_not_nan():
    """Documented deviation: theirs divides 0 by 0 (NaN everywhere); ours takes no step."""
    model = ConstantModel().eval()
    x = _images(3)
    y = _predict(model, x)
    x_adv = dim(model, x, y, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_adv, x)


def test_dim_restores_model_mode(cnn):
    cnn.train()
    x = _images(2)
    dim(cnn, x, torch.tensor([0, 1]), steps=1, generator=torch.Generator().manual_seed(0))
    assert cnn.training


# ---------------------------------------------------------------- advertorch's STA (a flaw, reproduced)


def test_sta_advertorch_returns_zeros_where_it_fails():
    model = ConstantModel(top=3).eval()
    x = _images(6)
    y = torch.tensor([3, 3, 3, 0, 5, 9])  # the first three can never be misclassified; the rest already are
    x_adv, info = sta_advertorch(model, x, y, **STA_PAPER, return_info=True)
    assert info["failed"].tolist() == [True, True, True, False, False, False]
    assert torch.equal(x_adv[:3], torch.zeros_like(x[:3]))  # a black image, not x
    assert (x_adv[3:].flatten(1).abs().sum(1) > 0).all()
    assert info["zero_fraction"] == 0.5


def test_sta_advertorch_zero_iterations_fails_everything_correct(linear):
    x = _images(4)
    y = _predict(linear, x)
    x_adv = sta_advertorch(linear, x, y, max_iterations=0, search_steps=0)
    assert torch.equal(x_adv, torch.zeros_like(x))


def test_sta_advertorch_succeeds_with_a_changed_misclassified_image(linear):
    x = _images(8)
    y = _predict(linear, x)
    x_adv, info = sta_advertorch(linear, x, y, **STA_PAPER, return_info=True)
    ok = ~info["failed"]
    assert ok.sum() >= 4, info["failed"]
    assert (_predict(linear, x_adv[ok]) != y[ok]).all()
    assert ((x_adv[ok] - x[ok]).flatten(1).abs().amax(1) > 0).all()
    assert torch.equal(x_adv[~ok], torch.zeros_like(x[~ok]))
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_sta_advertorch_constant_never_changes(linear, monkeypatch):
    consts = []
    real = sta_adv_module.spatial_loss

    def spy(model, grid, x, y_onehot, const, grid_ori, confidence=0.0):
        consts.append(const)
        return real(model, grid, x, y_onehot, const, grid_ori, confidence)

    monkeypatch.setattr(sta_adv_module, "spatial_loss", spy)
    x = _images(4)
    y = _predict(linear, x)
    _, info = sta_advertorch(linear, x, y, initial_const=1.0, max_iterations=3, search_steps=4, return_info=True)
    assert info["const_used"] == [1.0] * 4  # a "binary search" that never moves its constant
    assert info["loss_coeffs"] == [1.0] * 4
    assert len(consts) > 4 and set(consts) == {1.0}


# ---------------------------------------------------------------- budgeted STA


@pytest.mark.parametrize("max_flow", [0.05, 0.3, 1.0])
def test_sta_flow1_never_exceeds_its_flow_bound(linear, max_flow):
    x = _images(8)
    y = _predict(linear, x)
    x_adv, info = sta_flow1(linear, x, y, max_flow=max_flow, return_info=True)
    flow = info["flow"]
    assert flow.double().abs().max().item() <= max_flow  # exact, in real numbers (0.05 is not a float32)
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    moved = flow.flatten(1).ne(0).any(1)
    assert torch.equal(x_adv[~moved], x[~moved])
    assert torch.equal(x_adv[moved], flow_warp(x[moved], flow[moved]).clamp(0, 1))  # the image is that flow's
    assert torch.equal(info["success"], _predict(linear, x_adv) != y)


def test_sta_flow1_larger_budget_succeeds_at_least_as_often(linear):
    x = _images(16)
    y = _predict(linear, x)
    wins = []
    for max_flow in (0.0, 0.1, 1.0):
        x_adv = sta_flow1(linear, x, y, max_flow=max_flow)
        wins.append(int((_predict(linear, x_adv) != y).sum()))
    assert wins[0] == 0
    assert wins[0] <= wins[1] <= wins[2]
    assert wins[2] > wins[1], wins  # the bound matters on this model


def test_sta_flow1_zero_budget_and_unmovable_model_return_x(linear):
    x = _images(4)
    y = _predict(linear, x)
    assert torch.equal(sta_flow1(linear, x, y, max_flow=0.0), x)
    model = ConstantModel().eval()
    assert torch.equal(sta_flow1(model, x, _predict(model, x), max_flow=1.0), x)
    with pytest.raises(ValueError, match="max_flow"):
        sta_flow1(linear, x, y, max_flow=float("inf"))
