"""The paper's networks in their CIFAR forms (ResNet-18, VGG-16, WRN-34-10) and a small CPU CNN.

Every model maps [0, 1] images to logits, exposes `features(x)` (penultimate layer, for t-SNE,
Fig. 7) and `cam_layer` (the Grad-CAM target layer, Fig. 6).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Normalize(nn.Module):
    """Per-channel (x - mean) / std as the model's first layer, so data stay in pixel units."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Shared shape: optional normalisation -> body -> global pool -> linear head."""

    def __init__(self, body: nn.Module, dim: int, num_classes: int, norm: nn.Module | None):
        super().__init__()
        self.norm = norm if norm is not None else nn.Identity()
        self.body = body
        self.fc = nn.Linear(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (after global average pooling)."""
        return F.adaptive_avg_pool2d(self.body(self.norm(x)), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def small_cnn(in_channels=1, num_classes=10, width=32, norm=None):
    """conv3x3-BN-ReLU blocks w, w | pool | 2w, 2w | pool | 4w, GAP, linear (sized for a 2-core CPU)."""
    w = width
    body = nn.Sequential(_conv_bn(in_channels, w), _conv_bn(w, w), nn.MaxPool2d(2),
                         _conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w), nn.MaxPool2d(2), _conv_bn(2 * w, 4 * w))
    model = Classifier(body, 4 * w, num_classes, norm)
    model.cam_layer = body[-1]
    return model


class BasicBlock(nn.Module):
    """ResNet basic block (He et al.), also used pre-activated by the WideResNet."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(in_channels=3, num_classes=10, width=64, norm=None):
    """ResNet-18, CIFAR form: 3x3 stem, no max-pool, stages of 2 blocks (w, 2w, 4w, 8w)."""
    stem = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    layers, cin = stem, width
    for i, mult in enumerate((1, 2, 4, 8)):
        for j in range(2):
            layers.append(BasicBlock(cin, width * mult, 2 if (i > 0 and j == 0) else 1))
            cin = width * mult
    body = nn.Sequential(*layers)
    model = Classifier(body, cin, num_classes, norm)
    model.cam_layer = body[-1]
    return model


VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16(in_channels=3, num_classes=10, width=64, norm=None):
    """VGG-16 with batch norm, CIFAR form (one linear layer on 512 features)."""
    layers, cin = [], in_channels
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            cout = v * width // 64
            layers.append(_conv_bn(cin, cout))
            cin = cout
    body = nn.Sequential(*layers)
    model = Classifier(body, cin, num_classes, norm)
    model.cam_layer = body[-2]  # last conv block before the final pool
    return model


class WideBlock(nn.Module):
    """Pre-activation wide basic block (Zagoruyko & Komodakis)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


def wrn34_10(in_channels=3, num_classes=10, width=10, norm=None):
    """WideResNet-34-10: depth 34 (5 blocks per stage), widen factor `width` (default 10)."""
    widths, n = [16, 16 * width, 32 * width, 64 * width], (34 - 4) // 6
    layers, cin = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)], 16
    for i, w in enumerate(widths[1:]):
        for j in range(n):
            layers.append(WideBlock(cin, w, (1 if i == 0 else 2) if j == 0 else 1))
            cin = w
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
    body = nn.Sequential(*layers)
    model = Classifier(body, cin, num_classes, norm)
    model.cam_layer = body[-3]
    return model


MODELS = {"small_cnn": small_cnn, "resnet18": resnet18, "vgg16": vgg16, "wrn34_10": wrn34_10}
DEFAULT_WIDTH = {"small_cnn": 32, "resnet18": 64, "vgg16": 64, "wrn34_10": 10}


def build_model(name: str, num_classes: int = 10, in_channels: int = 3, width: int | None = None,
                norm: tuple | None = None) -> Classifier:
    """A model by name; `norm=(mean, std)` adds a Normalize first layer (pixels stay in [0, 1])."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
    model = MODELS[name](in_channels, num_classes, width or DEFAULT_WIDTH[name],
                         Normalize(*norm) if norm is not None else None)
    model.arch = name
    return model
