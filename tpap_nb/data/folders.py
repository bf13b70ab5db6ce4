"""Images from folders and zips (`folder:PATH`: train/<class>/, test/<class>/; a CIFAR-10 JPEG copy) and arrays
from `npz:FILE`: read once, cached as .npz keyed on what was read, every unreadable file named."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..checks import first_line
from ..config import data_root
from .dataset import Dataset, DatasetUnavailable, to_tensor_images


def read_images(items) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    from tqdm.auto import tqdm

    xs = [np.asarray(Image.open(p).convert("RGB")) for p, _ in tqdm(items, desc="reading images", leave=False)]
    return to_tensor_images(np.stack(xs)), torch.tensor([lbl for _, lbl in items]).long()


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _split_source(path: Path, split: str):
    """PATH/split/ as a folder, else PATH/split.zip; None when neither exists."""
    if (path / split).is_dir():
        return path / split
    if (path / f"{split}.zip").is_file():
        return path / f"{split}.zip"
    return None


def has_image_tree(path: Path) -> bool:
    return all(_split_source(path, s) is not None for s in ("train", "test"))


def _open_zip(src: Path) -> zipfile.ZipFile:
    """The zip at src, or one error naming it when it is not a readable zip (cut short, damaged, not a zip)."""
    try:
        return zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DatasetUnavailable(
            f"{src} is not a readable zip file ({type(err).__name__}: {first_line(err)}): it is truncated or "
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
                    f"{where} cannot be read from the zip ({type(err).__name__}: {first_line(err)}): the zip is "
                    "damaged. Copy or download it again.") from None
            try:
                with Image.open(raw) as im:
                    arr = np.asarray(im.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
                why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "from the zip", first_line(err))
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


def load_folder(path: Path, root: Path | None = None, name: str | None = None, classes: list | None = None) -> Dataset:
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
    return Dataset(name or f"folder:{path.name}", to_tensor_images(arrs["x_train"]), t(arrs["y_train"]),
                   to_tensor_images(arrs["x_test"]), t(arrs["y_test"]), [str(c) for c in arrs["classes"]],
                   "crop_flip" if size <= 64 else "flip", f"images:{path}")


def _load_cache(cache: Path) -> dict | None:
    """A folder cache's arrays, or None when there is none; an unreadable one is read again (with a warning)."""
    if not cache.exists():
        return None
    try:
        with np.load(cache, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"The image cache {cache} cannot be read ({type(err).__name__}: {first_line(err)}); the "
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
        warnings.warn(f"Could not write the image cache {path} ({type(err).__name__}: {first_line(err)}); the "
                      "images were read and are used, but will be read again next time. Set TPAP_DATA to a "
                      "writable folder to cache them.", stacklevel=3)


def load_npz(path: Path) -> Dataset:
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
    return Dataset(f"npz:{path.stem}", to_tensor_images(arrs["x_train"]), ytr,
                   to_tensor_images(arrs["x_test"]), torch.as_tensor(arrs["y_test"]).long(), classes)
