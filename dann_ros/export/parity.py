"""One set of parity rules for every converted model: ONNX vs PyTorch, TensorRT engine vs ONNX Runtime.

A conversion is accepted only when, on real frames, the outputs agree within
the tolerance of its precision (max |diff| over every float output) and the
top-1 agrees on at least 99.5% of frames. A detector's candidates are matched
by identity, not by position in the best-first list (near-tied scores may come
in another order from another runtime without changing the result): every
candidate scoring at least ``SCORE_FLOOR``, in either output, must have one of
its class in the other output with a box within ``box_px`` pixels, and the
matched scores count in the max |diff|. numpy only: the robot checks its
engines without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dann_ros.atomic_io import atomic_open
from dann_ros.data.tasks import TaskRegistry

MIN_TOP1_AGREEMENT = 0.995
# ONNX metadata key: a detector's peak_px (see compare), written at export so that an engine check on the
# robot, which does not know the model's stride, tolerates the same tied peak flips
PEAK_KEY = "dann_ros.parity_peak_px"
# detection: candidates below this score are not compared (non-peaks score 0 and come in any order);
# far below any deployment threshold (the Predictor's default is 0.3)
SCORE_FLOOR = 0.05


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float  # scores/probabilities and every other float output
    box_px: float  # detector: distance between matched boxes (max over coordinates), network-input pixels


# fp32: ONNX vs PyTorch is bit-close; a TensorRT fp32 engine may use TF32 kernels on Ampere and newer.
# fp16: 11 bits of mantissa; scores near 1 and boxes at 100+ px move by a few units of the last place.
TOLERANCES = {"onnx": Tolerance(1e-3, 0.05), "fp32": Tolerance(5e-3, 0.5), "fp16": Tolerance(3e-2, 2.0)}


@dataclass(frozen=True)
class ParityReport:
    frames: int
    max_abs_diff: float
    top1_agreement: float  # detection: the best detection's class and box agree
    frames_from: str
    max_box_diff: float | None = None  # detection: pixels between matched boxes (each candidate >= SCORE_FLOOR)
    class_mismatches: int = 0  # detection: candidates whose box is found only with another class
    worst: tuple[tuple[str, str], ...] = ()  # detection: ("diff" | "box" | "class", where it happened)
    peak_ties: int = 0  # detection: extra peaks on one side only, tied with a neighbour (tolerated)

    def failures(self, tolerance: Tolerance) -> list[str]:
        """Why the conversion must be refused (empty: accepted); a detector's say which candidate differs."""
        where = dict(self.worst)

        def at(key: str) -> str:
            return f" ({where[key]})" if key in where else ""

        why = []
        if not self.max_abs_diff <= tolerance.max_abs_diff:  # NaN fails too
            why.append(f"max |diff| {self.max_abs_diff:.3g} > {tolerance.max_abs_diff}{at('diff')}")
        if self.max_box_diff is not None and not self.max_box_diff <= tolerance.box_px:
            why.append(f"box {self.max_box_diff:.3g} px > {tolerance.box_px} px{at('box')}")
        if self.class_mismatches:
            why.append(f"class differs for {self.class_mismatches} candidate(s){at('class')}")
        if not self.top1_agreement >= MIN_TOP1_AGREEMENT:
            why.append(f"top-1 agreement {self.top1_agreement:.4f} < {MIN_TOP1_AGREEMENT}")
        return why

    def summary(self) -> str:
        boxes = "" if self.max_box_diff is None else f", matched boxes within {self.max_box_diff:.2e} px"
        return (f"{self.frames} frames ({self.frames_from}): max |diff| {self.max_abs_diff:.2e}, "
                f"top-1 agreement {100 * self.top1_agreement:.2f}%{boxes}")

    def to_dict(self) -> dict:
        return {"frames": self.frames, "frames_from": self.frames_from, "max_abs_diff": self.max_abs_diff,
                "top1_agreement": self.top1_agreement, "max_box_diff": self.max_box_diff,
                "class_mismatches": self.class_mismatches, "peak_ties": self.peak_ties}


def compare(ref: list[np.ndarray], got: list[np.ndarray], task: str, origin: str,
            box_tolerance: float, peak_px: float = 0.0) -> ParityReport:
    """Reference and converted outputs, in the graph's output order (see ModelInfo.output_names).
    ``peak_px`` (detection, where the caller knows the output stride: 2 strides): how far apart the
    centres of two tied candidates may be when each output picked a different cell of one peak."""
    ref = [np.asarray(r) for r in ref]
    got = [np.asarray(g) for g in got]
    return TASKS[task](ref, got, len(ref[0]), origin, box_tolerance, peak_px=peak_px)


def outputs_in_batches(run: Callable[[np.ndarray], Sequence[np.ndarray]], frames: np.ndarray,
                       batch_size: int) -> list[np.ndarray]:
    """``run``'s outputs over ``frames``, ``batch_size`` frames at a time (each batch made float32 only
    then), joined per output: what a parity check compares, without the frames ever being one float
    array or one batch of activations larger than its budget (a detector's outputs are its top-K, small)."""
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(frames), max(1, batch_size)):
        outs = run(np.ascontiguousarray(frames[start:start + batch_size], dtype=np.float32))
        parts.append([np.asarray(o) for o in outs])
    return [np.concatenate(column) for column in zip(*parts)]


def _max_diff(r: np.ndarray, g: np.ndarray) -> float:
    if r.shape != g.shape:
        return float("inf")
    return float(np.abs(r.astype(np.float64) - g.astype(np.float64)).max()) if r.size else 0.0


def _classification(ref: list[np.ndarray], got: list[np.ndarray], n: int, origin: str,
                    box_tolerance: float, peak_px: float = 0.0) -> ParityReport:
    """Outputs scores[, domain]: every value within the tolerance, and the top-1 class agrees (no boxes:
    ``box_tolerance`` and ``peak_px`` do not apply)."""
    diff = max(_max_diff(r, g) for r, g in zip(ref, got))
    agree = float((ref[0].argmax(1) == got[0].argmax(1)).mean()) if n else 1.0
    return ParityReport(n, diff, agree, origin)


def _detection(ref: list[np.ndarray], got: list[np.ndarray], n: int, origin: str, box_tolerance: float,
               score_floor: float = SCORE_FLOOR, peak_px: float = 0.0) -> ParityReport:
    """Outputs boxes, scores, classes[, domain][, feature_shift]. Candidates are matched by identity (class,
    nearest box), both ways, so near-ties that another runtime sorts differently still agree.

    What stays unmatched is looked at across the two outputs of the frame: a candidate whose box the other
    output has, unmatched, only with another class is a changed class; with an unmatched candidate of its
    class there it is a moved box, unless the two tie in score with centres within ``peak_px``: peak
    picking (3x3 max) keeps one of two tied neighbour cells, and tiny rounding (fp16) may flip which.
    Without one it is an extra peak, let through by such a flip in a chain of tied cells: tolerated when
    it scores no higher than the nearest candidate of its class there, within 2 ``peak_px``, else it fails
    as a box. Tolerated flips are counted in ``peak_ties``. A candidate at the end of a full list may be
    cut from the other by a near-tie: excused, not compared."""
    (r_boxes, r_scores, r_classes, *r_rest), (g_boxes, g_scores, g_classes, *g_rest) = ref, got
    frames = [(_Frame(r_boxes[i], r_scores[i], r_classes[i]), _Frame(g_boxes[i], g_scores[i], g_classes[i]))
              for i in range(n)]
    matched = [{side: _match(mine, other, box_tolerance, score_floor)
                for side, mine, other in (("reference", r, g), ("converted", g, r))} for r, g in frames]
    score_diff = _largest([d for m in matched for side in m.values() for _, (ok, _, d, _) in side if ok])
    excuse = max(1e-3, score_diff) if score_diff == score_diff else 1e-3
    worst: dict[str, tuple[float, str]] = {}
    box_diffs, class_mismatches, missed_best, peak_ties = [], {"reference": 0, "converted": 0}, set(), 0
    for i, ((r, g), m) in enumerate(zip(frames, matched)):
        views = {"reference": (r, g), "converted": (g, r)}
        lost = {}  # unmatched candidates, less those a full list may have cut
        for side, (mine, other) in views.items():
            cut = _cut(other, excuse)
            lost[side] = [q for q, (ok, *_) in m[side] if not ok and not mine.scores[q] <= cut]
        for side, (mine, other) in views.items():
            other_lost = lost["converted" if side == "reference" else "reference"]
            for q, (ok, box_d, score_d, j) in m[side]:
                what = f"frame {i}: {side} {mine.describe(q)}"
                if ok:
                    box_diffs.append(box_d)
                    _keep(worst, "box", box_d, f"{what}, {other.describe(j)} in the other output")
                    _keep(worst, "diff", score_d, f"{what} vs score {other.scores[j]:.4f}")
                    continue
                if q not in lost[side]:
                    continue
                if other_lost:
                    near = np.abs(other.boxes[other_lost] - mine.boxes[q]).max(axis=1)
                    k = other_lost[int(near.argmin())]
                    if near.min() <= box_tolerance and other.classes[k] != mine.classes[q]:
                        class_mismatches[side] += 1
                        _keep(worst, "class", 1.0, f"{what} is class {other.classes[k]} in the other output")
                        missed_best.update([i] if side == "reference" and q == mine.best else [])
                        continue
                moved = [o for o in other_lost if other.classes[o] == mine.classes[q]]
                if moved:  # its counterpart: the nearest unmatched candidate of its class there
                    j = moved[int(np.abs(other.boxes[moved] - mine.boxes[q]).max(axis=1).argmin())]
                    box_d, score_d = float(np.abs(other.boxes[j] - mine.boxes[q]).max()), \
                        abs(other.scores[j] - mine.scores[q])
                apart = float("inf") if j is None else _centre_distance(mine.boxes[q], other.boxes[j])
                if (moved and apart <= peak_px and score_d <= excuse) or \
                        (not moved and apart <= 2 * peak_px and mine.scores[q] <= other.scores[j] + excuse):
                    peak_ties += 1  # a tied neighbour cell picked instead, or an extra peak beside one
                    continue
                missed_best.update([i] if side == "reference" and q == mine.best else [])  # top-1
                box_diffs.append(box_d)
                partner = "nothing of its class" if j is None else f"nearest {other.describe(j)}"
                _keep(worst, "box", box_d, f"{what}, {partner} in the other output")
    rest = [(_max_diff(r, g), k) for k, (r, g) in enumerate(zip(r_rest, g_rest), start=3)]
    for d, k in rest:
        _keep(worst, "diff", d, f"graph output {k} (ModelInfo.output_names order)")
    return ParityReport(n, _largest([score_diff] + [d for d, _ in rest]), 1.0 - len(missed_best) / max(n, 1),
                        origin, _largest(box_diffs), max(class_mismatches.values()),
                        tuple((k, w) for k, (_, w) in worst.items()), peak_ties)


def _centre_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2).max())


def _cut(other: _Frame, excuse: float) -> float:
    """Scores at or below this may be missing from ``other``: it is full (its lowest candidate is a
    real peak, above 0) and a near-tie may have cut them; -1 when nothing can have been cut."""
    low = other.scores.min() if other.scores.size else 0.0
    return low + excuse if low > 0 else -1.0


def _largest(values: list[float]) -> float:
    """max, 0 for none; NaN wins (a NaN output must fail)."""
    return float(np.max(values)) if len(values) else 0.0


class _Frame:
    """One frame's candidates of one output: boxes (M, 4) px, scores (M,), integer class ids (M,)."""

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
        self.boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.scores = np.asarray(scores, np.float64).reshape(-1)
        self.classes = np.rint(np.asarray(classes, np.float64)).astype(np.int64).reshape(-1)
        self.best = int(self.scores.argmax()) if self.scores.size else -1

    def describe(self, j: int) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.boxes[j])
        return f"class {self.classes[j]} score {self.scores[j]:.4f} box [{box}] px"


def _match(mine: _Frame, other: _Frame, box_tolerance: float, score_floor: float) -> list[tuple]:
    """For each of ``mine``'s candidates >= the floor: (its index, (matched, box distance px, |score diff|,
    partner)): the partner is the nearest candidate of its class in ``other`` (None: none of its class),
    matched when its box is within ``box_tolerance``."""
    queries = np.flatnonzero(mine.scores >= score_floor)
    dist = np.abs(mine.boxes[queries, None, :] - other.boxes[None, :, :]).max(axis=2)  # (Q, M) max coordinate px
    dist = np.where(mine.classes[queries, None] == other.classes[None, :], dist, np.inf)
    out = []
    for row, q in enumerate(queries):
        valid = np.where(np.isnan(dist[row]), np.inf, dist[row])
        if np.isfinite(valid).any():
            j = int(valid.argmin())
        elif np.isnan(dist[row]).any():  # NaN boxes: compared, and failing
            j = int(np.flatnonzero(np.isnan(dist[row]))[0])
        else:
            out.append((q, (False, float("inf"), float("inf"), None)))
            continue
        d = float(dist[row, j])
        out.append((q, (bool(d <= box_tolerance), d, abs(other.scores[j] - mine.scores[q]), j)))
    return out


def _keep(worst: dict, key: str, value: float, where: str) -> None:
    """Remember where the largest ``value`` of ``key`` occurred (NaN counts as largest)."""
    if not value <= worst.get(key, (0.0, ""))[0]:
        worst[key] = (value, where)


# export's entries of the task registry (dann_ros.data.tasks): how a conversion's outputs are compared,
# rule(ref, got, n, origin, box_tolerance, peak_px=...) -> ParityReport
TASKS = TaskRegistry("export", {"classification": _classification, "detection": _detection})


def read_peak_px(onnx_path: str | Path) -> float:
    """The peak_px the export wrote into the ONNX metadata (0: none, e.g. exported before it was kept)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == PEAK_KEY:
            return float(prop.value)
    return 0.0


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
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, frames=frames, origin=np.array(origin))
    return path


__all__ = ["MIN_TOP1_AGREEMENT", "PEAK_KEY", "ParityReport", "SCORE_FLOOR", "TOLERANCES", "Tolerance", "compare",
           "outputs_in_batches", "parity_frames_path", "read_peak_px", "save_parity_frames"]
