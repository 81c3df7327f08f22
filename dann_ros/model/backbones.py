"""Feature extractors by name: small CNNs for the demo, torchvision backbones for real cameras.

A backbone maps (N, C, H, W) to a feature map and tells its channel count, so
the same extractor feeds a classification head (pooled) or a dense detection
head (per location) and the image-level domain discriminator.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

SMALL_BACKBONES = ("small_cnn", "lenet", "tllib_lenet")


class Backbone(nn.Module):
    def __init__(self, body: nn.Module, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _conv_block(cin: int, cout: int, k: int, pad: int, dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad, bias=False), nn.BatchNorm2d(cout)]
    if dropout:
        layers.append(nn.Dropout2d(dropout))
    return layers + [nn.MaxPool2d(2), nn.ReLU(inplace=True)]


def small_cnn(in_channels: int, dense: bool = False) -> Backbone:
    """The MNIST-scale extractor of Ganin et al. (32 and 48 filters, 5x5), with BatchNorm.

    ``dense`` pads the convolutions so the map keeps 1/4 of the input size, which
    the detection head needs; classification uses the unpadded original.
    """
    pad = 2 if dense else 0
    body = nn.Sequential(*_conv_block(in_channels, 32, 5, pad), *_conv_block(32, 48, 5, pad, dropout=0.1))
    return Backbone(body, 48, 4)


def lenet(in_channels: int, dense: bool = False) -> Backbone:
    pad = 2 if dense else 0
    body = nn.Sequential(*_conv_block(in_channels, 6, 5, pad), *_conv_block(6, 16, 5, pad))
    return Backbone(body, 16, 4)


def tllib_lenet(in_channels: int, dense: bool = False) -> Backbone:
    """The reference DANN recipe's digit extractor (tllib ``lenet``: 20 and 50 filters, fc 500,
    no BatchNorm), so results and speed compare like with like. Its output is a vector: no
    feature map for a dense head."""
    if dense:
        raise ValueError("model.backbone: tllib_lenet ends in a fully connected layer; detection needs a "
                         "convolutional backbone (small_cnn, lenet, resnet18, ...)")
    body = nn.Sequential(nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
                         nn.Conv2d(20, 50, 5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
                         nn.Flatten(), nn.LazyLinear(500), nn.ReLU(inplace=True), nn.Dropout(0.5))
    return Backbone(body, 500, 1)


def _torchvision(name: str, in_channels: int, weights_path: Path | None) -> Backbone:
    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise ValueError(f"model.backbone: unknown backbone {name!r} ({exc})") from None
    if weights_path is not None:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        head_keys = [k for k in missing + unexpected if not k.startswith(("fc.", "classifier."))]
        if head_keys:
            raise ValueError(f"{weights_path}: weights do not match backbone {name!r}: {head_keys[:5]}")
    if name.startswith(("resnet", "resnext", "wide_resnet", "regnet")):
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 7, 2, 3, bias=False)
        body = nn.Sequential(*list(net.children())[:-2])
        channels = net.fc.in_features
        return Backbone(body, channels, 32)
    if hasattr(net, "features"):  # mobilenet, efficientnet, convnext, vgg ...
        if in_channels != 3:
            raise ValueError(f"model.backbone: {name} supports only 3 input channels")
        body = net.features
        with torch.no_grad():
            channels = body(torch.zeros(1, 3, 64, 64)).shape[1]
        return Backbone(body, channels, 32)
    raise ValueError(f"model.backbone: {name!r} has no known feature extractor layout")


def build_backbone(name: str, in_channels: int, dense: bool = False, weights_path: Path | None = None) -> Backbone:
    """``name``: small_cnn, lenet, or any torchvision classification model (resnet18, mobilenet_v3_small, ...)."""
    if name == "small_cnn":
        return small_cnn(in_channels, dense)
    if name == "lenet":
        return lenet(in_channels, dense)
    if name == "tllib_lenet":
        return tllib_lenet(in_channels, dense)
    return _torchvision(name, in_channels, weights_path)
