"""The deployed graph: what ONNX, TensorRT and the PyTorch backend all run.

Input ``images``: float32 (N, C, H, W) raw 0..255 pixels in the channel order
recorded in the metadata. Outputs ``scores`` (softmax probabilities) and,
when the discriminator is kept, ``domain`` = P(looks like the synthetic
source) per image: the node's domain-shift monitor.
"""

from __future__ import annotations

import torch
from torch import nn


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
        return scores, torch.sigmoid(self.discriminator(features).reshape(images.shape[0], -1).mean(1))
