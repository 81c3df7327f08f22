"""The deployed graph: what ONNX, TensorRT and the PyTorch backend all run.

Input ``images``: float32 (N, C, H, W) raw 0..255 pixels in the channel order
recorded in the metadata. A classifier outputs ``scores`` (softmax
probabilities); a detector ``boxes`` (N, M, 4) x1, y1, x2, y2 in network-input
pixels, ``scores`` (N, M) and ``classes`` (N, M) as float32 (one output dtype
keeps TensorRT engines and every backend's conversion simple; ids are exact in
float32), its M candidates best first with no threshold applied. When the
discriminator is kept, ``domain`` = P(looks like the synthetic source) per image
(a pixel discriminator's logits are averaged over the map): the node's domain-shift monitor.
When a post-hoc monitor was fitted at export (:mod:`dann_ros.model.feature_monitor`),
``feature_shift`` follows: 0 on frames like the adaptation target, towards 1 beyond it.
"""

from __future__ import annotations

import torch
from torch import nn

from dann_ros.data.tasks import task_spec


class _Deployed(nn.Module):
    """A task model plus, optionally, the discriminator kept as the domain-shift monitor."""

    task_outputs: list[str] = []

    def __init__(self, model: nn.Module, discriminator: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.discriminator = discriminator
        self.feature_monitor: nn.Module | None = None  # set at export (model/feature_monitor.py)

    @property
    def output_names(self) -> list[str]:
        return (self.task_outputs + (["domain"] if self.discriminator is not None else [])
                + (["feature_shift"] if self.feature_monitor is not None else []))

    def _with_domain(self, outputs: tuple[torch.Tensor, ...], features: torch.Tensor):
        if self.discriminator is not None:
            logits = self.discriminator(features).reshape(features.shape[0], -1)
            outputs = (*outputs, torch.sigmoid(logits.mean(1)))
        if self.feature_monitor is not None:
            outputs = (*outputs, self.feature_monitor(features))
        return outputs if len(outputs) > 1 else outputs[0]


class DeployedClassifier(_Deployed):
    task_outputs = list(task_spec("classification").outputs)

    def forward(self, images: torch.Tensor):
        features, logits = self.model.forward_train(images)
        return self._with_domain((torch.softmax(logits, dim=1),), features)


class DeployedDetector(_Deployed):
    task_outputs = list(task_spec("detection").outputs)

    def forward(self, images: torch.Tensor):
        features, outputs = self.model.forward_train(images)
        boxes, scores, classes = self.model.decode(outputs)
        return self._with_domain((boxes, scores, classes.to(scores.dtype)), features)
