"""Feature extractors by name: small CNNs for the demo, torchvision backbones for real cameras.

A backbone maps (N, C, H, W) to a feature map and tells its channel count, so
the same extractor feeds a classification head (pooled) or a dense detection
head (per location) and the image-level domain discriminator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

SMALL_BACKBONES = ("small_cnn", "lenet", "tllib_lenet")


class Backbone(nn.Module):
    """``body`` (an nn.Sequential) maps the image to its deepest map. ``stages()`` tells where the
    body's resolution halves, so a multi-scale neck (FPN) can tap the intermediate maps."""

    def __init__(self, body: nn.Module, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def stages(self, in_channels: int) -> list[tuple[int, int, int]]:
        """(index of the last child at each stride, its channels, the stride), finest first: measured
        with one dry run through the children, so any Sequential body (torchvision's too) works."""
        if not isinstance(self.body, nn.Sequential):
            raise ValueError("multi-scale features need a Sequential backbone body")
        was_training = self.body.training
        self.body.eval()
        size = 128
        x = torch.zeros(1, in_channels, size, size)
        found: dict[int, tuple[int, int, int]] = {}
        with torch.no_grad():
            for i, child in enumerate(self.body):
                x = child(x)
                if x.dim() != 4:
                    break
                stride = round(size / x.shape[-1])
                found[stride] = (i, int(x.shape[1]), stride)  # later children at the same stride win
        self.body.train(was_training)
        return [found[s] for s in sorted(found)]

    def forward_levels(self, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
        """The maps after the children at ``taps`` (ascending indices), in one pass."""
        out, last = [], taps[-1]
        for i, child in enumerate(self.body):
            x = child(x)
            if i in taps:
                out.append(x)
            if i == last:
                break
        return out

    def truncate(self, last_index: int) -> None:
        """Drop the children after ``last_index`` (compute a multi-scale neck never reads); the kept
        children keep their state-dict keys."""
        self.body = self.body[:last_index + 1]


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


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A local weights file (torch.save of a state_dict, e.g. as downloaded from torchvision) -> the
    state_dict. Also takes {"state_dict": ...} / {"model": ...} wrappers and DDP's "module." prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.backbone_weights: {path} does not exist (weights are never downloaded: "
                                "put torchvision's .pth file there)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-tensor content
        raise ValueError(f"model.backbone_weights: {path} is not a readable state_dict file ({exc})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model.backbone_weights: {path} does not hold a state_dict (name -> tensor)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def load_backbone_weights(net: nn.Module, path: Path, name: str) -> None:
    """Load every feature-extractor tensor of ``path`` into the torchvision model ``net``.

    The classification head (``fc.*``, ``classifier.*``) may be absent or differ (another number
    of classes): it is never used. Anything else missing, unexpected or of another shape is an
    error that names the file and the keys, so a resnet34 file given for resnet18 cannot load halfway.
    """
    state = load_state_dict_file(path)
    own = net.state_dict()

    def is_head(key: str) -> bool:
        return key.startswith(("fc.", "classifier.")) or key.endswith("num_batches_tracked")

    missing = [k for k in own if k not in state and not is_head(k)]
    unexpected = [k for k in state if k not in own and not is_head(k)]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in state
              if k in own and not is_head(k) and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label} {len(keys)}: {', '.join(keys[:5])}{more}")
        raise ValueError(f"model.backbone_weights: {path} does not match backbone {name!r}: {'; '.join(parts)}")
    net.load_state_dict({k: v for k, v in state.items() if k in own and not is_head(k)}, strict=False)


def _torchvision(name: str, in_channels: int, weights_path: Path | None) -> Backbone:
    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise ValueError(f"model.backbone: unknown backbone {name!r} ({exc})") from None
    if weights_path is not None:
        load_backbone_weights(net, weights_path, name)
    for m in net.modules():
        # mobilenet/efficientnet use BN momentum 0.01 (tuned for 600 ImageNet epochs): in a schedule of a few
        # thousand steps the running statistics stay near their start and the eval-mode model fails (measured:
        # mobilenet_v3_small detector, 300 steps, training loss as small_cnn's, eval mAP@0.5 0.5%)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    if name.startswith(("resnet", "resnext", "wide_resnet", "regnet")):
        if in_channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, old.out_channels, 7, 2, 3, bias=False)
            if weights_path is not None and in_channels == 1:  # grey input: the RGB filters summed
                with torch.no_grad():
                    net.conv1.weight.copy_(old.weight.sum(dim=1, keepdim=True))
        body = nn.Sequential(*list(net.children())[:-2])
        channels = net.fc.in_features
        return Backbone(body, channels, 32)
    if hasattr(net, "features"):  # mobilenet, efficientnet, convnext, vgg ...
        if in_channels != 3:
            raise ValueError(f"model.backbone: {name} supports only 3 input channels")
        body = net.features
        with torch.no_grad():  # in eval mode: a training-mode pass would move pretrained BN statistics
            channels = body.eval()(torch.zeros(1, 3, 64, 64)).shape[1]
        body.train()
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
