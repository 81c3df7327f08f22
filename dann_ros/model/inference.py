"""Running a task model over in-memory uint8 frames in eval mode: what training's evaluation,
the reports and the checkpoint selection all read (one place, below train/ and evaluation/).

Every pass is batched by bytes, not by a count of frames: :func:`eval_batch_size` divides a memory
budget (``train.eval_memory_mb``) by what one frame costs this model at this input size, measured
once on one frame (:func:`frame_bytes`). Outputs are kept compact (probabilities, pooled features,
a detector's top-K boxes): never the input batches or the activations.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from dann_ros.data.frame_store import DEFAULT_EVAL_MEMORY_MB, frames_per_batch
from dann_ros.model.adaptation.instance import gather_centres

_MEASURED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()


def _tensor_bytes(value) -> int:
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


@torch.no_grad()
def frame_bytes(model: nn.Module, record_shape: tuple[int, ...], forward: Callable | None = None) -> int:
    """What one frame costs a no-grad pass of ``forward`` (default: ``model.forward_train`` where the
    model has it, else the model): its uint8 record, its float32 copy, and the output of every layer,
    measured with forward hooks on one frame. A sum over the layers: above the pass's real peak (each
    layer's input is freed as the next runs), so budgets hold. Measured once per model and shape."""
    forward = forward or getattr(model, "forward_train", model)
    key = (tuple(int(s) for s in record_shape), getattr(forward, "__name__", type(forward).__name__))
    cache = _MEASURED.setdefault(model, {})
    if key not in cache:
        sizes: list[int] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(_tensor_bytes(out)))
                 for m in model.modules() if next(m.children(), None) is None]
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        try:
            with eval_mode(model):
                forward(torch.zeros((1, *key[0]), device=device))
        finally:
            for h in hooks:
                h.remove()
        cache[key] = 5 * math.prod(key[0]) + sum(sizes)
    return cache[key]


def eval_batch_size(model: nn.Module, record_shape: tuple[int, ...], budget_mb: float = DEFAULT_EVAL_MEMORY_MB,
                    most: int = 512, passes: float = 1.0, forward: Callable | None = None) -> int:
    """Frames per batch of an evaluation pass: ``budget_mb`` over :func:`frame_bytes` (times ``passes``
    for a pass that runs part of the network twice), at least 1, at most ``most``."""
    return frames_per_batch(int(passes * frame_bytes(model, record_shape, forward)), budget_mb, most)


def _batches(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device, most: int,
             budget_mb: float, passes: float = 1.0, forward: Callable | None = None):
    data = torch.as_tensor(images)
    if not len(data):
        return
    size = eval_batch_size(model, tuple(data.shape[1:]), budget_mb, most, passes, forward)
    for i in range(0, len(data), size):
        yield data[i:i + size].to(device).float()


class eval_mode:
    """``with eval_mode(model):`` the model in eval mode, then back in the mode it was in."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.train(self.was)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
            batch_size: int = 512, budget_mb: float = DEFAULT_EVAL_MEMORY_MB,
            features: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probabilities, features) for uint8 (N, C, H, W) images, in eval mode, at most
    ``batch_size`` frames and ``budget_mb`` a batch. ``features=False``: probabilities only (the
    features stay empty: a flattened feature map is not small)."""
    probs, feats = [], []
    with eval_mode(model):
        for x in _batches(model, images, device, batch_size, budget_mb):
            f, logits = model.forward_train(x)
            probs.append(torch.softmax(logits.float(), 1).cpu())
            if features:
                feats.append(f.float().cpu())
    if not probs:
        return torch.empty(0), torch.empty(0)
    return torch.cat(probs), torch.cat(feats) if feats else torch.empty(0)


@torch.no_grad()
def pooled_features(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
                    batch_size: int = 512, budget_mb: float = DEFAULT_EVAL_MEMORY_MB) -> torch.Tensor:
    """The features the domain discriminator sees, per image (a feature map averaged over
    locations): the proxy A-distance input."""
    feats = []
    with eval_mode(model):
        for x in _batches(model, images, device, batch_size, budget_mb):
            f, _ = model.forward_train(x)
            feats.append((f.mean((2, 3)) if f.dim() == 4 else f).float().cpu())
    return torch.cat(feats) if feats else torch.empty(0)


@torch.no_grad()
def pooled_and_object_features(model: nn.Module, images: np.ndarray | torch.Tensor, boxes: list[np.ndarray],
                               device: torch.device, batch_size: int = 512, budget_mb: float = DEFAULT_EVAL_MEMORY_MB,
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A detector's :func:`pooled_features` (N, C) and, from the same pass, its feature vector at each
    labelled object's centre cell (objects, C): what its heads read of the object. ``boxes[i]`` (K, 4)
    x1, y1, x2, y2 in network-input pixels of ``images[i]``; the cells are the ones training puts the
    object's peak on (the detector's ``encode_targets``). A detector's pooled features mostly describe
    the background scene, so their proxy A-distance stays near 2 whatever happens to the objects; the
    object features are the input of the PAD at the objects."""
    if len(boxes) != len(images):
        raise ValueError(f"{len(images)} images but {len(boxes)} box arrays")
    pooled, objects, start = [], [], 0
    with eval_mode(model):
        for x in _batches(model, images, device, batch_size, budget_mb):
            part = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes[start:start + len(x)]]
            start += len(x)
            f = model.features(x)  # forward_train's map, without the heads
            t = model.encode_targets(part, [np.zeros(len(b), np.int64) for b in part])
            pooled.append(f.mean((2, 3)).float().cpu())
            at = gather_centres(f, t["indices"].to(f.device))  # N, max objects, C
            objects.append(at[t["mask"].to(f.device) > 0].float().cpu())  # objects, C
    if not pooled:
        return torch.empty(0), torch.empty(0)
    return torch.cat(pooled), torch.cat(objects)


# a detector's passes also decode (peak picking over the heatmap), or run the heads twice (stability)
DETECTION_PASSES = 2.0


@torch.no_grad()
def predict_detections(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
                       batch_size: int = 128, budget_mb: float = DEFAULT_EVAL_MEMORY_MB,
                       ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A detector's decoded (boxes, scores, class ids) per image, in network-input pixels."""
    boxes, scores, ids = [], [], []
    with eval_mode(model):
        for x in _batches(model, images, device, batch_size, budget_mb, DETECTION_PASSES):
            b, s, c = model(x)
            boxes += list(b.float().cpu().numpy())
            scores += list(s.float().cpu().numpy())
            ids += list(c.cpu().numpy())
    return boxes, scores, ids


Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # one image's boxes (K, 4), scores (K,), class ids (K,)


def _per_image(decoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> list[Detections]:
    b, s, c = decoded
    return list(zip(b.float().cpu().numpy(), s.float().cpu().numpy(), c.cpu().numpy()))


@torch.no_grad()
def predict_detections_with_dropout(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
                                    dropout: float, generator: torch.Generator, batch_size: int = 128,
                                    budget_mb: float = DEFAULT_EVAL_MEMORY_MB,
                                    ) -> tuple[list[Detections], list[Detections]]:
    """Per image, a detector's decoded (boxes, scores, class ids) twice from one backbone pass: as
    deployed, and with ``dropout`` of the feature map the heads read zeroed (inverted dropout, masks
    from ``generator`` on ``device``: reproducible; on the CPU one stream drawn frame after frame, so
    the same masks whatever the batch size). The two passes of the box stability score."""
    if not 0.0 < dropout < 1.0:
        raise ValueError(f"dropout must be in (0, 1), got {dropout}")
    clean: list[Detections] = []
    perturbed: list[Detections] = []
    with eval_mode(model):
        for x in _batches(model, images, device, batch_size, budget_mb, DETECTION_PASSES):
            f = model.features(x)
            keep = torch.rand(f.shape, generator=generator, device=f.device) >= dropout
            clean += _per_image(model.decode(model.heads(f)))
            perturbed += _per_image(model.decode(model.heads(f * keep.to(f.dtype) / (1.0 - dropout))))
    return clean, perturbed
