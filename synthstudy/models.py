"""Classifier / encoder registry: `create_model(name, in_channels, num_classes, image_size)`.

One registry serves every arm of the study, so a real and a synthetic arm get exactly the same architecture.

    >>> from synthstudy.models import create_model, MODELS
    >>> model = create_model("cnn", in_channels=1, num_classes=10, image_size=28)

Members:
- `cnn` (default): a fast VGG-style BN CNN sized for 2 CPU cores (28x28 and 32x32; also 8x8 digits).
- `cnn_wide`: the same shape, twice the width (slower, a little more accurate; for the paper profile).
- `resnet18`, `resnet26d`, ... : any timm architecture name prefixed `timm:` (e.g. `timm:resnet18`), built
  without pretrained weights (nothing is ever downloaded).

Every model exposes `features(x) -> (B, feature_dim)` and `feature_dim`, used by the contrastive encoder and the
metrics' feature extractor.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn
    return wrap


def is_model(name: str) -> bool:
    """True for a registered model name or a `timm:<arch>` that timm knows (timm imported only then)."""
    if name.startswith("timm:"):
        import timm
        return timm.is_model(name[5:])
    return name in _REGISTRY


def available() -> list[str]:
    """Registered names plus the `timm:` prefix (any timm architecture)."""
    return sorted(_REGISTRY) + ["timm:<name>"]


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ConvNet(nn.Module):
    """A VGG-style BN CNN from a spec: an int is a 3x3 conv + BN + ReLU of that width, "M" a 2x2 max pool (applied
    between the preceding conv and its BN); then a
    global max pool and a linear head. Pools come early because on a CPU most of a small net's cost is its
    full-resolution layers; widths grow where the map is small, where parameters are cheap in FLOPs.

    A pool that would shrink the map below 2x2 is skipped, so the same spec serves 8x8 digits and 32x32 CIFAR.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, spec=(16, "M", 32, "M", 64, 128, "M", 128)):
        super().__init__()
        layers, c, size = [], in_channels, image_size
        for item in spec:
            if item == "M":
                if size // 2 >= 2:
                    # pool right after the conv, before BN and ReLU (max-pool commutes with ReLU): the
                    # normalisation and activation then run on a quarter of the pixels
                    layers.insert(len(layers) - 2, nn.MaxPool2d(2))
                    size //= 2
            else:
                layers += conv_bn(c, item)
                c = item
        self.body = nn.Sequential(*layers)
        self.feature_dim = c
        self.head = nn.Linear(c, num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).amax(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# Specs measured in `make bench` (see README): throughput on 2 CPU cores at batch 256.
SPECS = {
    "cnn": (16, "M", 32, "M", 64, 128, "M", 128),
    "cnn_wide": (32, "M", 64, "M", 128, 256, "M", 256),
}


@register("cnn")
def cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return ConvNet(in_channels, num_classes, image_size, SPECS["cnn"])


@register("cnn_wide")
def cnn_wide(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return ConvNet(in_channels, num_classes, image_size, SPECS["cnn_wide"])


class TimmClassifier(nn.Module):
    """A timm architecture (no pretrained weights) with the `features` / `feature_dim` interface."""

    def __init__(self, arch: str, in_channels: int, num_classes: int):
        super().__init__()
        import timm
        self.net = timm.create_model(arch, pretrained=False, in_chans=in_channels, num_classes=num_classes)
        self.feature_dim = self.net.num_features

    def features(self, x):
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward(self, x):
        return self.net(x)


def create_model(name: str, in_channels: int, num_classes: int, image_size: int, seed: int | None = None) -> nn.Module:
    """Build a registered model, or `timm:<arch>`; unknown names raise before anything is built.

    `seed` fixes the initial weights (without touching the global random state), so that one seed makes a whole
    training run reproducible.
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return create_model(name, in_channels, num_classes, image_size)
    if name.startswith("timm:"):
        import timm
        arch = name.split(":", 1)[1]
        if arch not in timm.list_models():
            raise ValueError(f"model={name!r}: timm has no architecture {arch!r} (see timm.list_models())")
        return TimmClassifier(arch, in_channels, num_classes)
    if name not in _REGISTRY:
        raise ValueError(f"model={name!r} is unknown; allowed values: {', '.join(available())}")
    return _REGISTRY[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size)
