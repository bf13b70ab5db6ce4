"""A data set in memory (uint8 tensors on the training device) and its batches: [0, 1] floats, augmented on
the device. The loaders that fill a Dataset are `data.loaders` and `data.caltech`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


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


def to_tensor_images(arr) -> torch.Tensor:
    """Images (N, H, W), (N, H, W, C) or (N, C, H, W) as a contiguous (N, C, H, W) tensor of their dtype."""
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr))


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
