"""One set of parity rules for every converted model: ONNX vs PyTorch, TensorRT engine vs ONNX Runtime.

A conversion is accepted only when, on real frames, the outputs agree within
the tolerance of its precision (max |diff| over every float output), the top-1
agrees on at least 99.5% of frames and, for a detector, each frame's best
detection has a reference candidate of (nearly) the same score with its class
and a box within ``box_px`` pixels (candidates come best first, so near-ties
may swap places without changing the result). numpy only: the robot checks
its engines without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_TOP1_AGREEMENT = 0.995


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float  # scores/probabilities and every other float output
    box_px: float  # detector: distance between the best boxes, network-input pixels


# fp32: ONNX vs PyTorch is bit-close; a TensorRT fp32 engine may use TF32 kernels on Ampere and newer.
# fp16: 11 bits of mantissa; scores near 1 and boxes at 100+ px move by a few units of the last place.
TOLERANCES = {"onnx": Tolerance(1e-3, 0.05), "fp32": Tolerance(5e-3, 0.5), "fp16": Tolerance(3e-2, 2.0)}


@dataclass(frozen=True)
class ParityReport:
    frames: int
    max_abs_diff: float
    top1_agreement: float  # detection: the best detection's class and box agree
    frames_from: str
    max_box_diff: float | None = None  # detection: pixels between each frame's best boxes

    def failures(self, tolerance: Tolerance) -> list[str]:
        """Why the conversion must be refused (empty: accepted)."""
        why = []
        if not self.max_abs_diff <= tolerance.max_abs_diff:  # NaN fails too
            why.append(f"max |diff| {self.max_abs_diff:.3g} > {tolerance.max_abs_diff}")
        if not self.top1_agreement >= MIN_TOP1_AGREEMENT:
            why.append(f"top-1 agreement {self.top1_agreement:.4f} < {MIN_TOP1_AGREEMENT}")
        return why

    def summary(self) -> str:
        boxes = "" if self.max_box_diff is None else f", best boxes within {self.max_box_diff:.2e} px"
        return (f"{self.frames} frames ({self.frames_from}): max |diff| {self.max_abs_diff:.2e}, "
                f"top-1 agreement {100 * self.top1_agreement:.2f}%{boxes}")

    def to_dict(self) -> dict:
        return {"frames": self.frames, "frames_from": self.frames_from, "max_abs_diff": self.max_abs_diff,
                "top1_agreement": self.top1_agreement, "max_box_diff": self.max_box_diff}


def compare(ref: list[np.ndarray], got: list[np.ndarray], task: str, origin: str,
            box_tolerance: float) -> ParityReport:
    """Reference and converted outputs, in the graph's output order (see ModelInfo.output_names)."""
    ref = [np.asarray(r) for r in ref]
    got = [np.asarray(g) for g in got]
    try:
        rule = _RULES[task]
    except KeyError:
        raise ValueError(f"no parity rule for task {task!r}; known: {', '.join(_RULES)}") from None
    return rule(ref, got, len(ref[0]), origin, box_tolerance)


def _max_diff(r: np.ndarray, g: np.ndarray) -> float:
    if r.shape != g.shape:
        return float("inf")
    return float(np.abs(r.astype(np.float64) - g.astype(np.float64)).max()) if r.size else 0.0


def _classification(ref: list[np.ndarray], got: list[np.ndarray], n: int, origin: str,
                    box_tolerance: float) -> ParityReport:
    """Outputs scores[, domain]: every value within the tolerance, and the top-1 class agrees."""
    diff = max(_max_diff(r, g) for r, g in zip(ref, got))
    agree = float((ref[0].argmax(1) == got[0].argmax(1)).mean()) if n else 1.0
    return ParityReport(n, diff, agree, origin)


def _detection(ref: list[np.ndarray], got: list[np.ndarray], n: int, origin: str, box_tolerance: float,
               score_tolerance: float | None = None) -> ParityReport:
    """Outputs boxes, scores, classes[, domain]. Each frame's best converted detection must have a
    reference candidate of (nearly) the same score with its class and box: ties may come in another order."""
    (r_boxes, r_scores, r_classes, *r_rest), (g_boxes, g_scores, g_classes, *g_rest) = ref, got
    diff = max([_max_diff(r_scores, g_scores)] + [_max_diff(r, g) for r, g in zip(r_rest, g_rest)])
    score_tolerance = max(1e-3, diff) if score_tolerance is None else score_tolerance
    agree, box_diff = 0, 0.0
    for i in range(n):
        tied = np.abs(r_scores[i] - g_scores[i, 0]) <= score_tolerance
        same = tied & (r_classes[i] == g_classes[i, 0])
        dist = np.abs(r_boxes[i][same] - g_boxes[i, 0]).max(axis=1) if same.any() else np.array([np.inf])
        box_diff = max(box_diff, float(dist.min()))
        agree += bool(dist.min() <= box_tolerance)
    return ParityReport(n, diff, agree / max(n, 1), origin, box_diff)


# per task (keys of dann_ros.data.tasks.TASK_SPECS): how a conversion's outputs are compared
_RULES = {"classification": _classification, "detection": _detection}


def parity_frames_path(onnx_path: str | Path) -> Path:
    """``model.parity.npz`` beside ``model.onnx``: the real frames the export was checked on, kept so
    that an engine built later on the robot is checked on the same frames (dann_ros.runtime.tensorrt_backend)."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + ".parity.npz")


def save_parity_frames(onnx_path: Path, frames: np.ndarray, origin: str, limit: int = 32) -> Path:
    path = parity_frames_path(onnx_path)
    frames = np.asarray(frames)[:limit]
    if frames.dtype != np.uint8 and np.array_equal(frames, np.round(frames)) and frames.min() >= 0 \
            and frames.max() <= 255:
        frames = frames.astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, frames=frames, origin=np.array(origin))
    tmp.replace(path)
    return path


__all__ = ["MIN_TOP1_AGREEMENT", "ParityReport", "TOLERANCES", "Tolerance", "compare", "parity_frames_path",
           "save_parity_frames"]
