"""The training task interface (the train layer's entries of the task registry implement it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dann_ros.data.frame_store import DEFAULT_EVAL_MEMORY_MB
from dann_ros.data.tasks import TaskSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from dann_ros.data.frame_store import ProgressFn, Store
    from dann_ros.train.config import TrainConfig


class TrainTask:
    """The interface (see classification.py and detection.py)."""

    spec: TaskSpec
    label: str | None = None  # the per-record column batches carry as ``labels`` (class ids)
    ragged: tuple[str, ...] = ()  # per-record ragged columns batches carry (a detector's boxes)

    def source_store(self, cfg: TrainConfig, progress: ProgressFn | None) -> tuple[Store, tuple[str, ...]]:
        """Every labelled source record (before the validation split) and the class names."""
        raise NotImplementedError

    def eval_target_store(self, cfg: TrainConfig, classes: tuple[str, ...]) -> Store:
        """``cfg.eval_target``'s labelled real frames: the bag's frame store with its labels as columns."""
        raise NotImplementedError

    def targets(self, model: nn.Module, source: dict[str, Any], device: torch.device) -> Any:
        """What ``model.task_loss`` takes for a source batch (``streaming.to_device``'s dict)."""
        raise NotImplementedError

    def object_count(self, targets: Any) -> float:
        """Objects in a batch's ``targets``: the least divisor of a detector's self-training loss on target
        (DetectionPseudoLabelLoss). Tasks without boxes: 1 (their self-training divides by its batch)."""
        return 1.0

    def class_counts(self, targets: Any) -> torch.Tensor | None:
        """Objects per class in a batch's ``targets`` (detection's class-wise pseudo-label thresholds); None
        where the task has no boxes."""
        return None

    def evaluate(self, model: nn.Module, source_val: Store, eval_target: Store | None,
                 target_frames: Sequence[Store], device: torch.device, classes: tuple[str, ...],
                 budget_mb: float = DEFAULT_EVAL_MEMORY_MB) -> dict[str, float]:
        """One evaluation: source-val metric, eval-target metric (when labelled frames are given) and
        label-free scores of the unlabelled ``target_frames`` where the task has them; every pass in
        batches of at most ``budget_mb`` (``train.eval_memory_mb``)."""
        raise NotImplementedError
