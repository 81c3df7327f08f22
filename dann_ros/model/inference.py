"""Running a task model over in-memory uint8 frames in eval mode: what training's evaluation,
the reports and the checkpoint selection all read (one place, below train/ and evaluation/)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dann_ros.model.detection_metrics import DetectionReport, evaluate_detections


def _batches(images: np.ndarray | torch.Tensor, device: torch.device, batch_size: int):
    data = torch.as_tensor(images)
    for i in range(0, len(data), batch_size):
        yield data[i:i + batch_size].to(device).float()


class _eval_mode:
    def __init__(self, model: nn.Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.train(self.was)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
            batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probabilities, features) for uint8 (N, C, H, W) images, in eval mode."""
    probs, feats = [], []
    with _eval_mode(model):
        for x in _batches(images, device, batch_size):
            f, logits = model.forward_train(x)
            probs.append(torch.softmax(logits.float(), 1).cpu())
            feats.append(f.float().cpu())
    if not probs:
        return torch.empty(0), torch.empty(0)
    return torch.cat(probs), torch.cat(feats)


@torch.no_grad()
def pooled_features(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
                    batch_size: int = 512) -> torch.Tensor:
    """The features the domain discriminator sees, per image (a feature map averaged over
    locations): the proxy A-distance input."""
    feats = []
    with _eval_mode(model):
        for x in _batches(images, device, batch_size):
            f, _ = model.forward_train(x)
            feats.append((f.mean((2, 3)) if f.dim() == 4 else f).float().cpu())
    return torch.cat(feats) if feats else torch.empty(0)


@torch.no_grad()
def predict_detections(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
                       batch_size: int = 128) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A detector's decoded (boxes, scores, class ids) per image, in network-input pixels."""
    boxes, scores, ids = [], [], []
    with _eval_mode(model):
        for x in _batches(images, device, batch_size):
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
                                    dropout: float, generator: torch.Generator,
                                    batch_size: int = 128) -> tuple[list[Detections], list[Detections]]:
    """Per image, a detector's decoded (boxes, scores, class ids) twice from one backbone pass: as
    deployed, and with ``dropout`` of the feature map the heads read zeroed (inverted dropout, masks
    from ``generator`` on ``device``: reproducible). The two passes of the box stability score."""
    if not 0.0 < dropout < 1.0:
        raise ValueError(f"dropout must be in (0, 1), got {dropout}")
    clean: list[Detections] = []
    perturbed: list[Detections] = []
    with _eval_mode(model):
        for x in _batches(images, device, batch_size):
            f = model.features(x)
            keep = torch.rand(f.shape, generator=generator, device=f.device) >= dropout
            clean += _per_image(model.decode(model.heads(f)))
            perturbed += _per_image(model.decode(model.heads(f * keep.to(f.dtype) / (1.0 - dropout))))
    return clean, perturbed


def detection_report(model: nn.Module, data, device: torch.device, classes: tuple[str, ...],
                     batch_size: int = 128) -> DetectionReport:
    """COCO-style mAP of the detector on prepared frames (``data``: train.datasets.LabelledBoxes,
    i.e. images, boxes, classes), in network-input pixels: training's evaluation at eval steps."""
    boxes, scores, ids = predict_detections(model, data.images, device, batch_size)
    return evaluate_detections(boxes, scores, ids, data.boxes, data.classes, len(classes), class_names=classes)
