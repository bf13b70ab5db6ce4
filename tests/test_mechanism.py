"""experiments/mechanism.py: Fig. 3a measured (loss along the FGSM and random directions) and the 2-D toy."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tpap_nb as tp
from tpap_nb.attacks import fgsm, pgd
from tpap_nb.experiments import mechanism as mech
from tpap_nb.purify import purify, purify_with_pred


class AsImage(nn.Module):
    """A points model seen by the kit as a model of 2x1x1 'images' (the points are in [0, 1]^2)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.flatten(1))


@pytest.fixture(scope="module")
def study():
    """The toy at its chosen setting (TOY), trained once (seconds)."""
    return mech.toy_study(mech.toy_settings())


# ---------------------------------------------------------------- the toy's attacks are the kit's
def test_toy_fgsm_pgd_and_purify_are_the_kits_on_points_as_images():
    net = mech.toy_mlp(32, seed=3).eval()
    x, y = mech.toy_data(64, 0.05, seed=1)[:2]
    img = AsImage(net)
    x4 = x.view(-1, 2, 1, 1)
    assert torch.equal(mech.toy_fgsm(net, x, y, 0.1), fgsm(img, x4, y, 0.1).view(-1, 2))
    ref = pgd(img, x4, y, 0.1, alpha=0.025, steps=7, random_start=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(mech.toy_pgd(net, x, y, 0.1, steps=7, seed=5), ref.view(-1, 2))
    x_pur, y_pred = mech.toy_purify(net, x, 0.15)
    ref_pur, ref_pred = purify_with_pred(img, x4, 0.15)
    assert torch.equal(x_pur, ref_pur.view(-1, 2)) and torch.equal(y_pred, ref_pred)
    # By hand, Eq. 7-8: one step of xi along the sign of the gradient of the predicted label's loss
    assert torch.allclose((x_pur - x).abs()[(x_pur > 0) & (x_pur < 1)], torch.tensor(0.15))


def test_toy_settings_profiles_and_overrides():
    assert mech.toy_settings() == mech.TOY == mech.toy_settings(tp.get_profile("quick")["toy"])
    smoke = mech.toy_settings(tp.get_profile("smoke")["toy"])
    assert smoke["n"] < mech.TOY["n"] and smoke["epochs"] < mech.TOY["epochs"] and smoke["eps"] == mech.TOY["eps"]
    quick = tp.get_profile("quick")["toy"]
    assert mech.toy_settings(quick, eps=0.1, epochs=None)["xi"] == 0.1  # xi follows eps (the paper's xi = eps)
    assert mech.toy_settings(eps=0.1, xi=0.05)["xi"] == 0.05
    assert mech.toy_settings(quick, epochs=None)["epochs"] == mech.TOY["epochs"]


def test_the_toy_robustly_overfits_fgsm_at_the_chosen_setting(study):
    """Sec. 3.2 on the training points (FGSM above 90 %, PGD-20 below 10 %), and TPAP recovering PGD on the test."""
    tr, ok = study["train_ok"], study["ok"]
    assert study["overfits"]
    assert tr["fgsm"].mean() > 0.9 and tr["pgd"].mean() < 0.1, (tr["fgsm"].mean(), tr["pgd"].mean())
    assert ok["fgsm"].mean() > 0.8 and ok["pgd"].mean() < 0.2
    assert ok["tpap_pgd"].mean() > ok["pgd"].mean() + 0.5
    assert len(study["y"]) == mech.TOY["n"] and set(ok) == {"clean", "fgsm", "pgd", "tpap_clean", "tpap_fgsm",
                                                              "tpap_pgd"}
    text = mech.toy_sentence(study)
    assert "robustly overfits FGSM" in text and "not" not in text.split(":")[0]
    assert f"PGD-20 {100 * tr['pgd'].mean():.1f} %" in text and "Purification raises PGD-20 accuracy" in text
    assert f"eps = {mech.TOY['eps']:g}" in mech.toy_label(study["settings"])


def test_the_toy_figure_and_its_points(study):
    idx = mech.toy_points(study, k=4, seed=0)
    assert len(idx) == 4 and all(study["ok"]["fgsm"][idx]) and not any(study["ok"]["pgd"][idx])
    assert np.array_equal(idx, mech.toy_points(study, k=4, seed=0))
    fig = mech.plot_toy(study, idx, grid=40)
    assert len(fig.axes) == 2 and "eps = 0.18" in fig._suptitle.get_text()
    plt.close(fig)
    numbers = mech.toy_numbers(study)
    assert numbers["overfits"] and numbers["accuracy"]["train_fgsm"] > 90


def test_the_smoke_toy_is_tiny_and_its_sentence_says_what_it_measured():
    s = mech.toy_settings(tp.get_profile("smoke")["toy"])
    threads = torch.get_num_threads()
    small = mech.toy_study(s)
    assert torch.get_num_threads() == threads  # the toy's one thread is given back
    assert len(small["y"]) == s["n"]
    text = mech.toy_sentence(small)
    assert ("does **not** robustly overfit" in text) == (not small["overfits"])


def test_toy_sentence_reflects_constructed_verdicts():
    n = 100
    ones, zeros = np.ones(n, bool), np.zeros(n, bool)
    fake = {"settings": mech.TOY, "y": torch.zeros(n), "overfits": False,
            "train_ok": {"fgsm": np.r_[ones[:50], zeros[:50]], "pgd": zeros},
            "ok": {"clean": np.r_[ones[:90], zeros[:10]], "fgsm": np.r_[ones[:60], zeros[:40]], "pgd": zeros,
                   "tpap_clean": ones, "tpap_fgsm": ones, "tpap_pgd": np.r_[ones[:2], zeros[:98]]}}
    text = mech.toy_sentence(fake)
    assert "does **not** robustly overfit FGSM" in text and "FGSM 50.0 %, PGD-20 0.0 %" in text
    assert "clean 90.0 % (" in text and "do not differ at n = 100" in text  # 2 points in 100: undecided
    assert "label leaking" not in text  # FGSM below clean here
    fake["ok"]["fgsm"] = ones
    assert "label leaking" in mech.toy_sentence(fake)


# ---------------------------------------------------------------- loss along directions, real images
def test_margin_is_the_true_logit_minus_the_best_other():
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, -1.0]])
    assert torch.allclose(mech.margin(logits, torch.tensor([0, 0])), torch.tensor([1.0, -3.0]))


def test_direction_curves_shape_and_their_points(ro_model, test_xy):
    x, y = test_xy[0][:5], test_xy[1][:5]
    eps, xi = 0.3, 0.15
    c = mech.loss_along_directions(ro_model, x, y, eps, steps=41, n_random=3, seed=1, xi=xi)
    t = c["t"]
    assert t.shape == (41,) and t[0] == pytest.approx(-2 * eps) and t[-1] == pytest.approx(2 * eps)
    assert c["loss"]["fgsm"].shape == (5, 41) and c["loss"]["random"].shape == (5, 3, 41)
    assert c["margin"]["fgsm"].shape == (5, 41) and c["margin"]["random"].shape == (5, 3, 41)
    zero, at_eps = mech.grid_index(c, 0.0), mech.grid_index(c, eps)
    assert t[zero] == pytest.approx(0, abs=1e-12) and t[at_eps] == pytest.approx(eps)
    with torch.no_grad():
        clean = F.cross_entropy(ro_model(x), y, reduction="none").numpy()
        x_fgsm = fgsm(ro_model, x, y, eps)  # the kit's FGSM example is the curve's point t = eps
        at_fgsm = F.cross_entropy(ro_model(x_fgsm), y, reduction="none").numpy()
        at_pur = F.cross_entropy(ro_model(purify(ro_model, x_fgsm, xi)), y, reduction="none").numpy()
        pur_clean = F.cross_entropy(ro_model(purify(ro_model, x, xi)), y, reduction="none").numpy()
        right = (ro_model(x).argmax(1) == y).numpy()
    np.testing.assert_allclose(c["loss"]["fgsm"][:, zero], clean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c["loss"]["random"][:, :, zero], np.repeat(clean[:, None], 3, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c["clean_loss"], clean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c["loss"]["fgsm"][:, at_eps], at_fgsm, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c["pur_fgsm"]["loss"], at_pur, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c["pur_clean"]["loss"], pur_clean, rtol=1e-4, atol=1e-5)
    assert right.any()
    # A correctly classified clean image is purified by an FGSM step of xi: on the path, at t = xi (Sec. 3.3)
    np.testing.assert_allclose(c["pur_clean"]["t"][right], xi)
    np.testing.assert_allclose(c["margin"]["fgsm"][right, mech.grid_index(c, xi)], c["pur_clean"]["margin"][right],
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="whole number"):
        mech.loss_along_directions(ro_model, x, y, eps, steps=40)
    again = mech.loss_along_directions(ro_model, x, y, eps, steps=41, n_random=3, seed=1, xi=xi)
    np.testing.assert_array_equal(again["loss"]["random"], c["loss"]["random"])  # seeded
    fig = mech.plot_directions({"FGSM-RO": c, "again": again}, n_draw=3, title="test")
    assert len(fig.axes) == 4
    plt.close(fig)


def test_direction_curves_on_three_channel_images():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 10)).eval()
    x, y = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 7])
    c = mech.loss_along_directions(net, x, y, 8 / 255, steps=9, n_random=2)
    assert c["loss"]["fgsm"].shape == (2, 9) and c["loss"]["random"].shape == (2, 2, 9)


def _curves(margin_rows, n_random=2, eps=0.3):
    """A hand-made result of loss_along_directions: FGSM margins as given, flat random ones, loss softplus(-m)."""
    m = np.asarray(margin_rows, dtype=float)
    n, steps = m.shape
    t = np.linspace(-2 * eps, 2 * eps, steps)
    rand = np.repeat(m[:, :1, None], n_random, 1) * np.ones((1, 1, steps))
    loss = np.log1p(np.exp(-m))
    pur = {"t": np.zeros(n), "loss": loss[:, 0], "margin": m[:, 0]}
    return {"t": t, "eps": eps, "xi": eps, "n": n, "n_random": n_random, "seed": 0, "span": 2.0,
            "loss": {"fgsm": loss, "random": np.log1p(np.exp(-rand))}, "margin": {"fgsm": m, "random": rand},
            "clean_loss": loss[:, steps // 2], "pur_clean": pur, "pur_fgsm": pur}


def test_the_sentence_reflects_the_curves():
    t = np.linspace(-0.6, 0.6, 41)
    u = np.clip(t, 0, None)
    bend = 5 - 3 * np.sin(np.pi * np.clip(u / 0.3, 0, 1))  # dips to 2 at t = eps / 2, back to 5 at t = eps
    fall = 2 - 10 * u  # falls throughout: -1 at t = eps, misclassified there
    flat = 5 + u
    b = mech.bends(_curves([bend, bend, fall, flat]))
    assert b["bend"].tolist() == [True, True, False, False] and b["falls"].tolist() == [False, False, True, False]
    assert b["flat"].tolist() == [False, False, False, True]
    assert b["low_t"][0] == pytest.approx(0.15)
    assert b["correct_at_eps"].tolist() == [True, True, False, True]
    ro, at = _curves([bend] * 3), _curves([fall] * 3)
    text = mech.directions_sentence({"FGSM-RO": ro, "PGD-AT": at})
    assert "for **FGSM-RO** the margin dips and comes back on 3 of 3 images, and its median goes from 5.00 at the " \
           "clean image to 5.00 at the FGSM example, which is classified correctly on 3 of 3" in text
    assert "for **PGD-AT** the margin falls throughout on 3 of 3 images, and its median goes from 2.00" in text
    assert "correctly on 0 of 3" in text
    assert "do not differ in how often the margin dips and comes back at n = 3 (3 of 3 vs 0 of 3 images" in text
    big = mech.directions_sentence({"FGSM-RO": _curves([bend] * 40), "PGD-AT": _curves([fall] * 40)})
    assert "The dip-and-return is more frequent for FGSM-RO than for PGD-AT (40 of 40 vs 0 of 40 images" in big
    one = mech.directions_sentence({"one": _curves([flat] * 2)})
    assert "does not fall on 2 of 2 images" in one and "frequent" not in one
    numbers = mech.curve_numbers({"FGSM-RO": ro, "PGD-AT": at})
    assert numbers["FGSM-RO"]["dips_and_returns"] == 3 and numbers["PGD-AT"]["falls"] == 3
    assert numbers["PGD-AT"]["correct_at_eps"] == 0 and numbers["steps"] == 41
