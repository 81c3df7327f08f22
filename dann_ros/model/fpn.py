"""Feature pyramid neck (Lin et al., CVPR 2017) fused into ONE map for a single-stride CenterNet.

The demo's objects are 10-40 px: a stride-4 map has the resolution to place them, but a small
CNN's stride-4 features see only ~16 px, and a torchvision backbone's stride-32 map is 3 x 4
cells at 96 x 128. The pyramid gives the fine map the context of the coarse ones: lateral 1x1
convolutions bring each level to ``channels``, a top-down pass adds each coarser level
(nearest-upsampled) to the next finer one, and a 3x3 conv-BN-ReLU smooths the finest sum,
which the heads read. Levels the backbone does not have (a small CNN stops at stride 4) are
made by stride-2 conv-BN-ReLU blocks on its coarsest map (RetinaNet's extra levels).

Only Conv, Add, Resize (nearest, sizes fixed by the input size) and Relu enter the ONNX graph:
TensorRT builds it without plugins, and the CenterNet decode after it is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.backbones import Backbone
from dann_ros.model.config import check_strides


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FeaturePyramidNeck(nn.Module):
    """Taps ``backbone`` at ``strides`` (finest first) and returns one fused map at ``strides[0]``.

    Truncates the backbone after its deepest tapped stage: layers no level reads are not computed
    (resnet18 with strides 4/8/16 drops layer4). ``taps`` are the backbone children read.
    """

    def __init__(self, backbone: Backbone, in_channels: int, strides: Sequence[int] = (4, 8, 16),
                 channels: int = 64) -> None:
        super().__init__()
        strides = tuple(int(s) for s in strides)
        check_strides(strides)
        stages = {s: (i, c) for i, c, s in backbone.stages(in_channels)}
        if strides[0] not in stages:
            raise ValueError(f"model.fpn_strides: the backbone has no map at stride {strides[0]} "
                             f"(it has {sorted(stages)}); start the pyramid at one of those")
        own = [s for s in strides if s in stages]
        own = own[:next((k for k, s in enumerate(own) if s != strides[k]), len(own))]  # contiguous from the finest
        self.taps = [stages[s][0] for s in own]
        backbone.truncate(self.taps[-1])
        widths = [stages[s][1] for s in own]
        extra, width = [], widths[-1]
        for _ in strides[len(own):]:
            extra.append(_conv_bn_relu(width, channels, stride=2))
            width = channels
            widths.append(channels)
        self.extra = nn.ModuleList(extra)
        self.lateral = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)
        self.smooth = _conv_bn_relu(channels, channels)
        self.strides = strides
        self.stride = strides[0]
        self.out_channels = channels

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """``maps``: the backbone's outputs at ``taps`` (``Backbone.forward_levels``), finest first."""
        maps = list(maps)
        for block in self.extra:
            maps.append(block(maps[-1]))
        p = self.lateral[-1](maps[-1])
        for i in range(len(maps) - 2, -1, -1):
            lat = self.lateral[i](maps[i])
            # sizes as Python ints: a constant Resize in the graph, as the decode's map size
            p = lat + F.interpolate(p, size=(int(lat.shape[-2]), int(lat.shape[-1])), mode="nearest")
        return self.smooth(p)
