"""Caltech-101 for Tab. 3: downloaded on first use, resized to a square side, split 8:2 per class, cached."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from ..config import data_root
from .dataset import Dataset, DatasetUnavailable

# ----------------------------------------------------------------------------- Caltech-101 (Tab. 3)
# The paper (Sec. 4.2): 9,146 images of 101 object classes plus a background/clutter class, about
# 300x200 pixels, split randomly 8:2 into train and test. Downloaded on first use (about 130 MB);
# offline, one clear error says what is missing. The Tab. 3 runner is experiments/table3.py.

CALTECH_URL = "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip"
CALTECH_NAME = re.compile(r"caltech101(?:-(\d+))?")
CALTECH_BACKGROUND = "BACKGROUND_Google"


def _caltech_unavailable(root: Path, reason) -> DatasetUnavailable:
    folder = root / "caltech101" / "101_ObjectCategories"
    return DatasetUnavailable(
        f"Caltech-101 is not under {folder} and could not be downloaded ({reason}).\n"
        f"On a machine with internet, load_dataset('caltech101') downloads it; or download {CALTECH_URL}, "
        f"unzip it, extract 101_ObjectCategories.tar.gz into {root / 'caltech101'}, or point TPAP_DATA "
        "at a folder whose caltech101/101_ObjectCategories/ has the class folders."
    )


def download_caltech101(root: Path) -> None:
    """torchvision's downloader (zip from data.caltech.edu, md5-checked) into root/caltech101."""
    import torchvision

    torchvision.datasets.Caltech101(str(root), download=True)


def _read_square(path: Path, size: int) -> np.ndarray:
    """RGB, shorter side resized to `size` (bilinear, antialiased), centre crop size x size."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)))


def split_indices(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """A random 8:2 split made per class (every class with 2+ images is in both parts), fixed by `seed`."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(len(idx) - 1, max(1, round(test_fraction * len(idx)))) if len(idx) > 1 else 0
        test += idx[:n_test].tolist()
        train += idx[n_test:].tolist()
    # Shuffled, so that the first n test images (the evaluation subsets) mix the classes.
    return rng.permutation(np.array(train, dtype=np.int64)), rng.permutation(np.array(test, dtype=np.int64))


def load_caltech101(root: Path | None = None, download: bool = True, size: int = 224, background: bool = True,
                    seed: int = 0) -> Dataset:
    """Caltech-101 as size x size uint8 images, 8:2 split; cached as .npz next to the images."""
    from tqdm.auto import tqdm

    root = Path(root) if root is not None else data_root()
    base = root / "caltech101" / "101_ObjectCategories"
    name = f"caltech101-{size}"
    cache = root / "caltech101" / f"tpap-{size}px-{'bg' if background else 'nobg'}-seed{seed}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            return _caltech_dataset(name, {k: f[k] for k in f.files})
    if not base.is_dir():
        if not download:
            raise _caltech_unavailable(root, "not on disk and download=False")
        try:
            download_caltech101(root)
        except Exception as err:  # offline: URLError / OSError / RuntimeError
            raise _caltech_unavailable(root, f"{type(err).__name__}: {err}") from None
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and (background or d.name != CALTECH_BACKGROUND))
    items = [(p, i) for i, c in enumerate(classes) for p in sorted((base / c).iterdir())
             if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if not items:
        raise _caltech_unavailable(root, f"{base} holds no images")
    x = np.stack([_read_square(p, size) for p, _ in tqdm(items, desc=f"Caltech-101 at {size}px", leave=False)])
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = np.array([lbl for _, lbl in items], dtype=np.int64)
    tr, te = split_indices(y, 0.2, seed)
    arrays = {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te], "classes": np.array(classes)}
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)  # atomic: a killed run never leaves half a cache
    return _caltech_dataset(name, arrays)


def _caltech_dataset(name: str, arrays: dict) -> Dataset:
    """The cached arrays as a Dataset (flip augmentation, as for other large images)."""
    t = torch.from_numpy
    return Dataset(name, t(arrays["x_train"]), t(arrays["y_train"]), t(arrays["x_test"]), t(arrays["y_test"]),
                   [str(c) for c in arrays["classes"]], "flip")


def caltech_size(name: str) -> int | None:
    """224 for 'caltech101', N for 'caltech101-N', None for any other name."""
    m = CALTECH_NAME.fullmatch(name)
    return None if m is None else int(m.group(1) or 224)
