"""Issue 21's self-training defects on the loss's side: the teacher's pseudo-boxes from float32 logits under
bf16 autocast, the student's second view leaving BatchNorm's running statistics alone, and the target loss's
divisor when the teacher passes no box."""

from __future__ import annotations

import math

import pytest
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


def test_a_teacher_that_passes_no_box_does_not_weigh_the_target_background_as_a_whole_batch_of_objects():
    """No pseudo-box: the focal loss is the background term alone. It is divided by the step's source objects
    (``source_objects``, set by the trainer), not by the pseudo-boxes clamped to 1, which made every target
    cell weigh as much as a whole source batch's objects and taught the real frames as background."""
    det = _detector([-20.0])  # the teacher scores ~0 everywhere
    loss = DetectionPseudoLabelLoss(det.eval(), threshold=0.5).eval()
    loss.active = True
    h, w = det.output_hw

    def value(n: int) -> float:
        out = {"heatmap": torch.zeros(n, 1, h, w), "size": torch.zeros(n, 2, h, w), "offset": torch.zeros(n, 2, h, w)}
        return float(loss(out, torch.zeros(n, 1, 16, 16)))

    background = math.log(2) * 0.25 * h * w  # per frame: student p = 0.5, teacher score ~0, (1 - 0)^4
    assert value(8) == pytest.approx(8 * background, rel=1e-4)  # a lone loss: source_objects defaults to 1
    assert float(loss.last_mask_rate) == 0.0
    loss.source_objects = 20.0  # 8 source frames holding 20 objects
    assert value(8) == pytest.approx(8 * background / 20.0, rel=1e-4)


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.named_buffers() if k.rsplit(".", 1)[-1] in
            ("running_mean", "running_var", "num_batches_tracked")}


def _real_detector():
    from dann_ros.data.preprocess import Preprocess
    from dann_ros.model.builders import build_model
    from dann_ros.model.config import ModelConfig

    torch.manual_seed(0)
    return build_model(ModelConfig(neck="fpn", discriminator_hidden=16), "detection", 3,
                       Preprocess(32, 48, "rgb", resize="letterbox")).train()


def test_second_view_normalises_with_its_batch_but_leaves_the_running_statistics_alone():
    """The masked/camera view is the student's in train mode (batch statistics normalise it, as before), but
    its statistics must not enter running_mean/var: ``update_teacher`` copies those into the teacher that
    labels clean frames, and evaluation and export normalise clean frames with them."""
    import copy

    det = _real_detector()
    images = torch.rand(4, 3, 32, 48) * 255
    _, out = det.forward_train(images)  # the step's clean pass: the one that updates the running statistics
    out = {k: v.detach() for k, v in out.items()}
    reference = copy.deepcopy(det)  # the same student; its BatchNorm momentum 0 below: batch statistics, no update
    before = _bn_buffers(det)
    assert any(v.abs().sum() > 0 for k, v in before.items() if k.endswith("running_mean"))

    loss = DetectionPseudoLabelLoss(det, threshold=0.05, mask_ratio=0.5, mask_block=4).train()
    loss.active = True
    torch.manual_seed(1)
    value = loss(out, images)
    after = _bn_buffers(det)
    for k in before:
        assert torch.equal(after[k], before[k]), k  # the masked pass left every running statistic alone
    for k, v in _bn_buffers(loss.teacher).items():
        assert torch.equal(v, before[k]), k  # and so the teacher's copies are the clean frames' too

    for m in reference.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    ref_loss = DetectionPseudoLabelLoss(reference, threshold=0.05, mask_ratio=0.5, mask_block=4).train()
    ref_loss.active = True
    torch.manual_seed(1)
    assert torch.allclose(ref_loss(out, images), value, rtol=1e-5)  # the same normalisation: the batch's own


def test_the_loss_reports_its_pseudo_boxes_per_source_object():
    """``last_box_ratio``: the step's pseudo-boxes over its source objects, the trainer's runaway alarm
    (train/trainer.py ``runaway``). Every cell of this teacher is a confident peak: 8 boxes (max_detections)
    per frame."""
    det = _detector([5.0])
    loss = DetectionPseudoLabelLoss(det.eval(), threshold=0.5).eval()
    assert loss.last_box_ratio is None  # nothing measured before self-training is on
    loss.active = True
    loss.source_objects = 4.0  # 2 source frames holding 4 objects
    h, w = det.output_hw
    out = {"heatmap": torch.zeros(2, 1, h, w), "size": torch.zeros(2, 2, h, w), "offset": torch.zeros(2, 2, h, w)}
    loss(out, torch.zeros(2, 1, 16, 16))
    assert float(loss.last_mask_rate) == 8.0
    assert float(loss.last_box_ratio) == pytest.approx(16 / 4.0)
