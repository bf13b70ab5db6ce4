"""The paper's networks in their CIFAR forms (ResNet-18, VGG-16, WRN-34-10) and a small CPU CNN.

Every model maps [0, 1] images to logits, exposes `features(x)` (penultimate layer, for t-SNE,
Fig. 7) and `cam_layer` (the Grad-CAM target layer, Fig. 6). `eval_mode` is the one way the kit
runs a model in eval mode and gives it back as it was.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run `model` in eval mode inside the block; afterwards every submodule gets its own training flag back,
    even on error (a wrapper in train mode around an eval-mode network, e.g. `TPAP(net)`, stays that way)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in flags:
            m.training = was_training


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


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable; the message says what to do."""


def imagenet_resnet18_file() -> tuple[str, Path]:
    """Where torchvision's IMAGENET1K_V1 ResNet-18 weights come from, and where they are cached."""
    from torchvision.models import ResNet18_Weights

    url = ResNet18_Weights.IMAGENET1K_V1.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]


def imagenet_resnet18_state() -> dict:
    """torchvision's IMAGENET1K_V1 ResNet-18 weights: downloaded once into torch.hub's cache
    (hash-checked), always loaded with weights_only=True."""
    url, target = imagenet_resnet18_file()
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True,
                                                  weights_only=True)
    except Exception as err:  # offline: URLError / OSError; a damaged cached file: RuntimeError / UnpicklingError
        import urllib.error

        lines = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {lines[0] if lines else ''}"
        if target.is_file() and not isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError)):
            raise WeightsUnavailable(
                f"torchvision's ImageNet ResNet-18 weights at {target} cannot be loaded ({reason}): the file is "
                f"damaged or incomplete. Delete it to download it again, or copy a good one from {url} there "
                "(or point TORCH_HOME at a folder whose hub/checkpoints/ has it)."
            ) from None
        raise WeightsUnavailable(
            f"torchvision's ImageNet ResNet-18 weights are not at {target} and could not be downloaded "
            f"({reason}). On a machine with internet, download {url} and copy it to {target} (or point "
            "TORCH_HOME at a folder whose hub/checkpoints/ has it)."
        ) from None


def resnet18_imagenet(in_channels=3, num_classes=102, width=64, norm=None, pretrained=True):
    """torchvision's ResNet-18 (ImageNet form: 7x7 stride-2 stem, max-pool) with a new linear head,
    ImageNet weights by default and ImageNet normalisation built in (Tab. 3's ResNet-18*)."""
    if in_channels != 3 or width != 64:
        raise ValueError(f"resnet18_imagenet takes RGB images at width 64, got {in_channels} channels, "
                         f"width {width}.")
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None)
    if pretrained:
        net.load_state_dict(imagenet_resnet18_state())
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                         net.layer4)
    model = Classifier(body, 512, num_classes, norm or Normalize(IMAGENET_MEAN, IMAGENET_STD))
    model.cam_layer = body[-1]
    return model


MODELS = {"small_cnn": small_cnn, "resnet18": resnet18, "vgg16": vgg16, "wrn34_10": wrn34_10,
          "resnet18_imagenet": resnet18_imagenet}
DEFAULT_WIDTH = {"small_cnn": 32, "resnet18": 64, "vgg16": 64, "wrn34_10": 10, "resnet18_imagenet": 64}
PRETRAINED = {"resnet18_imagenet"}


def build_model(name: str, num_classes: int = 10, in_channels: int = 3, width: int | None = None,
                norm: tuple | None = None, pretrained: bool = True) -> Classifier:
    """A model by name; `norm=(mean, std)` adds a Normalize first layer (pixels stay in [0, 1]).

    `pretrained` matters only for models in PRETRAINED (False: random init, e.g. before loading a
    checkpoint, so that no download is needed)."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
    extra = {"pretrained": pretrained} if name in PRETRAINED else {}
    model = MODELS[name](in_channels, num_classes, width or DEFAULT_WIDTH[name],
                         Normalize(*norm) if norm is not None else None, **extra)
    model.arch = name
    return model


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy for inference with every BatchNorm2d that directly follows a Conv2d folded
    into that convolution (w' = w * g / s, b' = (b - mu) * g / s + beta, s = sqrt(var + eps)).

    Same function as `model.eval()` up to float rounding, fewer passes over memory: TPAP's
    input-gradient step no longer runs a BatchNorm backward (`python -m tpap_nb.experiments.cost` measures
    it). The copy is a torch.fx GraphModule; `model` is left untouched, so fold again after training.
    """
    import torch.fx as fx
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    mods = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(mods[node.target], nn.BatchNorm2d):
            continue
        conv = node.args[0]
        if (isinstance(conv, fx.Node) and conv.op == "call_module" and len(conv.users) == 1
                and isinstance(mods[conv.target], nn.Conv2d)):
            parent, _, name = conv.target.rpartition(".")
            setattr(gm.get_submodule(parent), name, fuse_conv_bn_eval(mods[conv.target], mods[node.target]))
            node.replace_all_uses_with(conv)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.arch = getattr(model, "arch", type(model).__name__)
    return gm.eval()
