"""Issue 21's self-training defects on the loss's side: the teacher's pseudo-boxes from float32 logits under
bf16 autocast, and the student's second view leaving BatchNorm's running statistics alone."""

from __future__ import annotations

import torch
from torch import nn

from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss


def _detector(class_logits: list[float]):
    """A real tiny CenterNet (lenet backbone, 16 x 16 input) whose heads ignore the image: every cell scores
    ``class_logits``, boxes 2 cells wide, centred in their cell."""
    from dann_ros.model.backbones import build_backbone
    from dann_ros.model.detector import CenterNetDetector

    det = CenterNetDetector(build_backbone("lenet", 1, dense=True), len(class_logits), (1, 16, 16), (0.5,), (0.5,),
                            head_channels=4, max_detections=8)
    with torch.no_grad():
        for head, bias in ((det.heatmap, class_logits), (det.size, [2.0, 2.0]), (det.offset, [0.5, 0.5])):
            head[-1].weight.zero_()
            head[-1].bias.copy_(torch.tensor(bias))
    return det


class _PatternHead(nn.Module):
    """The heatmap head plus a fixed pattern, added in the head's output precision (as its last conv's
    bias would be): under bf16 autocast the sum is rounded to bf16, in float32 it is not."""

    def __init__(self, head: nn.Module, pattern: torch.Tensor) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("pattern", pattern)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        out = self.head(f)
        return out + self.pattern.to(out.dtype)


def test_teacher_decodes_float32_logits_so_bf16_near_ties_give_one_pseudo_box():
    det = _detector([0.0])
    h, w = det.output_hw
    pattern = torch.full((1, 1, h, w), -10.0)
    pattern[0, 0, 2, 2], pattern[0, 0, 2, 3] = 3.0, 3.004  # neighbours: one peak in float32, a tie in bf16
    assert torch.equal(pattern.bfloat16()[0, 0, 2, 2], pattern.bfloat16()[0, 0, 2, 3])
    det.heatmap = _PatternHead(det.heatmap, pattern)
    loss = DetectionPseudoLabelLoss(det.eval(), threshold=0.5).eval()
    loss.active = True
    out = {"heatmap": torch.zeros(1, 1, h, w), "size": torch.zeros(1, 2, h, w), "offset": torch.zeros(1, 2, h, w)}
    images = torch.zeros(1, 1, 16, 16)
    loss(out, images)
    assert float(loss.last_mask_rate) == 1.0  # float32 throughout: the control
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss(out, images)
    assert float(loss.last_mask_rate) == 1.0  # one pseudo-box at the stronger cell, not two at a bf16 tie
