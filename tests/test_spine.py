"""Data registry, models, training recipe, checkpoints and the clear errors of the spine."""
import gzip
import importlib.metadata as md
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fresh_cnn

import tpap_nb as tp
from tpap_nb import data as D
from tpap_nb import train as T
from tpap_nb.attacks import fgsm, pgd


# ------------------------------------------------------------------ environment
def test_jupyterlab4_and_torchattacks_live_together():
    import torchattacks

    assert md.version("jupyterlab").startswith("4.")
    req = tuple(int(p) for p in md.version("requests").split(".")[:2])
    assert req >= (2, 32), "an old requests with a published CVE slipped in"
    model = fresh_cnn()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    x_adv = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=3)(x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and (x_adv - x).abs().max() > 0


# ------------------------------------------------------------------ data
def test_digits_are_uint8_in_pixel_units(digits):
    assert digits.x_train.dtype == torch.uint8 and digits.x_train.shape[1:] == (1, 8, 8)
    assert len(digits.y_train) == 1437 and len(digits.y_test) == 360 and digits.num_classes == 10
    x, y = next(D.batches(digits, 64))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and len(y) == 64


def test_crop_flip_augmentation_is_a_shifted_crop():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    out = D.augment_batch(x, "crop_flip", torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(16):  # every output is some 32x32 window of the padded image, maybe flipped
        found = any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2))
                    for w in (padded[i, :, a:a + 32, b:b + 32] for a in range(9) for b in range(9)))
        assert found
    assert not torch.equal(out, x)


def test_unknown_dataset_and_missing_offline_data(tmp_path):
    with pytest.raises(ValueError, match="Unknown data set 'cifar11'"):
        tp.load_dataset("cifar11")
    with pytest.raises(tp.DatasetUnavailable) as err:
        tp.load_dataset("cifar10", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and "TPAP_DATA" in msg and "cifar10" in msg


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_files(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    ds = tp.load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    assert ds.classes[0] == "T-shirt/top"


def test_folder_and_npz_datasets(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / c / f"{i}.png")
    ds = tp.load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert ds.x_train.shape == (6, 3, 12, 12) and ds.classes == ["cat", "dog"]
    assert sorted(ds.y_test.tolist()) == [0] * 3 + [1] * 3  # stored mixed (seeded), every image kept
    np.savez(tmp_path / "a.npz", x_train=rng.integers(0, 256, (5, 9, 9, 3), dtype=np.uint8), y_train=np.arange(5),
             x_test=rng.integers(0, 256, (2, 9, 9, 3), dtype=np.uint8), y_test=np.arange(2))
    ds = tp.load_dataset(f"npz:{tmp_path / 'a.npz'}")
    assert ds.x_train.shape == (5, 3, 9, 9) and ds.num_classes == 5
    with pytest.raises(tp.DatasetUnavailable, match="no 'train/'"):
        tp.load_dataset(f"folder:{tmp_path}")


# ------------------------------------------------------------------ models
@pytest.mark.parametrize("name, channels, size, dim", [
    ("small_cnn", 1, 8, 128), ("resnet18", 3, 32, 512), ("vgg16", 3, 32, 512), ("wrn34_10", 3, 32, 640)])
def test_models_expose_features_and_cam_layer(name, channels, size, dim):
    model = tp.build_model(name, 10, channels).eval()
    x = torch.rand(2, channels, size, size)
    assert model(x).shape == (2, 10) and model.features(x).shape == (2, dim)
    assert isinstance(model.cam_layer, torch.nn.Module)
    assert any(m is model.cam_layer for m in model.modules())


def test_resnet18_has_the_papers_parameter_count():
    n = sum(p.numel() for p in tp.build_model("resnet18").parameters())
    assert round(n / 1e6, 2) == 11.17  # Tab. 5


def test_unknown_model_and_profile():
    with pytest.raises(ValueError, match="Unknown model 'resnet19'"):
        tp.build_model("resnet19")
    with pytest.raises(ValueError, match="Unknown profile"):
        tp.get_profile("fast")
    with pytest.raises(ValueError, match="Unknown setting"):
        tp.get_profile("smoke", epoch=3)


# ------------------------------------------------------------------ training recipe
def test_fgsm_recipe_is_algorithm_1():
    """Crafted in eval mode, alpha = eps, no random start, loss on the adversarial batch only."""
    model = fresh_cnn(1)
    model.train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    cfg = tp.get_profile("smoke") | {"recipe": "fgsm", "eps": 0.2}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss = T.training_loss(model, x, y, cfg)
    assert model.training
    model.load_state_dict(state)  # undo the BN running-stat update of the training forward
    model.eval()
    x_adv = fgsm(model, x, y, 0.2)
    model.train()
    assert torch.allclose(loss, F.cross_entropy(model(x_adv), y), atol=1e-6)


def test_our_fgsm_and_pgd_match_torchattacks():
    import torchattacks

    model = fresh_cnn(2)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    assert torch.allclose(fgsm(model, x, y, 0.1), torchattacks.FGSM(model, eps=0.1)(x, y), atol=1e-6)
    ref = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=5, random_start=False)(x, y)
    assert torch.allclose(pgd(model, x, y, 0.1, 0.02, 5, random_start=False), ref, atol=1e-6)


@pytest.mark.slow
def test_fgsm_accuracy_reaches_zero_as_eps_grows(digits):
    model = fresh_cnn(3, width=16)
    cfg = tp.get_profile("smoke", epochs=3, eval_every=0, width=16) | {"recipe": "plain"}
    tp.fit(model, digits, cfg, progress=False)
    x, y = digits.test_batch(200)
    accs = [(model(pgd(model, x, y, e, e / 4, 10)).argmax(1) == y).float().mean().item() for e in (0.0, 0.1, 0.5)]
    assert accs[0] > 0.8 and accs[-1] < 0.02 and accs[0] >= accs[1] >= accs[2]


def test_robust_overfitting_test_reads_history():
    good = {"epoch": 9, "train_fgsm": 0.95, "train_pgd20": 0.02, "test_clean": 0.9, "test_fgsm": 0.9}
    assert T.robust_overfitting_test([{"epoch": 1}, good])["robust_overfit"]
    res = T.robust_overfitting_test([good | {"train_pgd20": 0.4}])
    assert not res["robust_overfit"] and not res["checks"]["train PGD-20 acc < 10%"][1]
    with pytest.raises(ValueError, match="no evaluated epoch"):
        T.robust_overfitting_test([{"epoch": 1}])


# ------------------------------------------------------------------ checkpoints
def _cfg(**kw):
    return tp.get_profile("smoke", **({"epochs": 4, "width": 8, "eval_every": 2, "n_eval": 32} | kw))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(digits, tmp_path, monkeypatch):
    small = digits.subset(n_train=256)
    cfg = _cfg()
    tp.set_seed(0)
    ref = tp.build_model("small_cnn", 10, 1, width=8)
    ref_hist = tp.fit(ref, small, cfg, ckpt=tmp_path / "ref.pt", progress=False)

    real_loss, calls = T.training_loss, {"n": 0}

    def dying_loss(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2 * 4 + 1:  # dies inside epoch 3 (4 batches of 64 per epoch)
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    monkeypatch.setattr(T, "training_loss", dying_loss)
    tp.set_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=8)
    with pytest.raises(KeyboardInterrupt):
        tp.fit(model, small, cfg, ckpt=tmp_path / "run.pt", progress=False)
    assert len(T.read_checkpoint(tmp_path / "run.pt")["history"]) == 2
    assert not (tmp_path / "run.pt.tmp").exists()
    monkeypatch.setattr(T, "training_loss", real_loss)
    resumed = tp.build_model("small_cnn", 10, 1, width=8)
    hist = tp.fit(resumed, small, cfg, ckpt=tmp_path / "run.pt", progress=False)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[-1]["test_clean"] == pytest.approx(ref_hist[-1]["test_clean"])
    for a, b in zip(resumed.state_dict().values(), ref.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_checkpoint_for_another_model_or_dataset_is_refused(digits, tmp_path):
    tp.set_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=8)
    tp.fit(model, digits.subset(n_train=64), _cfg(epochs=1), ckpt=tmp_path / "c.pt", progress=False)
    loaded, hist = tp.load_model(tmp_path / "c.pt", dataset="digits", model="small_cnn")
    assert len(hist) == 1
    with pytest.raises(tp.CheckpointError, match="holds a small_cnn trained on digits.*'resnet18'"):
        tp.load_model(tmp_path / "c.pt", model="resnet18")
    with pytest.raises(tp.CheckpointError, match="'cifar10' was expected"):
        tp.load_model(tmp_path / "c.pt", dataset="cifar10")
    with pytest.raises(tp.CheckpointError, match="other settings"):
        tp.fit(tp.build_model("small_cnn", 10, 1, width=8), digits, _cfg(epochs=1, lr=0.5), ckpt=tmp_path / "c.pt")


class Evil:
    target = ""

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


def test_untrusted_pickle_is_refused_without_running_it(tmp_path):
    path, proof = tmp_path / "evil.pt", tmp_path / "pwned"
    evil = Evil()
    evil.target = str(proof)
    torch.save({"format": "tpap_nb-checkpoint-1", "x": evil}, path)
    with pytest.raises(tp.CheckpointError, match="refused"):
        tp.load_model(path)
    assert not proof.exists()


def test_get_or_train_reuses_the_checkpoint(digits):
    cfg = _cfg(epochs=2)
    m1, h1, _ = tp.get_or_train(cfg, progress=False, data=digits.subset(n_train=128))
    assert m1.checkpoint.exists() and "digits-small_cnn-fgsm-eps76-smoke" in m1.checkpoint.name
    m2, h2, _ = tp.get_or_train(cfg, progress=False, data=digits.subset(n_train=128))
    assert h1 == h2
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_paper_profile_uses_the_papers_per_dataset_settings():
    assert tp.get_profile("paper")["batch_size"] == 128
    assert tp.get_profile("paper", dataset="tiny-imagenet")["batch_size"] == 64
    assert tp.get_profile("paper", model="wrn34_10", dataset="tiny-imagenet")["batch_size"] == 32
    assert tp.get_profile("paper", model="wrn34_10")["batch_size"] == 64
    assert tp.get_profile("paper", dataset="cifar100")["eps"] == pytest.approx(12 / 255)
    assert tp.get_profile("paper", dataset="cifar100", eps=8 / 255, batch_size=100)["batch_size"] == 100


def test_trades_and_mart_losses_follow_their_formulas():
    model = fresh_cnn(4)
    model.train()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    base = tp.get_profile("smoke") | {"eps": 0.1, "pgd_alpha": 0.03, "pgd_steps": 3}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # TRADES with beta = 0 is plain cross-entropy on the clean batch (its own forward pass)
    torch.manual_seed(0)
    loss0 = T.training_loss(model, x, y, base | {"recipe": "trades", "beta": 0.0})
    model.load_state_dict(state)
    model.train()
    assert torch.allclose(loss0, F.cross_entropy(model(x), y), atol=1e-5)
    for recipe in ("trades", "mart", "fgsm_trades", "fgsm_mart", "fgsm_multi", "pgd"):
        model.load_state_dict(state)
        loss = T.training_loss(model, x, y, base | {"recipe": recipe})
        assert torch.isfinite(loss) and loss.requires_grad and model.training
    # MART's beta reaches the loss, linearly: same seed and weights, beta 0, 3, 6
    losses = {}
    for beta in (0.0, 3.0, 6.0):
        model.load_state_dict(state)
        torch.manual_seed(0)
        losses[beta] = T.training_loss(model, x, y, base | {"recipe": "mart", "beta": beta}).item()
    assert losses[6.0] - losses[0.0] > 1e-4
    assert losses[6.0] - losses[0.0] == pytest.approx(2 * (losses[3.0] - losses[0.0]), rel=1e-4)
    with pytest.raises(ValueError, match="recipe='fgsm_rs' must be one of"):
        base | {"recipe": "fgsm_rs"}  # a config refuses it; training_loss too, given a plain dict
    with pytest.raises(ValueError, match="Unknown training recipe"):
        T.training_loss(model, x, y, {**base, "recipe": "fgsm_rs"})


def test_mart_loss_equals_its_formula_by_hand():
    """MART (Wang et al. 2020, Eq. 5): CE(p_adv, y) - log(1 - max_{k != y} p_adv_k)
    + beta * KL(p_nat || p_adv) * (1 - p_nat_y), averaged, computed here with the math module alone."""
    nat = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
    adv = [[0.5, 1.5, -0.5], [1.0, -1.0, 0.0]]
    y = [0, 2]

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    def by_hand(beta):
        total = 0.0
        for zn, za, t in zip(nat, adv, y):
            pn, pa = softmax(zn), softmax(za)
            other = max((k for k in range(3) if k != t), key=lambda k: pa[k])
            boosted = -math.log(pa[t]) - math.log(1.0001 - pa[other] + 1e-12)
            kl = sum(pn[k] * (math.log(pn[k]) - math.log(pa[k])) for k in range(3))
            total += boosted + beta * kl * (1.0000001 - pn[t])
        return total / len(y)

    for beta in (0.0, 6.0):
        ours = T._mart_loss(torch.tensor(nat), torch.tensor(adv), torch.tensor(y), beta).item()
        assert ours == pytest.approx(by_hand(beta), rel=1e-5)
    assert by_hand(6.0) - by_hand(0.0) > 0.1  # the beta term is not negligible on this case


def test_fast_path_bf16_channels_last_trains_and_is_named(digits):
    small = digits.subset(n_train=128)
    cfg = _cfg(epochs=1, eval_every=1) | {"precision": "bf16", "memory_format": "channels_last"}
    tp.set_seed(0)
    model = tp.build_model("small_cnn", 10, 1, width=8)
    hist = tp.fit(model, small, cfg, progress=False)
    assert np.isfinite(hist[-1]["loss"]) and 0 <= hist[-1]["test_clean"] <= 1
    assert hist[-1]["eval_precision"] == "bf16" and model.meta["runtime"]["precision"] == "bf16"
    assert all(p.is_contiguous() for p in model.parameters())  # the caller's model keeps its memory format
    plain = _cfg(epochs=1) | {"recipe": "fgsm"}
    assert T.run_name(plain) != T.run_name(plain | {"precision": "bf16"})  # another network, another name
    assert T.run_name(plain) == T.run_name(plain | {"precision": "float32", "memory_format": "contiguous"})
    with pytest.raises(ValueError, match="precision='fp8'"):
        tp.fit(model, small, cfg | {"precision": "fp8"}, progress=False)


def test_onecycle_schedule_rises_to_its_peak_and_falls_to_zero(digits):
    small = digits.subset(n_train=256)
    cfg = _cfg(epochs=5, eval_every=0, batch_size=64, lr=0.2) | {"lr_schedule": "onecycle"}
    tp.set_seed(0)
    hist = tp.fit(tp.build_model("small_cnn", 10, 1, width=4), small, cfg, progress=False)
    starts = [h["lr"] for h in hist]  # lr at the first step of each epoch: 20 steps, peak at step 8
    assert starts[0] == 0 and starts[1] == pytest.approx(0.2 * 4 / 8) and starts[2] == pytest.approx(0.2)
    assert starts[3] == pytest.approx(0.2 * 8 / 12) and hist[-1]["lr_end"] == pytest.approx(0.0)
    assert T.run_name(cfg | {"recipe": "fgsm"}) != T.run_name(cfg | {"recipe": "fgsm", "lr_schedule": "multistep"})


@pytest.mark.slow
def test_compiled_training_matches_eager(digits):
    """fit(compile=...) trains through torch.compile; 'aot_eager' traces forward and backward
    like inductor does, without a C++ toolchain, so the result must match eager closely."""
    small = digits.subset(n_train=128)
    cfg = _cfg(epochs=1, eval_every=0)
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    weights = {}
    for mode in (False, "aot_eager"):
        tp.set_seed(0)
        model = tp.build_model("small_cnn", 10, 1, width=8)
        tp.fit(model, small, cfg | {"compile": mode}, progress=False)
        assert type(model).__name__ == "Classifier"  # the caller's module, not the compiled wrapper
        weights[mode] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert counters["stats"]["unique_graphs"] >= 1  # the compiled path really ran
    torch.testing.assert_close(weights["aot_eager"], weights[False], rtol=1e-3, atol=1e-4)
    plain = _cfg(epochs=1) | {"recipe": "fgsm"}
    assert T.run_name(plain) != T.run_name(plain | {"compile": True})


def test_paper_pgd_at_uses_the_authors_schedule():
    paper = tp.get_profile("paper")
    assert T.recipe_config(paper, "pgd")["epochs"] == 120
    assert T.recipe_config(paper, "pgd")["milestones"] == (75, 90, 110)
    assert T.recipe_config(paper, "fgsm")["epochs"] == 150  # FGSM-RO keeps 150 / 75, 90, 140
    assert T.recipe_config(tp.get_profile("paper", epochs=10), "pgd")["epochs"] == 10  # overrides win
    assert T.recipe_config(tp.get_profile("quick"), "pgd")["epochs"] == 60


def test_a_profile_own_pgd_at_schedule_applies_while_its_fgsm_ro_schedule_is_its_own(monkeypatch):
    from tpap_nb import config

    monkeypatch.setitem(config.PGD_AT_SCHEDULE, "quick", {"epochs": 7, "milestones": (5,)})
    quick = tp.get_profile("quick")
    assert (T.recipe_config(quick, "pgd")["epochs"], T.recipe_config(quick, "pgd")["milestones"]) == (7, (5,))
    assert T.recipe_config(quick, "fgsm")["epochs"] == 60
    assert T.recipe_config(tp.get_profile("quick", epochs=30), "pgd")["epochs"] == 30  # a changed schedule: shared
    authors = tp.get_profile("paper", schedule="authors")  # the authors' FGSM-RO script goes with their PGD-AT one
    assert T.recipe_config(authors, "fgsm")["epochs"] == 100 and T.recipe_config(authors, "pgd")["epochs"] == 120


def test_n_val_holds_out_training_images_the_run_never_sees(digits, monkeypatch):
    from tpap_nb import runs

    monkeypatch.setattr(runs, "load_dataset", lambda name: digits)
    cfg = tp.get_profile("smoke", n_val=100, seed=4) | {"n_train": None}
    train, val = runs.run_data(cfg), runs.validation_data(cfg)
    assert len(train.y_train) == len(digits.y_train) - 100 and len(val.y_test) == 100
    seen = {bytes(x.cpu().numpy()) for x in train.x_train}
    assert sum(bytes(x.cpu().numpy()) in seen for x in val.x_test) <= 2  # held out (digits repeats an image or two)
    assert torch.equal(train.x_test, digits.x_test)  # the real test split is kept for reporting
    assert torch.equal(val.x_test, digits.validation_split(100, seed=4)[1].x_test)  # the run's seed draws them
    assert T.run_name(cfg) != T.run_name(cfg | {"n_val": 0})  # another training set: another network
    assert T.run_name(cfg | {"n_val": 0}) == T.run_name(tp.get_profile("smoke", seed=4) | {"n_train": None})
    with pytest.raises(ValueError, match="n_val = 0"):
        runs.validation_data(tp.get_profile("smoke"))
