"""CIFAR-10 from JPEG class folders or zips (a tiny tree made here), and class-mixed evaluation subsets."""
import io
import zipfile

import numpy as np
import pytest
import torch

import tpap_nb as tp
from tpap_nb import data as D
from tpap_nb.data import folders, loaders

CLASSES = loaders.CIFAR10_CLASSES


def _jpeg_bytes(rng, size=32):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _make_tree(folder, per_class=(3, 2), zipped=False, top_level=True, seed=0):
    """CIFAR-10's layout: train/<class>/NNNN.jpg, test/<class>/NNNN.jpg, as folders or as zips."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "test"), per_class):
        files = {f"{c}/{i:04d}.jpg": _jpeg_bytes(rng) for c in CLASSES for i in range(n)}
        if zipped:
            with zipfile.ZipFile(folder / f"{split}.zip", "w") as zf:
                for name, raw in files.items():
                    zf.writestr(f"{split}/{name}" if top_level else name, raw)
        else:
            for name, raw in files.items():
                p = folder / split / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(raw)
    return folder


@pytest.fixture
def offline(monkeypatch):
    """torchvision cannot find or download the pickles (as on this offline machine)."""
    def fail(*a, **k):
        raise RuntimeError("Dataset not found or corrupted; no network")
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "CIFAR10", fail)
    monkeypatch.delenv("TPAP_CIFAR10_JPEG", raising=False)


@pytest.mark.parametrize("top_level", [True, False])
def test_cifar10_from_zips_under_the_data_root(tmp_path, offline, top_level):
    _make_tree(tmp_path / "cifar10-jpeg", zipped=True, top_level=top_level)
    ds = tp.load_dataset("cifar10", root=tmp_path)
    assert ds.name == "cifar10" and ds.classes == CLASSES and ds.augment == "crop_flip"
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape[0] == 20
    assert sorted(ds.y_train.tolist()) == sorted(list(range(10)) * 3)
    assert ds.source.startswith("images:") and "cifar10-jpeg" in ds.source


def test_cifar10_labels_follow_the_official_order_and_pixels_survive(tmp_path, offline):
    from PIL import Image

    folder = _make_tree(tmp_path / "jpeg", per_class=(1, 1))
    ref = np.asarray(Image.open(folder / "train" / "ship" / "0000.jpg").convert("RGB"))
    ds = folders.load_folder(folder, tmp_path, name="cifar10", classes=CLASSES)
    i = ds.y_train.tolist().index(CLASSES.index("ship"))
    assert np.array_equal(ds.x_train[i].permute(1, 2, 0).numpy(), ref)


def test_cifar10_jpeg_dir_from_environment_and_cached_once(tmp_path, offline, monkeypatch):
    folder = _make_tree(tmp_path / "elsewhere")
    monkeypatch.setenv("TPAP_CIFAR10_JPEG", str(folder))
    first = tp.load_dataset("cifar10", root=tmp_path / "root")
    caches = list((tmp_path / "root" / "cache").glob("folder-*.npz"))
    assert len(caches) == 1
    # the cache alone serves the next load: no JPEG is decoded again
    monkeypatch.setattr(folders, "_read_tree", lambda *a, **k: pytest.fail("re-read the JPEGs despite the cache"))
    again = tp.load_dataset("cifar10", root=tmp_path / "root")
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)


def test_cifar10_offline_error_names_every_way_out(tmp_path, offline):
    with pytest.raises(tp.DatasetUnavailable) as err:
        tp.load_dataset("cifar10", root=tmp_path, download=False)
    msg = str(err.value)
    assert "TPAP_DATA" in msg and "TPAP_CIFAR10_JPEG" in msg and str(tmp_path / "cifar10-jpeg") in msg
    assert "train.zip" in msg


def test_folder_data_in_class_order_is_mixed_so_first_n_hold_many_classes(tmp_path):
    _make_tree(tmp_path / "imgs", per_class=(10, 10))
    ds = tp.load_dataset(f"folder:{tmp_path / 'imgs'}", root=tmp_path)
    _, y = ds.test_batch(20)
    assert len(set(y.tolist())) >= 6  # in class order the first 20 would be 2 classes
    assert len(set(ds.y_train[:20].tolist())) >= 6
    # same data, same order on every load (seeded), and every class kept in full
    again = tp.load_dataset(f"folder:{tmp_path / 'imgs'}", root=tmp_path)
    assert torch.equal(ds.y_test, again.y_test) and torch.equal(ds.x_test, again.x_test)
    assert torch.bincount(ds.y_test).tolist() == [10] * 10


def test_mixing_keeps_an_already_mixed_split_as_it_is(digits):
    mixed = D.mix_class_order(digits)
    assert torch.equal(mixed.y_train, digits.y_train) and torch.equal(mixed.x_test, digits.x_test)
    sorted_ds = D.Dataset("s", digits.x_test, digits.y_test.sort().values, digits.x_test, digits.y_test,
                          digits.classes)
    out = D.mix_class_order(sorted_ds)
    assert not torch.equal(out.y_train, sorted_ds.y_train)
    assert torch.equal(out.y_train.sort().values, sorted_ds.y_train)


def test_folder_with_mismatched_classes_is_refused(tmp_path, offline):
    folder = _make_tree(tmp_path / "jpeg", per_class=(1, 1))
    (folder / "train" / "ship").rename(folder / "train" / "boat")
    with pytest.raises(tp.DatasetUnavailable, match="differ"):
        folders.load_folder(folder, tmp_path, name="cifar10", classes=CLASSES)
