"""Fig. 6-7 helpers: Grad-CAM maps (shape, range, location, no side effects) and the separation scores."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import tpap_nb as tp
from tpap_nb import report
from tpap_nb.experiments import gradcam, tsne
from tpap_nb.stats import wilson


class MeanModel(nn.Module):
    """logit_0 = mean of a 1x1-conv copy of the image (pooled 2x2 when `pool`), logit_1 = minus that.

    For class 0, Grad-CAM weights are positive, so the map is the (pooled) image itself: its
    peak must sit where the image is bright.
    """

    def __init__(self, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)
        self.body = nn.Sequential(self.conv, nn.AvgPool2d(2) if pool else nn.Identity())
        self.cam_layer = self.body

    def features(self, x):
        return self.body(x).mean((2, 3))

    def forward(self, x):
        m = self.features(x)
        return torch.cat([m, -m], 1)


def blob(n=3, size=8, corner=(0, 0)):
    x = torch.zeros(n, 1, size, size)
    r, c = corner
    x[:, :, r:r + 2, c:c + 2] = 1.0
    return x


@pytest.mark.parametrize("pool", [False, True])
def test_gradcam_map_peaks_on_the_bright_region_at_image_size(pool):
    model = MeanModel(pool).eval()
    x = blob(corner=(1, 5))
    out = gradcam.gradcam_maps(model, x, targets=torch.zeros(3, dtype=torch.long))
    cam, low = out["cam"], out["cam_lowres"]
    assert cam.shape == (3, 8, 8)
    assert out["layer_hw"] == ((4, 4) if pool else (8, 8)) == low.shape[1:]
    # By hand: A = the (pooled) image, d logit_0 / dA = 1 / cells, so the map is A / cells, unscaled.
    by_hand = torch.nn.functional.avg_pool2d(x, 2) / 16 if pool else x / 64
    assert np.allclose(low, by_hand[:, 0].numpy(), atol=1e-7)
    assert np.array_equal(cam, np.kron(low, np.ones((2, 2), np.float32)) if pool else low)  # nearest: blocks
    top_right = cam[:, :4, 4:].sum((1, 2)) / cam.sum((1, 2))
    assert (top_right > 0.6).all(), top_right  # the upsampled map stays where the object is
    smooth = gradcam.gradcam_maps(model, x, targets=torch.zeros(3, dtype=torch.long), upsample="bilinear")["cam"]
    assert not pool or len(np.unique(smooth)) > len(np.unique(cam))  # bilinear invents in-between values


@pytest.mark.parametrize("arch,shape,width", [("small_cnn", (1, 8, 8), 8), ("resnet18", (3, 32, 32), 8)])
def test_gradcam_on_kit_models_uses_cam_layer_and_leaves_no_trace(arch, shape, width):
    torch.manual_seed(0)
    model = tp.build_model(arch, 10, shape[0], width=width)
    model.train()  # a mode the wrapper must restore (GradCAM itself switches to eval)
    sentinel = torch.full_like(model.fc.weight, 7.0)
    model.fc.weight.grad = sentinel
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, *shape)
    out = gradcam.gradcam_maps(model, x)
    assert out["cam"].shape == (4, *shape[1:])
    assert np.isfinite(out["cam"]).all() and out["cam"].min() >= 0
    assert out["cam"].max() == pytest.approx(out["cam_lowres"].max())  # the same values, upsampled by repetition
    assert out["y_pred"].shape == (4,) and ((out["conf"] > 0) & (out["conf"] <= 1)).all()
    assert gradcam.count_hooks(model) == 0
    assert model.training
    assert model.fc.weight.grad is sentinel
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    after = model.state_dict()  # eval mode during Grad-CAM: BN running stats untouched
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gradcam_failure_is_raised_not_swallowed_and_cleans_up():
    model = tp.build_model("small_cnn", 10, 1, width=4).eval()
    with pytest.raises(RuntimeError, match="pytorch-grad-cam failed"):
        gradcam.gradcam_maps(model, torch.rand(2, 1, 8, 8), targets=torch.tensor([3, 99]))
    assert gradcam.count_hooks(model) == 0
    assert all(p.requires_grad for p in model.parameters())


def test_find_layer_by_name_and_default():
    model = tp.build_model("small_cnn", 10, 1, width=4)
    assert gradcam.find_layer(model) is model.cam_layer
    assert gradcam.find_layer(model, "body.3") is model.body[3]
    with pytest.raises(ValueError, match="no submodule"):
        gradcam.find_layer(model, "body.99")


def test_object_outline_interior_and_mass_by_hand():
    x = torch.zeros(1, 1, 7, 7)
    x[:, :, 1:6, 1:6] = 0.9  # a 5x5 square on black
    mask = gradcam.object_mask(x, 0.25)
    outline, inner = gradcam.outline_interior(mask)
    assert mask.sum() == 25 and outline.sum() == 16 and inner.sum() == 9
    cam = mask.astype(np.float32)  # all mass on the object
    assert gradcam.cam_mass(cam, mask)[0] == pytest.approx(1.0)
    assert gradcam.cam_mass(cam, inner)[0] == pytest.approx(9 / 25)
    assert np.isnan(gradcam.cam_mass(np.zeros_like(cam), mask)[0])
    assert gradcam.cam_correlation(cam, cam)[0] == pytest.approx(1.0)
    assert gradcam.cam_correlation(cam, 1 - cam)[0] == pytest.approx(-1.0)


def test_pick_examples_by_name_and_index():
    y = torch.tensor([3, 1, 3, 8, 3, 8])
    names = [str(i) for i in range(10)]
    assert gradcam.pick_examples(y, "3,8", names, 2) == [0, 2, 3, 5]
    assert gradcam.pick_examples(y, [1], names, 5) == [1]
    with pytest.raises(ValueError, match="Unknown class"):
        gradcam.pick_examples(y, "cat", names, 1)


def test_pick_examples_draws_with_the_seed():
    y = torch.arange(200) % 4
    names = [str(i) for i in range(4)]
    draws = {s: gradcam.pick_examples(y, "1,2", names, 3, seed=s) for s in range(5)}
    assert draws[0] == gradcam.pick_examples(y, "1,2", names, 3, seed=0)  # repeatable
    assert len({tuple(d) for d in draws.values()}) > 1  # the seed matters
    assert all([int(y[i]) for i in d] == [1, 1, 1, 2, 2, 2] for d in draws.values())
    assert any(d[:3] != [1, 5, 9] for d in draws.values())  # not the first ones


def test_spatial_layers_list_each_block_with_its_map():
    model = tp.build_model("small_cnn", 10, 1, width=4)
    x = torch.rand(2, 1, 8, 8)
    layers = dict(gradcam.spatial_layers(model, x))
    assert layers["body.0"] == (8, 8) and layers["body.3"] == (4, 4) and layers["body.6"] == (2, 2)


def test_shown_correct_gives_each_columns_verdicts_on_the_shown_examples():
    y = torch.tensor([0, 1, 2, 3])
    pred = {"x_c": torch.tensor([0, 1, 2, 0]), "x_pgd20": torch.tensor([5, 1, 5, 5]),
            "x_c.pur": torch.tensor([0, 1, 9, 3]), "x_pgd20.pur": torch.tensor([0, 1, 5, 3])}
    c = gradcam.shown_correct({"y_pred": pred}, [0, 2, 3], y)
    assert set(c) == set(gradcam.FIG6_COLUMNS)
    assert c["x_pgd20"].tolist() == [False, False, False] and c["x_pgd20.pur"].tolist() == [True, False, True]
    assert c["x_c"].tolist() == [True, True, False] and c["x_c.pur"].tolist() == [True, False, True]


def _clusters(std, seed=0, n=120):
    from sklearn.datasets import make_blobs

    return make_blobs(n_samples=n, centers=4, n_features=16, cluster_std=std, center_box=(-10, 10), random_state=seed)


def test_separation_scores_rank_separated_above_mixed():
    xs, ys = _clusters(0.5)
    xm, ym = _clusters(12.0)
    rng = np.random.default_rng(0)
    sep = tsne.separation_scores(xs, ys, embedding=xs[:, :2], k=5)
    mixed = tsne.separation_scores(xm, ym, embedding=xm[:, :2], k=5)
    shuffled = tsne.separation_scores(xs, rng.permutation(ys), embedding=xs[:, :2], k=5)
    assert sep["knn_acc"] > 0.95 and sep["silhouette_feat"] > 0.5
    assert sep["knn_acc"] > mixed["knn_acc"] > shuffled["knn_acc"] - 0.1
    assert sep["silhouette_feat"] > mixed["silhouette_feat"] > shuffled["silhouette_feat"] - 0.1
    assert sep["silhouette_2d"] > mixed["silhouette_2d"]
    assert shuffled["knn_acc"] < 0.5


def test_tsne_is_repeatable_with_the_seed_and_separates_clusters():
    x, y = _clusters(0.5, n=60)
    a = tsne.tsne_embed(x, seed=0, perplexity=10)
    b = tsne.tsne_embed(x, seed=0, perplexity=10)
    assert a.shape == (60, 2)
    np.testing.assert_array_equal(a, b)
    assert tsne.separation_scores(x, y, embedding=a)["silhouette_2d"] > 0.5
    r0 = tsne.tsne_embed(x, seed=0, perplexity=10, init="random")  # here the seed matters
    np.testing.assert_array_equal(r0, tsne.tsne_embed(x, seed=0, perplexity=10, init="random"))
    assert not np.allclose(r0, tsne.tsne_embed(x, seed=1, perplexity=10, init="random"), atol=1e-3)


def test_features_and_fig7_attacks_stay_in_the_ball():
    torch.manual_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=4).train()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    feats = tsne.extract_features(model, x)
    assert feats.shape == (6, 16) and model.training
    cfg = tp.get_profile("smoke")
    attacks = tsne.fig7_attacks(model, "clean,fgsm,pgd20,tidim", cfg)
    assert attacks["clean"] is None
    for name in ("fgsm", "pgd20", "tidim"):
        x_adv = attacks[name](x, y)
        assert (x_adv - x).abs().max() <= cfg["eps"] + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_paired_verdict():
    rng = np.random.default_rng(0)
    assert gradcam.paired_verdict(0.3 + 0.1 * rng.standard_normal(50), 0.05)[0] == "agrees"
    assert gradcam.paired_verdict(-0.3 + 0.1 * rng.standard_normal(50), 0.05)[0] == "opposite"
    assert gradcam.paired_verdict(rng.standard_normal(50), 0.05)[0] == "no clear difference"
    assert gradcam.paired_verdict(0.01 + 0.001 * rng.standard_normal(50), 0.05)[0].startswith("real but small")


def test_fig6_claims_read_synthetic_maps():
    """Purified maps that copy the clean one and adversarial maps that do not: the bias claims must agree."""
    rng = np.random.default_rng(0)
    n = 40
    x = torch.zeros(n, 1, 8, 8)
    x[:, :, 2:6, 2:6] = 1.0
    mask = gradcam.object_mask(x)
    clean = rng.random((n, 8, 8)).astype(np.float32) * 0.2 + mask * 0.8  # attention on the object
    noise = rng.random((n, 8, 8)).astype(np.float32)
    y = torch.zeros(n, dtype=torch.long)
    preds = {c: y for c in gradcam.FIG6_COLUMNS}
    tpap = {"x_c": clean, "x_pgd20": noise, "x_c.pur": clean * 0.9 + 0.05, "x_pgd20.pur": clean * 0.8 + 0.1}
    base = {"x_c": clean, "x_pgd20": clean * 0.95, "x_c.pur": clean, "x_pgd20.pur": clean}
    records = (gradcam.attention_records(tpap, preds, y, mask, "x_c", "TPAP")
               + gradcam.attention_records(base, preds, y, mask, "x_c", "PGD-AT"))
    claims = gradcam.fig6_claims(records).set_index("claim")
    verdicts = claims.verdict.tolist()
    assert verdicts[0] == "agrees"  # x_pgd20 biased compared with the purified maps
    assert verdicts[2] == "agrees"  # correctly classified: mass on the object
    assert verdicts[4] == "agrees"  # purification restores the map
    assert verdicts[5] == "agrees"  # the baseline's adversarial map stays put
    summary = gradcam.fig6_summary(records)
    assert summary.loc[("TPAP", "x_c"), "corr_with_x_c"] == pytest.approx(1.0)


def test_fig7_panels_one_record_per_row_and_attack(digits):
    torch.manual_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=4).eval()
    x, y = digits.test_batch(40)
    cfg = tp.get_profile("smoke")
    panels, records = tsne.fig7_panels({"PGD-AT": (model, None), "TPAP": (model, cfg["xi"])}, x, y, "clean,fgsm", cfg,
                                       perplexity=5, progress=False)
    assert [(r["row"], r["attack"]) for r in records] == [("PGD-AT", "clean"), ("PGD-AT", "fgsm"), ("TPAP", "clean"),
                                                          ("TPAP", "fgsm")]
    assert set(panels) == {(r["row"], r["attack"]) for r in records}
    assert all(panels[k]["emb"].shape == (40, 2) for k in panels)
    # each panel keeps its per-image verdicts, which are its record's accuracy (for paired tests on the panels)
    assert all(panels[r["row"], r["attack"]]["correct"].float().mean().item() == pytest.approx(r["accuracy"])
               for r in records)


def test_fig7_sentence_calls_a_method_better_only_when_intervals_are_apart():
    rec = lambda row, a, knn, n=200: {"row": row, "attack": a, "knn_acc": knn, "silhouette_2d": 0.0, "n": n}  # noqa: E731
    records = [rec("PGD-AT", "clean", 0.9), rec("PGD-AT", "pgd20", 0.5), rec("PGD-AT", "fgsm", 0.8),
               rec("PGD-AT", "dim", 0.7), rec("TPAP", "clean", 0.9), rec("TPAP", "pgd20", 0.85),
               rec("TPAP", "fgsm", 0.6), rec("TPAP", "dim", 0.72)]
    text = report.fig7_sentence(records)
    assert "PGD-AT's k-NN accuracy is 90 % (95 % CI 85-93, n = 200) on clean inputs and changes by pgd20 -40, " \
           "fgsm -10, dim -20 points" in text
    assert "TPAP's k-NN accuracy is 90 % (95 % CI 85-93, n = 200) on clean inputs and changes by pgd20 -5" in text
    assert "better than PGD-AT's attacked ones under pgd20" in text
    assert "worse than PGD-AT's attacked ones under fgsm" in text
    assert "under dim the two k-NN accuracies' 95 % intervals overlap" in text  # 72 % vs 70 % at n = 200
    lo, hi = tsne.knn_interval(rec("TPAP", "dim", 0.72))
    assert (lo, hi) == wilson(144, 200)  # 72 % of 200 points
    claims = tsne.fig7_claims(records)
    assert claims["TPAP vs PGD-AT (kNN)"].to_dict() == {"clean": "intervals overlap", "pgd20": "better",
                                                        "fgsm": "worse", "dim": "intervals overlap"}
    verdict = report.fig7_claims_sentence(claims)
    assert "on 1 of 3 by k-NN accuracy with their 95 % intervals apart (1 worse, 1 within the intervals)" in verdict
    assert "holds only in part here" in verdict
    # The same gaps on 20 points each: no interval is apart, nothing is called better or worse.
    small = [r | {"n": 20} for r in records]
    text = report.fig7_sentence(small)
    assert "better" not in text and "worse" not in text and "pgd20, fgsm and dim the two" in text


def test_fig7_claims_say_not_measured_when_too_few_images_per_class():
    """cluster_scores returns NaN k-NN accuracy when a class has fewer than 2 points (a small n_eval on CIFAR-10)."""
    rec = lambda row, a, knn, n=40: {"row": row, "attack": a, "knn_acc": knn, "silhouette_2d": 0.0, "n": n}  # noqa: E731
    records = [rec("PGD-AT", "clean", float("nan")), rec("PGD-AT", "pgd20", float("nan")),
               rec("TPAP", "clean", float("nan")), rec("TPAP", "pgd20", float("nan"))]
    claims = tsne.fig7_claims(records)
    assert set(claims["TPAP vs PGD-AT (kNN)"]) == {"not measured"}
    verdict = report.fig7_claims_sentence(claims)
    assert "1 not measured: too few images per class" in verdict and "on 0 of 1" in verdict
    report.fig7_sentence(records)  # says something, without raising
    text = report.fig7_sentence(records)  # the panels' sentence too: no 'nan %', no change of an unmeasured score
    assert "nan" not in text and "is not measured (too few images per class" in text and "changes by" not in text
