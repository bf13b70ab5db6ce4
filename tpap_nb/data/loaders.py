"""The data-set registry (`load_dataset`): digits, MNIST, Fashion-MNIST, CIFAR-10/100 (torchvision's files or
JPEG folders and zips), SVHN, Tiny-ImageNet, `folder:` and `npz:`; offline errors that say what to do, caches
keyed on what was read."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ..checks import first_line
from ..config import data_root
from .caltech import caltech_size, load_caltech101
from .dataset import Dataset, DatasetUnavailable, mix_class_order, to_tensor_images
from .folders import has_image_tree, load_folder, load_npz, read_images

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------- loaders

def _digits(root: Path, download: bool) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.clip(d.images * 16, 0, 255).astype(np.uint8)[:, None]  # 0..16 grey levels -> 0..255
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=0, stratify=d.target)
    t = torch.from_numpy
    return Dataset("digits", t(xtr), t(ytr).long(), t(xte), t(yte).long(), [str(i) for i in range(10)])


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_dataset(name: str, folder: Path, classes: list) -> Dataset:
    def load(stem):
        for cand in (folder / f"{stem}.gz", folder / stem):
            if cand.exists():
                return _read_idx(cand)
        raise FileNotFoundError(stem)

    xtr, ytr = load("train-images-idx3-ubyte"), load("train-labels-idx1-ubyte")
    xte, yte = load("t10k-images-idx3-ubyte"), load("t10k-labels-idx1-ubyte")
    t = torch.from_numpy
    return Dataset(name, t(xtr.copy())[:, None], t(ytr.copy()).long(), t(xte.copy())[:, None],
                   t(yte.copy()).long(), classes)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def _fashion_mnist(root: Path, download: bool) -> Dataset:
    for folder in (root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST):
        try:
            return _idx_dataset("fashion-mnist", folder, FASHION_CLASSES)
        except FileNotFoundError:
            continue
    return _torchvision("fashion-mnist", "FashionMNIST", root, download)


def _mnist(root: Path, download: bool) -> Dataset:
    try:
        return _idx_dataset("mnist", root / "MNIST" / "raw", [str(i) for i in range(10)])
    except FileNotFoundError:
        return _torchvision("mnist", "MNIST", root, download)


def _torchvision(name: str, cls_name: str, root: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        if cls_name == "SVHN":
            tr, te = cls(root, split="train", download=download), cls(root, split="test", download=download)
            xtr, ytr, xte, yte = tr.data, tr.labels, te.data, te.labels
            classes = [str(i) for i in range(10)]
        else:
            tr, te = cls(root, train=True, download=download), cls(root, train=False, download=download)
            xtr, ytr, xte, yte = tr.data, tr.targets, te.data, te.targets
            classes = list(tr.classes)
    except Exception as err:  # offline, not on disk, corrupt, unwritable, ...: say which
        raise _torchvision_error(name, cls, root, download, err) from None
    augment = "crop_flip" if name.startswith("cifar") else "none"
    t = torch.as_tensor
    return Dataset(name, to_tensor_images(xtr), t(np.asarray(ytr)).long(), to_tensor_images(xte),
                   t(np.asarray(yte)).long(), classes, augment, "torchvision")


def _torchvision_files(cls, root: Path) -> Path:
    """Where torchvision keeps data set `cls` under root."""
    if getattr(cls, "base_folder", None):
        return root / cls.base_folder  # CIFAR-10 / -100
    if cls.__name__ == "SVHN":
        return root / "train_32x32.mat"
    return root / cls.__name__ / "raw"  # MNIST, FashionMNIST


def _torchvision_error(name: str, cls, root: Path, download: bool, err: Exception) -> DatasetUnavailable:
    """The real cause of a torchvision failure: offline, not on disk, damaged files, or something else."""
    import urllib.error

    reason = f"{type(err).__name__}: {first_line(err)}"
    if isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError)):
        return _unavailable(name, root, reason)
    if isinstance(err, RuntimeError) and "not found" in str(err).lower():  # torchvision's "not found or corrupted"
        files = _torchvision_files(cls, root)
        if files.exists():
            return DatasetUnavailable(
                f"Data set {name!r}: {files} is there, but torchvision finds it incomplete or corrupt ({reason}). "
                f"Delete {files} and load the data set again (it is downloaded afresh), or copy a good copy there.")
        return _unavailable(name, root, reason, downloading=download)
    return DatasetUnavailable(
        f"torchvision could not load data set {name!r} from {root}: {reason}. Check that {root} is readable and "
        "writable (set TPAP_DATA to another folder otherwise) and that torchvision is installed as "
        "`make setup` installs it."
    )


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar10_jpeg_dirs(root: Path) -> list[Path]:
    """Where a CIFAR-10 JPEG copy is looked for: $TPAP_CIFAR10_JPEG, then ROOT/cifar10-jpeg."""
    env = os.environ.get("TPAP_CIFAR10_JPEG")
    return ([Path(env).expanduser()] if env else []) + [root / "cifar10-jpeg"]


def _cifar10(root, download):
    """The official pickles (on disk, else downloaded); a JPEG copy in class folders or zips when found first.

    Order: pickles already under ROOT; a JPEG copy (train/<class>/*.jpg, test/<class>/*.jpg, or
    train.zip / test.zip holding them) under $TPAP_CIFAR10_JPEG or ROOT/cifar10-jpeg; a download.
    A JPEG copy is not bit-identical to the pickles (JPEG compression): `Dataset.source` says which.
    """
    try:
        return _torchvision("cifar10", "CIFAR10", root, download=False)
    except DatasetUnavailable:
        pass
    for folder in cifar10_jpeg_dirs(root):
        if has_image_tree(folder):
            return load_folder(folder, root, name="cifar10", classes=CIFAR10_CLASSES)
    try:
        return _torchvision("cifar10", "CIFAR10", root, download)
    except DatasetUnavailable as err:
        jpeg = " or ".join(str(d) for d in cifar10_jpeg_dirs(root))
        raise DatasetUnavailable(
            f"{err}\n(3) or put CIFAR-10 as JPEG class folders (train/<class>/*.jpg, test/<class>/*.jpg, or the "
            f"zips train.zip / test.zip holding them) in {jpeg}, or set TPAP_CIFAR10_JPEG to such a folder."
        ) from None


def _cifar100(root, download):
    return _torchvision("cifar100", "CIFAR100", root, download)


def _svhn(root, download):
    return _torchvision("svhn", "SVHN", root, download)


TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _tiny_imagenet(root: Path, download: bool) -> Dataset:
    base = root / "tiny-imagenet-200"
    if not base.exists():
        if not download:
            raise _unavailable("tiny-imagenet", root, "not on disk", downloading=False)
        try:
            from torchvision.datasets.utils import download_and_extract_archive
            download_and_extract_archive(TINY_URL, str(root))
        except Exception as err:
            raise _unavailable("tiny-imagenet", root, err) from None
    wnids = (base / "wnids.txt").read_text().split()
    label = {w: i for i, w in enumerate(wnids)}
    train = [(p, label[w]) for w in wnids for p in sorted((base / "train" / w / "images").glob("*.JPEG"))]
    ann = [ln.split("\t") for ln in (base / "val" / "val_annotations.txt").read_text().splitlines()]
    test = [(base / "val" / "images" / a[0], label[a[1]]) for a in ann]
    xtr, ytr = read_images(train)
    xte, yte = read_images(test)
    return Dataset("tiny-imagenet", xtr, ytr, xte, yte, wnids, "flip")


DATASETS = {
    "digits": _digits, "fashion-mnist": _fashion_mnist, "mnist": _mnist, "cifar10": _cifar10,
    "cifar100": _cifar100, "svhn": _svhn, "tiny-imagenet": _tiny_imagenet,
}
# (channels, image side, classes) of each named data set: what a model for it looks like without loading it
# (the speed bench times the profile's model on synthetic batches of this shape).
SHAPES = {"digits": (1, 8, 10), "fashion-mnist": (1, 28, 10), "mnist": (1, 28, 10), "cifar10": (3, 32, 10),
          "cifar100": (3, 32, 100), "svhn": (3, 32, 10), "tiny-imagenet": (3, 64, 200)}


def _unavailable(name: str, root: Path, reason, downloading: bool = True) -> DatasetUnavailable:
    how = f"could not be downloaded ({reason})" if downloading else f"downloading is off (download=False; {reason})"
    return DatasetUnavailable(
        f"Data set {name!r} is not under {root} and {how}.\n"
        f"Two ways out: (1) on a machine with internet, run load_dataset({name!r}) once (it downloads "
        f"into {root}) and copy that folder here; or (2) put the files there yourself, or point "
        f"TPAP_DATA at a folder that has them. Offline, 'digits' (inside scikit-learn) always works."
    )


def load_dataset(name: str, root: str | Path | None = None, download: bool = True) -> Dataset:
    """Load a named data set, 'caltech101[-SIZE]', 'folder:PATH' (train/<class>/, test/<class>/) or 'npz:FILE'."""
    root = Path(root) if root is not None else data_root()
    return mix_class_order(_load(name, root, download))


def _load(name: str, root: Path, download: bool) -> Dataset:
    if name.startswith("folder:"):
        return load_folder(Path(name[7:]).expanduser(), root)
    if name.startswith("npz:"):
        return load_npz(Path(name[4:]).expanduser())
    if name.startswith("caltech101"):
        size = caltech_size(name)
        if size is not None:
            return load_caltech101(root, download, size=size)
    if name not in DATASETS:
        raise ValueError(
            f"Unknown data set {name!r}. Known: {sorted(DATASETS)}, 'caltech101' (or 'caltech101-SIZE'), 'folder:PATH' "
            "(PATH/train/<class>/*, PATH/test/<class>/*) or 'npz:FILE.npz'."
        )
    return DATASETS[name](root, download)
