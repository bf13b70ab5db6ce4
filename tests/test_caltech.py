"""Tab. 3's run path (Caltech-101, ImageNet ResNet-18) on a fake class-folder tree; no downloads."""
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

import tpap_nb as tp
from tpap_nb import models
from tpap_nb.data import caltech as tdata
from tpap_nb.experiments import table3 as t3
from tpap_nb.paper import TABLE3


def _fake_caltech(root, per_class=(6, 5, 4)):
    """root/caltech101/101_ObjectCategories/<class>/*.jpg with mixed sizes, one greyscale image."""
    base = root / "caltech101" / "101_ObjectCategories"
    rng = np.random.default_rng(0)
    for c, n in zip(["BACKGROUND_Google", "accordion", "airplanes"], per_class):
        (base / c).mkdir(parents=True)
        for i in range(n):
            h, w = (40 + 7 * i, 60 - 3 * i)
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            img = Image.fromarray(arr[..., 0], "L") if i == 0 else Image.fromarray(arr)
            img.save(base / c / f"image_{i:04d}.jpg")
    (base / "accordion" / "notes.txt").write_text("not an image")
    return base


def _random_imagenet_state():
    from torchvision.models import resnet18

    torch.manual_seed(1)
    return resnet18(weights=None).state_dict()


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


def test_loader_resizes_splits_per_class_and_caches(tmp_path, monkeypatch):
    base = _fake_caltech(tmp_path)
    monkeypatch.setattr(tdata, "download_caltech101", _offline)
    d = tp.load_dataset("caltech101-16", root=tmp_path)
    assert d.name == "caltech101-16" and d.augment == "flip"
    assert d.classes == ["BACKGROUND_Google", "accordion", "airplanes"]  # the clutter class is kept
    assert d.x_train.dtype == torch.uint8 and d.x_train.shape[1:] == (3, 16, 16)
    assert len(d.y_train) + len(d.y_test) == 15
    assert sorted(d.y_test.tolist()) == [0, 1, 2]  # round(0.2 n) per class: 1, 1, 1
    # The cache is what a second load reads: it no longer needs the images.
    for p in base.rglob("*.jpg"):
        p.unlink()
    again = tp.load_dataset("caltech101-16", root=tmp_path)
    assert torch.equal(again.x_test, d.x_test) and torch.equal(again.y_train, d.y_train)


def test_read_square_is_a_centre_crop_of_the_resized_image(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, 10:30] = 255  # the centre half is white
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = tdata._read_square(tmp_path / "a.png", 10)
    assert out.shape == (10, 10, 3) and out.min() > 200  # 20x40 -> 10x20 -> centre 10x10: all white


def test_split_is_per_class_and_seeded():
    y = np.repeat(np.arange(4), [10, 5, 2, 1])
    tr, te = tdata.split_indices(y, 0.2, seed=3)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(y)))
    assert np.bincount(y[te], minlength=4).tolist() == [2, 1, 1, 0]
    assert y[te].tolist() != sorted(y[te].tolist())  # shuffled, not grouped by class
    tr2, te2 = tdata.split_indices(y, 0.2, seed=3)
    assert np.array_equal(te, te2) and np.array_equal(tr, tr2)


def test_offline_data_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(tdata, "download_caltech101", _offline)
    with pytest.raises(tp.DatasetUnavailable) as err:
        tp.load_dataset("caltech101", root=tmp_path)
    msg = str(err.value)
    assert "101_ObjectCategories" in msg and tdata.CALTECH_URL in msg and "URLError" in msg
    with pytest.raises(tp.DatasetUnavailable, match="download=False"):
        tp.load_dataset("caltech101-64", root=tmp_path, download=False)
    with pytest.raises(ValueError, match="caltech101-SIZE"):
        tp.load_dataset("caltech101-big", root=tmp_path)


def test_imagenet_resnet18_loads_weights_safely_and_explains_when_offline(monkeypatch):
    seen = {}

    def fake_load(url, **kw):
        seen.update(kw, url=url)
        return _random_imagenet_state()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_load)
    net = tp.build_model("resnet18_imagenet", 5)
    assert seen["weights_only"] is True and seen["check_hash"] is True and seen["url"].endswith(".pth")
    assert torch.equal(net.body[0].weight, _random_imagenet_state()["conv1.weight"])
    assert net.cam_layer is net.body[-1] and net.fc.out_features == 5
    x = torch.rand(2, 3, 32, 32)
    assert net.eval()(x).shape == (2, 5) and net.features(x).shape == (2, 512)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    with pytest.raises(models.WeightsUnavailable) as err:
        tp.build_model("resnet18_imagenet", 5)
    assert "resnet18-f37072fd.pth" in str(err.value) and "TORCH_HOME" in str(err.value)
    assert tp.build_model("resnet18_imagenet", 5, pretrained=False).fc.in_features == 512  # no download
    with pytest.raises(ValueError, match="RGB"):
        tp.build_model("resnet18_imagenet", 5, in_channels=1, pretrained=False)


def test_status_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TPAP_DATA", str(tmp_path))
    monkeypatch.setattr(tdata, "download_caltech101", _offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    ok, msg = t3.status()
    assert not ok and msg.startswith("Tab. 3 skipped") and "Caltech-101" in msg and "ResNet-18" in msg
    _fake_caltech(tmp_path)
    monkeypatch.setattr(models, "imagenet_resnet18_state", _random_imagenet_state)
    assert t3.status() == (True, "Caltech-101 and the ImageNet ResNet-18 weights are available.")


def test_status_without_download_only_looks(tmp_path, monkeypatch):
    """Notebook 03's default (run_table3 False): nothing is fetched, and the message says how to fetch."""
    def no_fetch(*args, **kwargs):
        raise AssertionError("status(download=False) tried to download")

    monkeypatch.setenv("TPAP_DATA", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(tdata, "download_caltech101", no_fetch)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_fetch)
    monkeypatch.setattr(models, "imagenet_resnet18_state", no_fetch)
    ok, msg = t3.status(download=False)
    assert not ok and "Caltech-101" in msg and "ResNet-18" in msg and "run_table3=True" in msg
    _fake_caltech(tmp_path)
    _, target = models.imagenet_resnet18_file()
    ok, msg = t3.status(download=False)
    assert not ok and "Caltech-101 under" not in msg and str(target) in msg  # only the weights are missing
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    assert t3.status(download=False) == (True, "Caltech-101 and the ImageNet ResNet-18 weights are available.")


@pytest.mark.slow
def test_table3_runs_end_to_end_and_reuses_its_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("TPAP_DATA", str(tmp_path))
    _fake_caltech(tmp_path, per_class=(10, 10, 10))
    monkeypatch.setattr(models, "imagenet_resnet18_state", _random_imagenet_state)
    cfg = tp.get_profile("smoke", n_eval=8)
    rows = {k: t3.TABLE3_ROWS[k] for k in ("PGD-AT*", "TPAP-TRADES*")}
    ours, records = t3.table3(cfg, rows=rows, size=32, epochs=1, n_test=6, progress=False)
    assert set(ours) == set(rows) and set(ours["PGD-AT*"]) == {"clean", "fgsm", "pgd20"}
    # ours is read off the records: bare accuracy for PGD-AT*, TPAP's for the TPAP rows
    by = {(r["training"], r["attack"]): r for r in records}
    for label, row in rows.items():
        key = "acc_bare" if row["defence"] == "none" else "acc_tpap"
        assert all(ours[label][a] == by[label, a][key] for a in ("fgsm", "pgd20"))
    assert {r["attack"] for r in records} == {"fgsm", "pgd20"} and all(r["n"] == 6 for r in records)
    assert set(TABLE3) >= set(ours)  # the paper's rows, to print beside ours
    # Settings of a row: the paper's optimiser and eps, scaled milestones, the row's batch size.
    rc = t3.row_config(cfg, t3.TABLE3_ROWS["TPAP-TRADES*"], 32, 10)
    assert (rc["lr"], rc["eps"], rc["batch_size"], rc["milestones"]) == (0.01, 16 / 255, 32, (5, 6, 9))
    # A second call reloads the checkpoints: no weights are needed, the numbers are the same.
    monkeypatch.setattr(models, "imagenet_resnet18_state", _offline)
    again, _ = t3.table3(cfg, rows=rows, size=32, epochs=1, n_test=6, progress=False)
    assert again == ours
    ckpt = next(tmp_path.glob("runs/checkpoints/caltech101-32-resnet18_imagenet-pgd-*.pt"), None)
    assert ckpt is not None
    net, history = tp.load_model(ckpt, dataset="caltech101-32", model="resnet18_imagenet")
    assert len(history) == 1 and net.fc.out_features == 3
