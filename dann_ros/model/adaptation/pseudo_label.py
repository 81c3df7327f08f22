"""Pseudo-label self-training on target with a mean teacher (French et al., "Self-ensembling
for visual domain adaptation", ICLR 2018; thresholded as in FixMatch; for detection as in
Unbiased Teacher, Liu et al., ICLR 2021; masked as in MIC, Hoyer et al., CVPR 2023).

A teacher, the exponential moving average of the model's weights, labels each target
batch; the model is trained on the labels the teacher is confident about (score >=
``threshold``), the others are left out. The average over many steps is steadier than
the model itself, so its confident labels are mostly right where the model's own
(entropy minimisation) would reinforce its mistakes. Off until ``active`` is set (the
trainer: self-training after adaptation has aligned the domains); the teacher tracks
the model from the first step either way.

With ``mask_ratio`` > 0 the student also learns the same labels from a second view of the
target batch with that share of ``mask_block``-pixel blocks hidden (MIC's masked image
consistency). The teacher labels the whole frame, so the student must recover an object
from part of it and from its surroundings: the cue that carries a faint or half-occluded
real object, which a teacher that only sees whole objects never confirms. ``view`` (the
trainer's camera model, ``adaptation.self_training.camera``) also changes that second view's
exposure, blur and noise: Unbiased Teacher's strong view, seen by this loss alone, never by
the domain discriminator. Nor by BatchNorm's running statistics: the student normalises that view
with its own batch statistics but leaves running_mean/var to the clean frames
(:func:`running_stats_frozen`), which ``update_teacher`` copies into the teacher that labels them.

The teacher's weights are state (``state_dict``) so a resumed run continues exactly;
they take no gradient and are not in the optimizer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.detector import centernet_loss

SOFT_BACKGROUND_MAX = 0.99  # a teacher score never becomes a positive through the soft background term


@contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """A train-mode pass through ``model`` whose BatchNorm layers normalise with the batch's statistics, as
    in any training pass, without updating running_mean, running_var or num_batches_tracked."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False  # in train mode: batch statistics, the running ones left out of the call
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


class MeanTeacher(nn.Module):
    """The EMA teacher and the on/off switch both task forms share."""

    default_threshold = 0.95

    def __init__(self, model: nn.Module, threshold: float | None = None, ema_decay: float = 0.99,
                 mask_ratio: float = 0.0, mask_block: int = 8,
                 view: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None) -> None:
        super().__init__()
        threshold = self.default_threshold if threshold is None else threshold
        if not 0.0 < threshold <= 1.0 or not 0.0 <= ema_decay < 1.0:
            raise ValueError("pseudo-label threshold must be in (0, 1] and ema_decay in [0, 1)")
        if not 0.0 <= mask_ratio < 1.0 or mask_block < 1:
            raise ValueError("pseudo-label mask_ratio must be in [0, 1) and mask_block >= 1")
        self.threshold = threshold
        self.ema_decay = ema_decay
        self.mask_ratio, self.mask_block, self.view = mask_ratio, mask_block, view
        self.generator: torch.Generator | None = None  # the second view's draws; the trainer's: per (seed, step, rank)
        self._student = [model]  # a list: not a submodule (its weights are the model's, saved there)
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self.active = False
        self.last_mask_rate = torch.zeros(())  # logged: the share (or count per image) of confident labels
        # detection: the step's pseudo-boxes per source object (the trainer's runaway alarm); None elsewhere
        self.last_box_ratio: torch.Tensor | None = None

    @property
    def student(self) -> nn.Module:
        return self._student[0]

    def train(self, mode: bool = True) -> MeanTeacher:
        super().train(mode)
        self.teacher.eval()  # no dropout in the labels
        return self

    @torch.no_grad()
    def update_teacher(self) -> None:
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.lerp_(s.detach(), 1.0 - self.ema_decay)
        for t, s in zip(self.teacher.buffers(), self.student.buffers()):
            t.copy_(s)

    @property
    def has_second_view(self) -> bool:
        return self.mask_ratio > 0 or self.view is not None

    def second_view(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The student's other view of the target batch the teacher labelled whole: ``view``, with each
        ``mask_block`` square hidden with probability ``mask_ratio`` and filled with the normalisation
        mean (zero input to the first layer). Both are drawn from ``generator`` (a CPU one; None: torch's
        global one). The trainer passes one seeded by (seed, step, rank): each DDP rank hides its own
        blocks and draws its own camera, and a resumed run draws the same."""
        b, _, h, w = images.shape
        k = self.mask_block
        keep = torch.rand(b, 1, -(-h // k), -(-w // k), generator=generator).to(images.device) >= self.mask_ratio
        keep = keep.repeat_interleave(k, 2).repeat_interleave(k, 3)[:, :, :h, :w]
        images = self.view(images, generator) if self.view is not None else images
        return torch.where(keep, images, self.student.normalize.mean.to(images.dtype))


class PseudoLabelLoss(MeanTeacher):
    """Classification: cross-entropy on the teacher's confident class labels, summed and divided
    by the batch size (FixMatch's normalisation: few confident samples give a small loss, not
    a noisy large one)."""

    def forward(self, logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update_teacher()
        if not self.active:
            return logits.sum() * 0.0
        with torch.no_grad():
            probs = F.softmax(self.teacher(images).float(), dim=1)
            confidence, labels = probs.max(1)
            mask = (confidence >= self.threshold).float()
        self.last_mask_rate = mask.mean()

        def loss_on(out: torch.Tensor) -> torch.Tensor:
            return (F.cross_entropy(out.float(), labels, reduction="none") * mask).sum() / logits.shape[0]

        loss = loss_on(logits)
        if not self.has_second_view:
            return loss
        with running_stats_frozen(self.student):
            return loss + loss_on(self.student(self.second_view(images, self.generator)))


class DetectionPseudoLabelLoss(MeanTeacher):
    """CenterNet: the teacher's decoded boxes scoring >= ``threshold`` become the target frame's
    heatmap, size and offset targets, and the student takes the same loss as on source.

    The focal loss treats every cell that is not a labelled centre as background, so the
    objects the teacher is unsure about would be taught as background, the usual failure of
    hard-thresholded detection self-training. Here the background term of each cell is
    weighted by the teacher's own score instead (the target heatmap is at least the teacher's
    sigmoid there, and CenterNet weights negatives by (1 - target)^4): what the teacher half
    believes in is neither confirmed nor suppressed. ``last_mask_rate`` is pseudo-boxes per frame.

    The focal loss sums over cells and divides by the object count. Here that count is the pseudo-boxes,
    at least ``source_objects`` (the trainer sets it each step: the objects of the step's source batch, as
    large as the target batch), so a target cell never weighs more than a source cell. Divided by the
    pseudo-boxes alone, a teacher that passes no box gave the background term of the whole target batch
    divided by 1: the student was taught every target frame as background with the weight of a whole
    source batch's objects (on the demo's dev scenes, self-training from step 450 of 600 took mAP@0.5
    from 34% to 22%; with this divisor 34%).

    CenterNet scores are lower than a classifier's softmax (a peak rarely passes 0.9), hence
    the lower default threshold.
    """

    default_threshold = 0.5
    source_objects = 1.0  # the focal loss's least divisor (the class docstring)

    def __init__(self, model: nn.Module, threshold: float | None = None, ema_decay: float = 0.99,
                 mask_ratio: float = 0.0, mask_block: int = 8,
                 view: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
                 class_portion: float = 0.0, threshold_floor: float = 0.3) -> None:
        super().__init__(model, threshold, ema_decay, mask_ratio, mask_block, view)
        if class_portion < 0 or (class_portion > 0 and not 0.0 < threshold_floor <= self.threshold):
            raise ValueError("pseudo-label class_portion must be >= 0 and threshold_floor in (0, threshold]")
        self.class_portion, self.threshold_floor = class_portion, threshold_floor
        # each class's threshold (state: a resumed run goes on with them); all ``threshold`` without class_portion
        self.register_buffer("class_threshold", torch.full((model.num_classes,), self.threshold))
        self.source_classes: torch.Tensor | None = None  # the step's source objects per class (the trainer)

    CLASS_STEP = 0.005  # threshold change per step for a class one source object per class above its portion

    def _balance(self, scores: torch.Tensor, classes: torch.Tensor, passed: torch.Tensor) -> None:
        """Class-balanced self-training (CBST, Zou et al., ECCV 2018), online: each class's threshold moves
        so the teacher labels ``class_portion`` of the step's source objects of that class per target batch
        of the same size, never below ``threshold_floor``. With one fixed threshold the classes the renders
        teach best take most pseudo-boxes, many wrong, while the classes real frames score lower get almost
        none (the demo's dev scenes at 0.45: 23 boxes of "5" at 70% precision, 5 of "4" at 100%, 1 of "1").
        Neutral on the demo's scenes over five seeds, so off there (docs/results.md)."""
        if self.source_classes is None:
            return
        k = self.class_threshold.numel()
        labelled = torch.bincount(classes[passed].flatten(), minlength=k).float().to(self.class_threshold.device)
        wanted = self.class_portion * self.source_classes.float().to(self.class_threshold.device)
        per_class = max(float(self.source_classes.sum()) / k, 1.0)
        step = self.CLASS_STEP * (labelled - wanted) / per_class
        self.class_threshold.add_(step).clamp_(self.threshold_floor, 1.0)

    def forward(self, outputs: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update_teacher()
        if not self.active:
            return outputs["heatmap"].sum() * 0.0
        student = self.student
        with torch.no_grad():
            features = self.teacher.features(images)
            # the heads in float32 whatever the autocast: bf16 rounds near-equal neighbouring logits to a tie,
            # both pass the 3x3 peak test and the one object gets two pseudo-boxes
            with torch.autocast(images.device.type, enabled=False):
                heads = self.teacher.heads(features.float())
            boxes, scores, classes = self.teacher.decode(heads)
            keep = scores >= self.class_threshold.to(scores.device)[classes]
            if self.class_portion > 0 and self.training:
                self._balance(scores, classes, keep)
            boxes, keep, classes = boxes.float().cpu().numpy(), keep.cpu().numpy(), classes.cpu().numpy()
            targets = student.encode_targets([b[k] for b, k in zip(boxes, keep)],
                                             [c[k] for c, k in zip(classes, keep)])
            soft = torch.sigmoid(heads["heatmap"].float()).clamp(max=SOFT_BACKGROUND_MAX)
            targets["heatmap"] = torch.maximum(targets["heatmap"].to(soft.device), soft)
        self.last_mask_rate = torch.tensor(float(keep.sum()) / max(len(keep), 1))
        self.last_box_ratio = torch.tensor(float(keep.sum()) / max(self.source_objects, 1.0))

        def loss_on(out: dict[str, torch.Tensor]) -> torch.Tensor:
            return centernet_loss(out, targets, student.size_weight, student.offset_weight,
                                  min_objects=self.source_objects)[0]

        loss = loss_on(outputs)
        if not self.has_second_view:
            return loss
        with running_stats_frozen(student):
            return loss + loss_on(student.forward_train(self.second_view(images, self.generator))[1])
