"""The deployed graph: what ONNX, TensorRT and the PyTorch backend all run.

Input ``images``: float32 (N, C, H, W) raw 0..255 pixels in the channel order
recorded in the metadata. A classifier outputs ``scores`` (softmax
probabilities); a detector ``boxes`` (N, M, 4) x1, y1, x2, y2 in network-input
pixels, ``scores`` (N, M) and ``classes`` (N, M) as float32 (one output dtype
keeps TensorRT engines and every backend's conversion simple; ids are exact in
float32), its M candidates best first with no threshold applied. When the
discriminator is kept, ``domain`` = P(looks like the synthetic source) per image
(a pixel discriminator's logits are averaged over the map): the node's domain-shift monitor.
"""

from __future__ import annotations

import torch
from torch import nn


def _domain(discriminator: nn.Module, features: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(discriminator(features).reshape(features.shape[0], -1).mean(1))


class DeployedClassifier(nn.Module):
    def __init__(self, model: nn.Module, discriminator: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.discriminator = discriminator

    @property
    def output_names(self) -> list[str]:
        return ["scores", "domain"] if self.discriminator is not None else ["scores"]

    def forward(self, images: torch.Tensor):
        features, logits = self.model.forward_train(images)
        scores = torch.softmax(logits, dim=1)
        if self.discriminator is None:
            return scores
        return scores, _domain(self.discriminator, features)


class DeployedDetector(nn.Module):
    def __init__(self, model: nn.Module, discriminator: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.discriminator = discriminator

    @property
    def output_names(self) -> list[str]:
        names = ["boxes", "scores", "classes"]
        return names + ["domain"] if self.discriminator is not None else names

    def forward(self, images: torch.Tensor):
        features, outputs = self.model.forward_train(images)
        boxes, scores, classes = self.model.decode(outputs)
        out = (boxes, scores, classes.to(scores.dtype))
        if self.discriminator is None:
            return out
        return (*out, _domain(self.discriminator, features))
