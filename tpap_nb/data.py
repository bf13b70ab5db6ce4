"""Data sets as uint8 tensors on the training device, batches in [0, 1], augmentation on-device."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import secrets
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import data_root

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DatasetUnavailable(RuntimeError):
    """A data set is neither on disk nor downloadable; the message says what to do."""


@dataclass
class Dataset:
    """A whole data set in memory: uint8 images (N, C, H, W) and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list = field(default_factory=list)
    augment: str = "none"  # "crop_flip" (CIFAR, SVHN-free), "flip" (Tiny-ImageNet), "none"
    source: str = ""  # where the pixels came from, e.g. "torchvision" or "jpeg:/path" (provenance)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]

    def to(self, device) -> Dataset:
        """Move all tensors to `device` once (the loader never copies per batch)."""
        move = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return Dataset(self.name, classes=self.classes, augment=self.augment, source=self.source, **move)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A class-mixed random subset (fixed by `seed`) of the train and/or test split."""
        g = torch.Generator().manual_seed(seed)

        def pick(x, y, n):
            if n is None or n >= len(y):
                return x, y
            idx = torch.randperm(len(y), generator=g)[:n].to(y.device)
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, n_train)
        xte, yte = pick(self.x_test, self.y_test, n_test)
        return Dataset(self.name, xtr, ytr, xte, yte, self.classes, self.augment, self.source)

    def validation_split(self, n_val: int, seed: int = 0) -> tuple[Dataset, Dataset]:
        """(train, val), both carved from the training split: choose settings on `val`, report on `train`.

        n_val training images, drawn at random (fixed by `seed`, so classes mix), are held out.
        Both returned data sets train on the remaining images; `train` keeps the real test split,
        `val` has the held-out images as its test split (`val.test_batch(n)`). Test images are
        never used to choose a setting.
        """
        if not 0 < n_val < len(self.y_train):
            raise ValueError(f"n_val={n_val} must be between 1 and {len(self.y_train) - 1} "
                             f"(the {len(self.y_train)} training images of {self.name}).")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.y_train), generator=g).to(self.y_train.device)
        rest, held = idx[n_val:].sort().values, idx[:n_val]
        xtr, ytr = self.x_train[rest], self.y_train[rest]
        train = Dataset(self.name, xtr, ytr, self.x_test, self.y_test, self.classes, self.augment, self.source)
        val = Dataset(self.name, xtr, ytr, self.x_train[held], self.y_train[held], self.classes, self.augment,
                      self.source + " (validation split of train)")
        return train, val

    def test_batch(self, n: int, device=None):
        """The first n test examples as float [0, 1] images: the fixed evaluation subset."""
        x, y = self.x_test[:n], self.y_test[:n]
        if device is not None:
            x, y = x.to(device), y.to(device)
        return to_float(x), y


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 pixels in [0, 1], no normalisation (eps is in pixel units)."""
    return x_u8.float().div_(255.0)


def batches(data: Dataset, batch_size: int, split: str = "train", shuffle: bool = True,
            augment: bool = True, generator: torch.Generator | None = None, drop_last: bool = False):
    """Yield (x, y) float batches from the device-resident uint8 tensors, augmenting on the device."""
    x_all = data.x_train if split == "train" else data.x_test
    y_all = data.y_train if split == "train" else data.y_test
    n = len(y_all)
    order = torch.randperm(n, generator=generator).to(x_all.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size] if shuffle else slice(i, i + batch_size)
        x = to_float(x_all[idx])
        if augment and data.augment != "none":
            x = augment_batch(x, data.augment, generator)
        yield x, y_all[idx]


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator | None = None,
                  pad: int = 4) -> torch.Tensor:
    """The paper's augmentation, batched: 4-px zero pad + random crop + h-flip, or flip only."""
    n, _, h, w = x.shape
    if kind == "crop_flip":
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = xp[torch.arange(n, device=x.device)[:, None, None, None],
               torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    if kind in ("crop_flip", "flip"):
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


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


def _to_tensor_images(arr) -> torch.Tensor:
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr))


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
    return Dataset(name, _to_tensor_images(xtr), t(np.asarray(ytr)).long(), _to_tensor_images(xte),
                   t(np.asarray(yte)).long(), classes, augment, "torchvision")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


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

    reason = f"{type(err).__name__}: {_first_line(err)}"
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
        if _has_image_tree(folder):
            return _folder(folder, root, name="cifar10", classes=CIFAR10_CLASSES)
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
    xtr, ytr = _read_images(train)
    xte, yte = _read_images(test)
    return Dataset("tiny-imagenet", xtr, ytr, xte, yte, wnids, "flip")


def _read_images(items) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    from tqdm.auto import tqdm

    xs = [np.asarray(Image.open(p).convert("RGB")) for p, _ in tqdm(items, desc="reading images", leave=False)]
    return _to_tensor_images(np.stack(xs)), torch.tensor([lbl for _, lbl in items]).long()


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _split_source(path: Path, split: str):
    """PATH/split/ as a folder, else PATH/split.zip; None when neither exists."""
    if (path / split).is_dir():
        return path / split
    if (path / f"{split}.zip").is_file():
        return path / f"{split}.zip"
    return None


def _has_image_tree(path: Path) -> bool:
    return all(_split_source(path, s) is not None for s in ("train", "test"))


def _open_zip(src: Path) -> zipfile.ZipFile:
    """The zip at src, or one error naming it when it is not a readable zip (cut short, damaged, not a zip)."""
    try:
        return zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DatasetUnavailable(
            f"{src} is not a readable zip file ({type(err).__name__}: {_first_line(err)}): it is truncated or "
            f"damaged. Copy or download it again, or unzip it yourself into {src.with_suffix('')}/<class>/*.jpg."
        ) from None


def _tree_items(src: Path, split: str) -> dict[str, list]:
    """{class name: sorted member names or paths} of one split, from a folder or a zip; every class holds images."""
    found: dict[str, list] = {}
    if src.is_dir():
        for c in sorted(d for d in src.iterdir() if d.is_dir()):
            found[c.name] = sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        with _open_zip(src) as zf:
            for member in sorted(zf.namelist()):
                parts = member.split("/")
                if parts and parts[0] == split:  # the zip may or may not hold a top-level split/ folder
                    parts = parts[1:]
                if len(parts) == 2 and parts[1] == "":  # a class folder's own entry
                    found.setdefault(parts[0], [])
                elif len(parts) == 2 and Path(parts[1]).suffix.lower() in IMAGE_SUFFIXES:
                    found.setdefault(parts[0], []).append(member)
    where = (lambda c: src / c) if src.is_dir() else (lambda c: f"{src}, folder {c}/")
    empty = [c for c, items in found.items() if not items]
    if empty:
        raise DatasetUnavailable(
            f"{where(empty[0])} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            + (f", nor do {len(empty) - 1} other class folder(s)" if len(empty) > 1 else "")
            + ": add its images or remove the folder (every class needs images in train/ and test/).")
    if not found:
        raise DatasetUnavailable(f"{src} holds no class folders with images: expected {src}/<class>/*.png|jpg.")
    return found


def _read_tree(src: Path, items: list) -> np.ndarray:
    """The images of one split as one (N, H, W, 3) uint8 array; a file PIL cannot read, or one of another size
    than the first, is an error naming it."""
    from PIL import Image
    from tqdm.auto import tqdm

    zf = None if src.is_dir() else _open_zip(src)
    arrays, first = [], None
    try:
        for m in tqdm(items, desc=f"reading {src.name}", leave=False):
            where = str(m) if zf is None else f"{src} member {m}"
            try:
                raw = m if zf is None else io.BytesIO(zf.read(m))
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise DatasetUnavailable(
                    f"{where} cannot be read from the zip ({type(err).__name__}: {_first_line(err)}): the zip is "
                    "damaged. Copy or download it again.") from None
            try:
                with Image.open(raw) as im:
                    arr = np.asarray(im.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
                why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "from the zip", _first_line(err))
                raise DatasetUnavailable(
                    f"{where} is not an image PIL can read ({type(err).__name__}: {why}). Remove it, "
                    "or replace it with a PNG or JPEG image.") from None
            if first is None:
                first = (where, arr.shape)
            elif arr.shape != first[1]:
                raise DatasetUnavailable(
                    f"{where} is {arr.shape[1]} x {arr.shape[0]} pixels, but {first[0]} is {first[1][1]} x "
                    f"{first[1][0]}: a data set's images must all have one size. Resize them first (e.g. with "
                    "PIL's Image.resize).")
            arrays.append(arr)
    finally:
        if zf is not None:
            zf.close()
    return np.stack(arrays)


def _folder_stamp(sources: dict, trees: dict, classes: list | None) -> str:
    """What a folder cache was read from: every image's name, size and mtime (folders), the zip's size and mtime."""
    stamp: dict = {"classes": classes}
    for split, src in sources.items():
        if src.is_dir():
            rows = []
            for c, paths in sorted(trees[split].items()):
                for path in paths:
                    st = path.stat()
                    rows.append([f"{c}/{path.name}", st.st_size, st.st_mtime_ns])
            stamp[split] = [str(src.resolve()), rows]
        else:
            st = src.stat()
            stamp[split] = [str(src.resolve()), st.st_size, st.st_mtime_ns]
    return json.dumps(stamp, sort_keys=True)


def _folder_cache(path: Path, sources: dict, root: Path, trees: dict | None = None,
                  classes: list | None = None) -> Path:
    trees = trees if trees is not None else {s: _tree_items(src, s) for s, src in sources.items() if src.is_dir()}
    stamp = _folder_stamp(sources, trees, classes)
    return root / "cache" / f"folder-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}.npz"


def _folder(path: Path, root: Path | None = None, name: str | None = None, classes: list | None = None) -> Dataset:
    """Bring-your-own images: PATH/{train,test}/<class>/* or PATH/{train,test}.zip holding them.

    Read once, then cached as uint8 arrays under ROOT/cache (default TPAP_DATA), keyed by what was read:
    every image's name, size and modification time (or each zip's size and modification time), so an
    edited or added image is read again. `classes` fixes the label order (default: sorted folder names of
    train/).
    """
    sources = {}
    for split in ("train", "test"):
        src = _split_source(path, split)
        if src is None:
            raise DatasetUnavailable(
                f"Image folder {path} has no '{split}/' subfolder (nor {split}.zip). Expected "
                f"{path}/train/<class>/*.png|jpg and {path}/test/<class>/* (or train.zip / test.zip holding them)."
            )
        sources[split] = src
    trees = {s: _tree_items(src, s) for s, src in sources.items() if src.is_dir()}  # listed once: key and read
    cache = _folder_cache(path, sources, root if root is not None else data_root(), trees, classes)
    arrs = _load_cache(cache)
    if arrs is None:
        trees = {s: trees.get(s) or _tree_items(src, s) for s, src in sources.items()}
        classes = list(classes) if classes is not None else sorted(trees["train"])
        for split, tree in trees.items():
            if sorted(tree) != sorted(classes):
                raise DatasetUnavailable(
                    f"{sources[split]}: class folders {sorted(tree)} differ from the expected {sorted(classes)}.")
        arrs = {"classes": np.array(classes)}
        for split, tree in trees.items():
            items = [(m, i) for i, c in enumerate(classes) for m in tree[c]]
            arrs[f"x_{split}"] = _read_tree(sources[split], [m for m, _ in items])
            arrs[f"y_{split}"] = np.array([i for _, i in items], dtype=np.int64)
        if arrs["x_train"].shape[1:] != arrs["x_test"].shape[1:]:
            h, w = arrs["x_train"].shape[1:3]
            raise DatasetUnavailable(
                f"{sources['test']} holds {arrs['x_test'].shape[2]} x {arrs['x_test'].shape[1]} images but "
                f"{sources['train']} {w} x {h}: train and test images must have one size. Resize them first.")
        _save_npz_atomic(cache, arrs)
    size = arrs["x_train"].shape[1]
    t = torch.from_numpy
    return Dataset(name or f"folder:{path.name}", _to_tensor_images(arrs["x_train"]), t(arrs["y_train"]),
                   _to_tensor_images(arrs["x_test"]), t(arrs["y_test"]), [str(c) for c in arrs["classes"]],
                   "crop_flip" if size <= 64 else "flip", f"images:{path}")


def _load_cache(cache: Path) -> dict | None:
    """A folder cache's arrays, or None when there is none; an unreadable one is read again (with a warning)."""
    if not cache.exists():
        return None
    try:
        with np.load(cache, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"The image cache {cache} cannot be read ({type(err).__name__}: {_first_line(err)}); the "
                      "images are read again and the cache rewritten.", stacklevel=3)
        return None


def _save_npz_atomic(path: Path, arrs: dict) -> None:
    """Write a cache file with a temp file of this writer's own + rename; where it cannot be written, say so (a
    warning) and go on: it only costs a re-read next time."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **arrs)
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        warnings.warn(f"Could not write the image cache {path} ({type(err).__name__}: {_first_line(err)}); the "
                      "images were read and are used, but will be read again next time. Set TPAP_DATA to a "
                      "writable folder to cache them.", stacklevel=3)


def mix_class_order(data: Dataset, seed: int = 0) -> Dataset:
    """A split stored in class order (labels sorted, e.g. image folders) is shuffled once, seeded.

    So `test_batch(n)` and the per-epoch train subset (the first n examples) mix the classes for
    every data set; a split that is already mixed keeps its order (and its numbers).
    """
    out = {}
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(y) > 1 and y.min() != y.max() and bool((y[1:] >= y[:-1]).all()):
            idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)
            x, y = x[idx], y[idx]
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return Dataset(data.name, classes=data.classes, augment=data.augment, source=data.source, **out)


def _npz(path: Path) -> Dataset:
    """Bring-your-own arrays: x_train, y_train, x_test, y_test (uint8 NHWC/NCHW/NHW), classes optional."""
    if not path.exists():
        raise DatasetUnavailable(f"No .npz file at {path}.")
    with np.load(path, allow_pickle=False) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise DatasetUnavailable(f"{path} lacks arrays {sorted(missing)}; it has {f.files}.")
        arrs = {k: f[k] for k in f.files}
    for k in ("x_train", "x_test"):
        if arrs[k].dtype != np.uint8:
            raise DatasetUnavailable(f"{path}: {k} must be uint8 pixels 0..255, got {arrs[k].dtype}.")
    ytr = torch.as_tensor(arrs["y_train"]).long()
    classes = [str(c) for c in arrs["classes"]] if "classes" in arrs else [str(i) for i in range(int(ytr.max()) + 1)]
    return Dataset(f"npz:{path.stem}", _to_tensor_images(arrs["x_train"]), ytr,
                   _to_tensor_images(arrs["x_test"]), torch.as_tensor(arrs["y_test"]).long(), classes)


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
        return _folder(Path(name[7:]).expanduser(), root)
    if name.startswith("npz:"):
        return _npz(Path(name[4:]).expanduser())
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
