"""``dann-ros eval-bag``: a model over every frame of a recorded bag, offline and as fast as it goes.

Frames are read and decoded by dann_ros.data.bags.iter_frames in a decoder thread while the
main thread prepares them with the Predictor (the node's own code path) and runs the model on
full batches, so decoding overlaps with preprocessing and inference. Outputs in ``--out``:

- ``result_bag/``: the camera messages copied byte for byte plus vision_msgs/Classification or
  Detection2DArray (and LabelInfo) on the topics dann_node would publish, with the input's header
  and log time;
- ``report.json`` and ``report.html``: accuracy, per-class precision/recall and confusion matrix
  (classification) or COCO-style mAP and per-class AP (detection) with a label file; class and
  confidence histograms, the domain-shift score over time (the
  node's definition, dann_ros.ros.diagnostics.DomainShiftMonitor), per-frame latency, and the
  frames that were skipped and why.

A bag that stops being readable part way is evaluated up to there; the report says so.
Tasks (classification, detection) dispatch through :data:`TASKS`.
"""

from __future__ import annotations

import argparse
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dann_ros.data.bags import BagError, BagSelection, DecodeStats, bag_info, iter_frames
from dann_ros.data.labels import LabelError, LabelFile, bag_base, default_labels_path
from dann_ros.data.preprocess import Geometry
from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.scores import ClassificationScores, classification_scores, labels_onto_classes

log = logging.getLogger(__name__)

FORMAT = "dann_ros.eval_bag/1"
MAX_SERIES_POINTS = 5000  # per-frame series in report.json are thinned to this many points


def node_defaults() -> dict[str, Any]:
    """The node's defaults for the values eval-bag shares with it (top_k, domain-shift settings)."""
    from dann_ros.ros.params import PARAMETERS

    return {k: PARAMETERS[k][0] for k in ("top_k", "domain_shift_reference", "domain_shift_window",
                                          "domain_shift_warn", "domain_shift_error")}


# --------------------------------------------------------------------------- per-frame records
@dataclass
class FrameTable:
    """What eval-bag knows about every evaluated frame, in bag order (the _FrameSetLike of labels.match)."""

    topics: np.ndarray  # (N,) str
    indices: np.ndarray  # (N,) int64, index of the message on its topic
    stamps_ns: np.ndarray  # (N,) int64 header stamps
    log_times_ns: np.ndarray  # (N,) int64
    frame_ids: list[str]
    sizes: np.ndarray  # (N, 2) input height, width
    decode_ms: np.ndarray  # read + deserialize + decode to RGB
    prepare_ms: np.ndarray  # Preprocess.prepare
    inference_ms: np.ndarray  # the frame's share of its batch's model time
    outputs: dict[str, np.ndarray]  # model outputs, concatenated over batches
    batch_ms: np.ndarray  # model time per batch
    batch_sizes: np.ndarray
    geometries: np.ndarray  # (N, 4) Geometry.scale_x, scale_y, offset_x, offset_y (detections -> image pixels)

    def geometry(self, row: int) -> Geometry:
        return Geometry(*(float(v) for v in self.geometries[row]))

    def __len__(self) -> int:
        return len(self.topics)


@dataclass
class RunStats:
    wall_s: float = 0.0
    decode_wall_s: float = 0.0  # decoder thread's life
    inference_s: float = 0.0
    result_bag_s: float = 0.0
    report_s: float = 0.0


_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Decoder(threading.Thread):
    """Reads and decodes frames (iter_frames) into small chunks for the main thread, which
    prepares and infers; exceptions travel in the queue. Decoding is mostly Python (holds the
    GIL) while prepare (cv2) and the model (onnxruntime/torch) release it, so on two cores the
    two threads really run side by side."""

    CHUNK = 8  # frames per hand-off: few queue operations, little memory in flight

    def __init__(self, bag: Path, selection: BagSelection, stats: DecodeStats, out: queue.Queue,
                 stop: threading.Event) -> None:
        super().__init__(name="eval_bag_decoder", daemon=True)
        self.bag, self.selection, self.stats = bag, selection, stats
        self.out, self.stop = out, stop
        self.seconds = 0.0

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        start = time.perf_counter()
        try:
            frames = iter_frames(self.bag, self.selection, self.stats)
            chunk: list[tuple[Any, float]] = []
            clock = time.perf_counter
            t0 = clock()
            for frame in frames:
                chunk.append((frame, (clock() - t0) * 1e3))  # read + deserialize + decode of this frame
                if len(chunk) == self.CHUNK:
                    if not self._put(chunk):
                        frames.close()
                        return
                    chunk = []
                if self.stop.is_set():
                    frames.close()
                    return
                t0 = clock()
            if chunk:
                self._put(chunk)
            self.seconds = time.perf_counter() - start
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            self.seconds = time.perf_counter() - start
            self._put(_Failure(exc))


def run_frames(predictor: Any, bag: Path, selection: BagSelection, batch_size: int = 64,
               stats: DecodeStats | None = None, progress: Callable[[int], None] | None = None,
               run_stats: RunStats | None = None) -> tuple[FrameTable, DecodeStats]:
    """Every decodable frame of the selection through the model; decoding (a thread) overlaps
    with prepare + inference (this thread)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    stats = stats if stats is not None else DecodeStats()
    run_stats = run_stats if run_stats is not None else RunStats()
    q: queue.Queue = queue.Queue(maxsize=max(2, 32 // _Decoder.CHUNK))
    stop = threading.Event()
    shape = tuple(predictor.preprocess.input_shape)
    decoder = _Decoder(bag, selection, stats, q, stop)
    metas: list[tuple] = []
    outputs: dict[str, list[np.ndarray]] = {}
    batch_ms: list[float] = []
    batch_sizes: list[int] = []
    buf = np.empty((batch_size, *shape), np.uint8)
    filled = 0
    clock = time.perf_counter

    def infer(n: int) -> None:
        t = clock()
        out = predictor.run_prepared(buf[:n])
        dt = clock() - t
        run_stats.inference_s += dt
        for name, value in out.items():
            value = np.asarray(value)
            if value.shape[:1] != (n,):
                raise RuntimeError(f"model output {name!r} has shape {value.shape} for a batch of {n}")
            outputs.setdefault(name, []).append(np.array(value, copy=True))
        batch_ms.append(dt * 1e3)
        batch_sizes.append(n)
        if progress is not None:
            progress(len(metas))

    decoder.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.exc
            for frame, decode_ms in item:
                t = clock()
                buf[filled], g = predictor.prepare(frame.image)
                prepare_ms = (clock() - t) * 1e3
                filled += 1
                metas.append((frame.topic, frame.index, frame.stamp_ns, frame.log_time_ns, frame.frame_id,
                              frame.image.shape[0], frame.image.shape[1], decode_ms, prepare_ms,
                              (g.scale_x, g.scale_y, g.offset_x, g.offset_y)))
                if filled == batch_size:
                    infer(filled)
                    filled = 0
        if filled:
            infer(filled)
    finally:
        stop.set()
        decoder.join(timeout=30)
    run_stats.decode_wall_s = decoder.seconds
    if not metas:
        raise BagError(f"no frames decoded from bag {bag} ({', '.join(selection.topics) or 'all image topics'}): "
                       f"{stats.summary()}")
    per_frame_inf = np.concatenate([np.full(n, ms / n) for ms, n in zip(batch_ms, batch_sizes)])
    cols = list(zip(*metas))
    table = FrameTable(
        topics=np.asarray(cols[0], dtype=str), indices=np.asarray(cols[1], np.int64),
        stamps_ns=np.asarray(cols[2], np.int64), log_times_ns=np.asarray(cols[3], np.int64),
        frame_ids=list(cols[4]), sizes=np.stack([np.asarray(cols[5], np.int64), np.asarray(cols[6], np.int64)], 1),
        decode_ms=np.asarray(cols[7], float), prepare_ms=np.asarray(cols[8], float), inference_ms=per_frame_inf,
        outputs={k: np.concatenate(v) for k, v in outputs.items()},
        batch_ms=np.asarray(batch_ms), batch_sizes=np.asarray(batch_sizes, np.int64),
        geometries=np.asarray(cols[9], float))
    return table, stats


# --------------------------------------------------------------------------- labels
@dataclass
class Labels:
    file: LabelFile
    path: Path
    automatic: bool  # found next to the bag rather than given


def resolve_labels(bag: Path, labels: str | Path | None | bool, task: str,
                   topics: list[str]) -> tuple[Labels | None, str | None]:
    """The label file to score against, and a note when an automatically found one is not used.

    ``labels``: a path; None/True = ``<bag>.labels.json`` if it exists; False = none."""
    if labels is False:
        return None, None
    automatic = labels is None or labels is True
    path = default_labels_path(bag) if automatic else Path(labels)
    if automatic and not path.exists():
        return None, None
    label_file = LabelFile.load(path)
    if label_file.task != task:
        raise LabelError(f"{path}: a {label_file.task} label file, but the model is a {task} model")
    if label_file.topic not in topics:
        msg = (f"{path}: labels are for topic {label_file.topic!r}, which is not among the evaluated topics "
               f"{topics}")
        if automatic:
            log.warning("%s; evaluating without labels", msg)
            return None, msg + "; evaluated without labels"
        raise LabelError(msg)
    return Labels(label_file, path, automatic), None


# --------------------------------------------------------------------------- tasks
class ClassificationTask:
    """Classification: argmax of ``scores``; Classification messages like dann_node's.

    The task interface eval-bag dispatches through (a detection task implements the same):
    predictions(frames), write(writer, topic, row, log_ns, frames), score(pred, labels, frames),
    summary(pred), figures(pred, scores, label_info), html(page, report, figures).
    """

    name = "classification"
    output_name = "classification"

    def __init__(self, classes: tuple[str, ...], top_k: int) -> None:
        self.classes = classes
        self.top_k = top_k

    def predictions(self, frames: FrameTable) -> dict[str, np.ndarray]:
        scores = frames.outputs["scores"]
        pred = scores.argmax(1)
        return {"class_id": pred, "confidence": scores[np.arange(len(pred)), pred]}

    def write(self, writer: Any, topic: str, row: int, log_ns: int, frames: FrameTable) -> None:
        writer.classification(topic, log_ns, int(frames.stamps_ns[row]), frames.frame_ids[row],
                              frames.outputs["scores"][row], self.top_k)

    def score(self, pred: dict[str, np.ndarray], labels: Labels,
              frames: FrameTable) -> tuple[ClassificationScores, dict]:
        match = labels.file.match(frames)
        ids = labels_onto_classes(labels.file, match.class_ids, self.classes)
        scores = classification_scores(pred["class_id"], ids, self.classes)
        info = {"path": str(labels.path), "automatic": labels.automatic, "topic": labels.file.topic,
                "matched": int(match.matched.sum()), "unmatched": int(match.unmatched),
                "matched_by_index": int(match.by_index), "label_ids": ids}
        return scores, info

    def summary(self, pred: dict[str, np.ndarray]) -> dict:
        return {"class_counts": {c: int((pred["class_id"] == i).sum()) for i, c in enumerate(self.classes)},
                "confidence": _percentiles(pred["confidence"])}

    def figures(self, pred: dict[str, np.ndarray], scores: ClassificationScores | None,
                label_info: dict | None) -> dict[str, dict]:
        classes = self.classes
        figs: dict[str, dict] = {}
        k = len(classes)
        predicted = np.bincount(pred["class_id"], minlength=k)
        series = {"predicted": predicted.tolist()}
        if scores is not None:
            series["true (labelled frames)"] = scores.confusion.sum(1).tolist()
        figs["class_histogram"] = {
            "png": plots.bars(classes, series, "Frames per class", "class", "frames"),
            "caption": "Predicted class of every evaluated frame" + (", and the labelled class" if scores else ""),
            "json": {"title": "Frames per class", "classes": list(classes), **series}}
        edges = np.linspace(0.0, 1.0, 21)
        conf = pred["confidence"]
        conf_series = {"all frames": conf}
        if scores is not None:
            ids = label_info["label_ids"]
            known = ids >= 0
            right = pred["class_id"] == ids
            conf_series = {"correct": conf[known & right], "wrong": conf[known & ~right]}
            if (~known).any():
                conf_series["unlabelled"] = conf[~known]
        figs["confidence_histogram"] = {
            "png": plots.histogram(conf_series, edges, "Top-1 confidence", "top-1 score (softmax probability)"),
            "caption": "Confidence of the predicted class"
                       + (", split by correctness on labelled frames" if scores else ""),
            "json": {"title": "Top-1 confidence", "bin_edges": edges.tolist(),
                     **{name: np.histogram(v, edges)[0].tolist() for name, v in conf_series.items()}}}
        if scores is not None:
            figs["confusion_matrix"] = {
                "png": plots.confusion_matrix(scores.confusion, classes, f"Confusion matrix (accuracy "
                                              f"{100 * scores.accuracy:.2f}%, n={scores.n})"),
                "caption": "Rows: labelled class; columns: predicted class; numbers are frame counts",
                "json": {"title": "Confusion matrix", "classes": list(classes), "rows": "true class",
                         "columns": "predicted class", "matrix": scores.confusion.tolist()}}
            p, r = scores.precision(), scores.recall()
            figs["precision_recall"] = {
                "png": plots.bars(classes, {"precision": p.tolist(), "recall": r.tolist()},
                                  "Per-class precision and recall", "class", "value", ylim=(0, 1.05)),
                "caption": "Precision = correct / predicted as the class; recall = correct / labelled as the class",
                "json": {"title": "Per-class precision and recall", "classes": list(classes),
                         "precision": p.tolist(), "recall": r.tolist()}}
        return figs

    def html(self, page: H.Page, report: dict, figures: dict[str, dict]) -> None:
        if report["scores"] is not None:
            s, li = report["scores"], report["labels"]
            page.heading("Accuracy")
            page.paragraph(f"Labels: {li['path']} (topic {li['topic']}): {li['matched']} frames matched "
                           f"({li['matched_by_index']} by index), {li['unmatched']} evaluated frames without a label, "
                           f"{s['unknown_label']} left out (no label or a class the model lacks).")
            page.table(("class", "labelled", "predicted", "precision", "recall", "F1"),
                       [(c, r["n"], r["predicted"], H.pct(r["precision"]), H.pct(r["recall"]), H.pct(r["f1"]))
                        for c, r in s["per_class"].items()] + [("all", s["n"], s["n"], "", "", "")])
            page.paragraph(f"Accuracy {H.pct(s['accuracy'])} ({s['correct']} of {s['n']} labelled frames correct).")
            for name in ("confusion_matrix", "precision_recall"):
                page.figure(figures[name]["png"], figures[name]["caption"])

        page.heading("Predictions")
        for name in ("class_histogram", "confidence_histogram"):
            page.figure(figures[name]["png"], figures[name]["caption"])


class DetectionTask:
    """Detection: the model's top candidates, thresholded for messages and figures (as dann_node
    publishes them) and all of them for COCO-style mAP; boxes in input-image pixels."""

    name = "detection"
    output_name = "detections"

    def __init__(self, classes: tuple[str, ...], top_k: int, threshold: float = 0.3) -> None:
        self.classes = classes
        self.threshold = threshold

    @staticmethod
    def image_boxes(frames: FrameTable, row: int) -> np.ndarray:
        """The row's candidate boxes in its input image's pixels (letterbox undone, clipped)."""
        b = frames.geometry(row).to_image(frames.outputs["boxes"][row])
        h, w = frames.sizes[row]
        b[:, 0::2] = b[:, 0::2].clip(0, w)
        b[:, 1::2] = b[:, 1::2].clip(0, h)
        return b

    def predictions(self, frames: FrameTable) -> dict[str, Any]:
        out = frames.outputs
        boxes = [self.image_boxes(frames, row) for row in range(len(frames))]
        scores, classes = out["scores"], out["classes"].astype(np.int64)
        keep = scores >= self.threshold
        return {"boxes": boxes, "scores": scores, "classes": classes, "keep": keep,
                "confidence": scores[:, 0] if scores.shape[1] else np.zeros(len(frames))}

    def write(self, writer: Any, topic: str, row: int, log_ns: int, frames: FrameTable) -> None:
        scores = frames.outputs["scores"][row]
        keep = scores >= self.threshold
        writer.detections(topic, log_ns, int(frames.stamps_ns[row]), frames.frame_ids[row],
                          self.image_boxes(frames, row)[keep], frames.outputs["classes"][row][keep].astype(np.int64),
                          scores[keep])

    def score(self, pred: dict[str, Any], labels: Labels, frames: FrameTable) -> tuple[Any, dict]:
        from dann_ros.evaluation.detection_metrics import evaluate_detections

        match = labels.file.match(frames)
        to_ours = np.array([self.classes.index(c) if c in self.classes else -1 for c in labels.file.classes] + [-1])
        rows = np.flatnonzero(match.matched)
        gt_boxes = [match.boxes[r] for r in rows]
        gt_classes = [to_ours[match.box_class_ids[r]] for r in rows]
        report = evaluate_detections([pred["boxes"][r] for r in rows], [pred["scores"][r] for r in rows],
                                     [pred["classes"][r] for r in rows], gt_boxes, gt_classes, len(self.classes),
                                     class_names=self.classes)
        info = {"path": str(labels.path), "automatic": labels.automatic, "topic": labels.file.topic,
                "matched": int(match.matched.sum()), "unmatched": int(match.unmatched),
                "matched_by_index": int(match.by_index)}
        return _DetectionScores(report), info

    def summary(self, pred: dict[str, Any]) -> dict:
        kept = pred["classes"][pred["keep"]]
        return {"detections": int(pred["keep"].sum()), "threshold": self.threshold,
                "class_counts": {c: int((kept == i).sum()) for i, c in enumerate(self.classes)},
                "confidence": _percentiles(pred["scores"][pred["keep"]])}

    def figures(self, pred: dict[str, Any], scores: Any, label_info: dict | None) -> dict[str, dict]:
        counts = [int((pred["classes"][pred["keep"]] == i).sum()) for i in range(len(self.classes))]
        figs = {"class_histogram": {
            "png": plots.bars(self.classes, {"detections": counts}, f"Detections per class (score >= "
                              f"{self.threshold:g})", "class", "detections"),
            "caption": "Detections the node would publish, per class",
            "json": {"title": "Detections per class", "classes": list(self.classes), "detections": counts}}}
        edges = np.linspace(0.0, 1.0, 21)
        top = pred["confidence"]
        figs["confidence_histogram"] = {
            "png": plots.histogram({"best candidate per frame": top}, edges, "Detection confidence", "score"),
            "caption": "Score of each frame's best detection candidate",
            "json": {"title": "Detection confidence", "bin_edges": edges.tolist(),
                     "best candidate per frame": np.histogram(top, edges)[0].tolist()}}
        if scores is not None:
            ap = [scores.report.per_class_ap50.get(c, float("nan")) for c in self.classes]
            figs["per_class_ap50"] = {
                "png": plots.bars(self.classes, {"AP@0.5": [0.0 if a != a else a for a in ap]},
                                  f"Per-class AP@0.5 (mAP@0.5 {100 * scores.accuracy:.1f}%)", "class", "AP",
                                  ylim=(0, 1.05)),
                "caption": "COCO-style AP at IoU 0.5 per class (0 shown for classes without labelled boxes)",
                "json": {"title": "Per-class AP@0.5", "classes": list(self.classes),
                         "ap50": [None if a != a else a for a in ap]}}
        return figs

    def html(self, page: H.Page, report: dict, figures: dict[str, dict]) -> None:
        if report["scores"] is not None:
            s, li = report["scores"], report["labels"]
            page.heading("mAP")
            page.paragraph(f"Labels: {li['path']} (topic {li['topic']}): {li['matched']} frames matched, "
                           f"{s['n_gt']} labelled boxes. mAP@0.5 {H.pct(s['map50'])}, mAP@[.5:.95] {H.pct(s['map'])} "
                           f"(COCO-style, all candidates ranked by score).")
            page.table(("class", "AP@0.5", "AP@[.5:.95]"),
                       [(c, H.pct(a), H.pct(s["per_class_ap"].get(c))) for c, a in s["per_class_ap50"].items()])


@dataclass
class _DetectionScores:
    """DetectionReport in eval-bag's scores slot: ``accuracy`` is mAP@0.5 there."""

    report: Any

    @property
    def accuracy(self) -> float:
        return self.report.map50

    @property
    def n(self) -> int:
        return self.report.n_images

    def to_json(self) -> dict:
        return {**self.report.to_dict(), "n": self.report.n_images}


TASKS: dict[str, Callable[..., Any]] = {"classification": ClassificationTask, "detection": DetectionTask}


def task_for(info: Any, top_k: int) -> Any:
    if info.task not in TASKS:
        raise ValueError(f"eval-bag supports {', '.join(TASKS)} models; this model's task is {info.task!r}")
    return TASKS[info.task](tuple(info.classes), top_k)


# --------------------------------------------------------------------------- domain shift
def domain_shift_series(domain: np.ndarray, topics: np.ndarray, window: int, reference: float) -> np.ndarray:
    """The node's domain-shift score after each frame, per camera (dann_ros.ros.diagnostics)."""
    from dann_ros.ros.diagnostics import DomainShiftMonitor

    monitors: dict[str, DomainShiftMonitor] = {}
    out = np.empty(len(domain))
    for i, (d, topic) in enumerate(zip(domain, topics)):
        mon = monitors.get(topic)
        if mon is None:
            mon = monitors[topic] = DomainShiftMonitor(window, reference)
        mon.add(float(d))
        out[i] = mon.shift()
    return out


# --------------------------------------------------------------------------- result bag
def write_result_bag(path: Path, bag: Path, topics: list[str], frames: FrameTable, task: Any,
                     compressed: dict[str, bool], storage: str = "mcap") -> dict:
    """Copy the selected topics' messages (all of them, decodable or not) and add the outputs.

    Reads the bag a second time with the same reader as iter_frames (so a damaged bag stops at
    the same message) and writes everything in the input's log-time order.
    """
    from dann_ros.data.bags import _open_source  # same reader and salvage path as iter_frames
    from dann_ros.evaluation.result_bag import ResultBagWriter, output_topics

    rows = {(t, int(i)): r for r, (t, i) in enumerate(zip(frames.topics.tolist(), frames.indices.tolist()))}
    out_topics = output_topics(topics, task.output_name, [compressed[t] for t in topics])
    info_topics = output_topics(topics, "label_info", [compressed[t] for t in topics])
    wanted = set(topics)
    index: dict[str, int] = {}
    announced: set[str] = set()
    written = outputs = 0
    read_error = None
    source = _open_source(bag)
    try:
        with ResultBagWriter(path, storage) as writer:
            connections = [c for c in source.connections if c.topic in wanted]
            messages = source.messages(connections, None)
            while True:
                try:
                    connection, log_ns, raw = next(messages)
                except StopIteration:
                    break
                except Exception as err:  # the same place iter_frames stopped
                    read_error = f"{type(err).__name__}: {err}"
                    break
                topic = connection.topic
                idx = index.get(topic, 0)
                index[topic] = idx + 1
                row = rows.get((topic, idx))
                if row is not None and topic not in announced:  # class map once per camera, like the node
                    announced.add(topic)
                    writer.label_info(info_topics[topic], log_ns, int(frames.stamps_ns[row]), frames.frame_ids[row],
                                      task.classes)
                writer.copy(connection, log_ns, raw)
                written += 1
                if row is not None:
                    task.write(writer, out_topics[topic], row, log_ns, frames)
                    outputs += 1
            counts = dict(writer.counts)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        source.close()
    return {"path": str(path), "storage": storage, "input_messages": written, "outputs": outputs,
            "output_topics": out_topics, "label_info_topics": info_topics, "messages_per_topic": counts,
            "read_error": read_error}


# --------------------------------------------------------------------------- the evaluation
@dataclass
class EvalBagResult:
    report: dict
    out_dir: Path | None
    scores: ClassificationScores | None = None
    frames: FrameTable | None = None
    decode: DecodeStats = field(default_factory=DecodeStats)

    @property
    def accuracy(self) -> float | None:
        return self.scores.accuracy if self.scores is not None else None


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    values = np.asarray(values, float)
    if not values.size:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": int(values.size), "mean": float(values.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(values.max())}


def _thin(*arrays: np.ndarray) -> list[list]:
    n = len(arrays[0])
    step = max(1, int(np.ceil(n / MAX_SERIES_POINTS)))
    return [np.asarray(a)[::step].tolist() for a in arrays]


def evaluate_bag(predictor: Any, bag: str | Path, topics: tuple[str, ...] = (), labels: str | Path | bool | None = None,
                 out_dir: str | Path | None = None, batch_size: int = 64, result_bag: bool = True,
                 storage: str = "mcap", top_k: int | None = None, domain_window: int | None = None,
                 domain_reference: float | None = None, overwrite: bool = False, model_path: str = "",
                 html: bool = True, progress: Callable[[int], None] | None = None) -> EvalBagResult:
    """Run ``predictor`` over the bag and write the result bag and reports into ``out_dir``."""
    t_start = time.perf_counter()
    bag = Path(bag)
    defaults = node_defaults()
    top_k = defaults["top_k"] if top_k is None else top_k
    window = defaults["domain_shift_window"] if domain_window is None else domain_window
    reference = defaults["domain_shift_reference"] if domain_reference is None else domain_reference
    if window < 1 or not 0.0 <= reference <= 1.0:
        raise ValueError(f"domain-shift window must be >= 1 and reference within 0..1 (got {window}, {reference})")
    info = predictor.info
    task = task_for(info, top_k)

    meta = bag_info(bag)  # fails early, naming the bag, when it cannot be opened at all
    for topic in topics:
        if topic not in meta.image_topics:
            what = f"has type {meta.other_topics[topic]}, not an image type" if topic in meta.other_topics \
                else "is not in the bag"
            raise BagError(f"topic {topic!r} {what} ({bag}); image topics in the bag: "
                           f"{sorted(meta.image_topics) or 'none'}")
    if not meta.image_topics:
        raise BagError(f"bag {bag} has no sensor_msgs Image or CompressedImage topic "
                       f"(topics: {sorted(meta.other_topics) or 'none'})")
    chosen = list(topics) or sorted(meta.image_topics)
    label_set, label_note = resolve_labels(bag, labels, info.task, chosen)

    out = Path(out_dir) if out_dir is not None else None
    bag_out = out / "result_bag" if out is not None and result_bag else None
    if bag_out is not None and bag_out.exists():
        if not overwrite:
            from dann_ros.evaluation.result_bag import OutputExistsError

            raise OutputExistsError(f"{bag_out} exists already; pass --overwrite or choose another --out")
        shutil.rmtree(bag_out)

    run = RunStats()
    t_frames = time.perf_counter()
    frames, stats = run_frames(predictor, bag, BagSelection(tuple(chosen)), batch_size, progress=progress,
                               run_stats=run)
    t_infer_done = time.perf_counter()
    pred = task.predictions(frames)
    scores = label_info = None
    if label_set is not None:
        scores, label_info = task.score(pred, label_set, frames)
    domain = frames.outputs.get("domain")
    shift = None
    if domain is not None:
        domain = np.asarray(domain, float).reshape(len(frames), -1).mean(1)
        shift = domain_shift_series(domain, frames.topics, window, reference)

    bag_report = None
    if bag_out is not None:
        t = time.perf_counter()
        compressed = {t_: meta.image_topics[t_][0].endswith("CompressedImage") for t_ in chosen}
        bag_report = write_result_bag(bag_out, bag, chosen, frames, task, compressed, storage)
        run.result_bag_s = time.perf_counter() - t
    run.wall_s = time.perf_counter() - t_start
    frames_wall = t_infer_done - t_frames

    report = _build_report(
        predictor=predictor, model_path=model_path, bag=bag, meta=meta, chosen=chosen, frames=frames, stats=stats,
        task=task, pred=pred, scores=scores, label_info=label_info, label_note=label_note, domain=domain, shift=shift,
        window=window, reference=reference, defaults=defaults, run=run, frames_wall=frames_wall,
        batch_size=batch_size, bag_report=bag_report, top_k=top_k)
    if out is not None:
        t = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        figures = _figures(report, frames, task, pred, scores, label_info, domain, shift)
        report["figures"] = {k: v["json"] for k, v in figures.items()}
        H.write_json(out / "report.json", report)
        if html:
            _html(report, figures, task).write(out / "report.html")
        run.report_s = time.perf_counter() - t
    return EvalBagResult(report, out, scores, frames, stats)


def _build_report(*, predictor, model_path, bag, meta, chosen, frames, stats, task, pred, scores, label_info,
                  label_note,
                  domain, shift, window, reference, defaults, run, frames_wall, batch_size, bag_report, top_k) -> dict:
    info = predictor.info
    n = len(frames)
    per_topic = {}
    for t in chosen:
        counts = stats.topics.get(t)
        listed = meta.image_topics[t][1]
        seen = (counts.decoded + counts.skipped) if counts else 0
        per_topic[t] = {"msgtype": meta.image_topics[t][0],
                        "messages_in_bag": None if listed == 0 and seen else listed,  # a truncated MCAP lists none
                        "decoded": counts.decoded if counts else 0, "skipped": counts.skipped if counts else 0}
    total_ms = frames.decode_ms + frames.prepare_ms + frames.inference_ms
    sizes = sorted({(int(h), int(w)) for h, w in frames.sizes.tolist()})
    complete = stats.ok
    report: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": str(model_path), "backend": getattr(predictor.backend, "name", "?"), "task": info.task,
                  "classes": list(info.classes), "input_shape": list(info.preprocess.input_shape),
                  "domain_monitor": domain is not None},
        "bag": {"path": str(bag), "start_ns": meta.start_ns, "end_ns": meta.end_ns, "topics": per_topic,
                "image_sizes": [f"{w}x{h}" for h, w in sizes]},
        "frames": {"evaluated": n, "decoded": stats.decoded, "skipped": stats.skipped, "complete": complete,
                   "skipped_examples": list(stats.examples), "read_errors": list(stats.read_errors),
                   "summary": stats.summary()},
        "throughput": {"frames_per_second": n / frames_wall if frames_wall > 0 else None,
                       "frames_per_second_with_outputs": n / run.wall_s if run.wall_s > 0 else None,
                       "frames_wall_s": frames_wall, "wall_s": run.wall_s, "decoder_thread_s": run.decode_wall_s,
                       "inference_s": run.inference_s, "result_bag_s": run.result_bag_s, "batch_size": batch_size,
                       "batches": int(len(frames.batch_ms))},
        "latency_ms": {"decode": _percentiles(frames.decode_ms), "prepare": _percentiles(frames.prepare_ms),
                       "inference_per_frame": _percentiles(frames.inference_ms),
                       "processing_per_frame": _percentiles(total_ms), "batch_inference": _percentiles(frames.batch_ms),
                       "definition": "decode = read + deserialize + decode to RGB (iter_frames); prepare = "
                                     "Preprocess.prepare; inference_per_frame = the frame's share of its batch's model "
                                     "call; processing_per_frame = their sum"},
        "predictions": task.summary(pred),
        "labels": None, "accuracy": None, "scores": None, "label_note": label_note,
        "domain_shift": None, "result_bag": bag_report, "top_k": top_k,
    }
    if scores is not None:
        li = {k: v for k, v in label_info.items() if k != "label_ids"}
        report["labels"] = li
        report["accuracy"] = scores.accuracy
        report["scores"] = scores.to_json()
    if domain is not None:
        ds: dict[str, Any] = {"window": window, "reference": reference, "warn": defaults["domain_shift_warn"],
                              "error": defaults["domain_shift_error"],
                              "definition": "dann_node's score: mean over the camera's last `window` frames of "
                                            "|domain - reference| / max(reference, 1 - reference); domain = P(frame "
                                            "looks like the synthetic source)", "topics": {}}
        for t in chosen:
            m = frames.topics == t
            if m.any():
                ds["topics"][t] = {"final": float(shift[m][-1]), "mean": float(shift[m].mean()),
                                   "max": float(shift[m].max()), "mean_domain_score": float(domain[m].mean()),
                                   "frames_at_or_above_warn": int((shift[m] >= ds["warn"]).sum()),
                                   "frames_at_or_above_error": int((shift[m] >= ds["error"]).sum())}
        report["domain_shift"] = ds
    return report


# --------------------------------------------------------------------------- figures and pages
def _figures(report: dict, frames: FrameTable, task: Any, pred: dict, scores: Any, label_info: dict | None,
             domain: np.ndarray | None, shift: np.ndarray | None) -> dict[str, dict]:
    """name -> {"png": bytes, "caption": str, "json": the figure's data}: the task's, then the common ones."""
    figs: dict[str, dict] = task.figures(pred, scores, label_info)
    t0 = int(frames.log_times_ns.min())
    t_s = (frames.log_times_ns - t0) / 1e9
    if domain is not None and shift is not None:
        ds = report["domain_shift"]
        data, line_series = {}, {}
        for topic in ds["topics"]:
            m = frames.topics == topic
            x, y_shift, y_dom = _thin(t_s[m], shift[m], domain[m])
            data[topic] = {"t_s": x, "shift": y_shift, "domain_score": y_dom}
            line_series[f"shift {topic}" if len(ds["topics"]) > 1 else "domain-shift score"] = (t_s[m], shift[m])
            name = f"P(synthetic) {topic}" if len(ds["topics"]) > 1 else "P(synthetic) per frame"
            line_series[name] = (t_s[m], domain[m])
        figs["domain_shift"] = {
            "png": plots.lines(line_series, f"Domain shift over time (window {ds['window']} frames)",
                               "recording time since the first frame (s)", "score",
                               hlines={f"warn {ds['warn']:g}": ds["warn"], f"error {ds['error']:g}": ds["error"]},
                               ylim=(-0.02, 1.02)),
            "caption": "dann_node's domain-shift score (0 = like the adapted target, 1 = the discriminator is sure "
                       "of a domain) and the per-frame discriminator output P(synthetic source)",
            "json": {"title": "Domain shift over time", "window": ds["window"], "reference": ds["reference"],
                     "warn": ds["warn"], "error": ds["error"], "topics": data}}
    total = frames.decode_ms + frames.prepare_ms + frames.inference_ms
    lat_series = {"decode": frames.decode_ms, "prepare": frames.prepare_ms,
                  "inference (share of batch)": frames.inference_ms,
                  "total": total}
    top = max(float(np.percentile(total, 99.5)), 1e-3)
    lat_edges = np.linspace(0.0, top, 41)
    figs["latency"] = {
        "png": plots.histogram({k_: np.minimum(v, top) for k_, v in lat_series.items()}, lat_edges,
                               "Per-frame processing time", "milliseconds (values above p99.5 in the last bin)"),
        "caption": "Decode (read + deserialize + decode), prepare (resize/reorder), the frame's share of its "
                   "batch's model time, and their sum",
        "json": {"title": "Per-frame processing time", "bin_edges_ms": lat_edges.tolist(),
                 **{k_: np.histogram(np.minimum(v, top), lat_edges)[0].tolist() for k_, v in lat_series.items()},
                 "percentiles_ms": report["latency_ms"]}}
    x, y = _thin(t_s, total)
    figs["latency_over_time"] = {
        "png": plots.lines({"processing time per frame": (t_s, total)}, "Processing time over the recording",
                           "recording time since the first frame (s)", "milliseconds"),
        "caption": "Per-frame processing time (decode + prepare + share of model time) along the bag",
        "json": {"title": "Processing time over the recording", "t_s": x, "total_ms": y}}
    return figs


def _html(report: dict, figures: dict[str, dict], task: Any) -> H.Page:
    m, b, f, tp = report["model"], report["bag"], report["frames"], report["throughput"]
    page = H.Page(f"eval-bag: {Path(b['path']).name}")
    page.keyvalues([
        ("model", f"{m['path']} ({m['backend']}, {m['task']}, {len(m['classes'])} classes, input "
                  f"{'x'.join(map(str, m['input_shape']))})"),
        ("bag", b["path"]), ("topics", ", ".join(b["topics"])), ("image sizes", ", ".join(b["image_sizes"])),
        ("frames evaluated", f["evaluated"]), ("frames skipped", f["skipped"]),
        ("accuracy", H.pct(report["accuracy"]) if report["accuracy"] is not None else "no labels"),
        ("throughput", f"{tp['frames_per_second']:.1f} frames/s (decode, prepare, model; batch {tp['batch_size']})"),
        ("result bag", report["result_bag"]["path"] if report["result_bag"] else "not written"),
        ("created", report["created"]),
    ])
    if not f["complete"]:
        page.note("Partly evaluated: " + f["summary"], "warn")
    if report.get("label_note"):
        page.note(report["label_note"], "warn")

    task.html(page, report, figures)

    page.heading("Domain shift")
    ds = report["domain_shift"]
    if ds is None:
        page.note("The model has no domain monitor output (exported without the discriminator).", "warn")
    else:
        page.paragraph("Definition: " + ds["definition"] + f". Window {ds['window']} frames, reference "
                       f"{ds['reference']:g}, WARN at {ds['warn']:g}, ERROR at {ds['error']:g} (dann_node's defaults).")
        page.table(("topic", "final", "mean", "max", "mean P(synthetic)", "frames >= warn", "frames >= error"),
                   [(t, v["final"], v["mean"], v["max"], v["mean_domain_score"], v["frames_at_or_above_warn"],
                     v["frames_at_or_above_error"]) for t, v in ds["topics"].items()])
        page.figure(figures["domain_shift"]["png"], figures["domain_shift"]["caption"])

    page.heading("Latency and throughput")
    lat = report["latency_ms"]
    page.table(("stage (ms)", "mean", "p50", "p90", "p99", "max"),
               [(name, v["mean"], v["p50"], v["p90"], v["p99"], v["max"]) for name, v in lat.items()
                if isinstance(v, dict)])
    page.paragraph(lat["definition"] + ".")
    page.paragraph(f"Wall time {tp['wall_s']:.2f} s ({tp['frames_wall_s']:.2f} s decoding and inference, overlapped; "
                   f"{tp['inference_s']:.2f} s in the model; {tp['result_bag_s']:.2f} s writing the result bag).")
    for name in ("latency", "latency_over_time"):
        page.figure(figures[name]["png"], figures[name]["caption"])

    page.heading("Frames read and skipped")
    page.table(("topic", "type", "messages in bag", "decoded", "skipped"),
               [(t, v["msgtype"], v["messages_in_bag"], v["decoded"], v["skipped"]) for t, v in b["topics"].items()])
    if f["skipped_examples"]:
        page.paragraph("Examples of skipped frames:")
        page.table(("frame: reason",), [(e,) for e in f["skipped_examples"]])
    for e in f["read_errors"]:
        page.note(e, "error")
    if f["complete"]:
        page.note("Every selected message was read and decoded.", "ok")
    rb = report["result_bag"]
    if rb:
        page.heading("Result bag")
        page.paragraph(f"{rb['path']} ({rb['storage']}): {rb['input_messages']} input messages copied, "
                       f"{rb['outputs']} outputs. Open it in Foxglove Studio or RViz.")
        page.table(("topic", "messages"), sorted(rb["messages_per_topic"].items()))
    return page


# --------------------------------------------------------------------------- CLI
def add_eval_bag_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = node_defaults()
    p = subparsers.add_parser("eval-bag", help="run a model over every frame of a bag: result bag + HTML/JSON report",
                              description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model.pt, model.onnx or a TensorRT engine")
    p.add_argument("--bag", required=True, help="rosbag2 directory, or its .mcap/.db3 file")
    p.add_argument("--topic", action="append", help="camera topic (repeatable; default: every image topic)")
    lab = p.add_mutually_exclusive_group()
    lab.add_argument("--labels", help="label file (default: <bag>.labels.json when it exists)")
    lab.add_argument("--no-labels", action="store_true", help="ignore any label file")
    p.add_argument("--out", help="output folder (default: <bag>.eval next to the bag)")
    p.add_argument("--batch", type=int, default=64, help="frames per model call (default 64)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: CUDA when available")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="result bag storage (default mcap)")
    p.add_argument("--no-result-bag", action="store_true", help="write only the reports")
    p.add_argument("--top-k", type=int, default=d["top_k"], help="hypotheses per Classification (0 = all)")
    p.add_argument("--domain-window", type=int, default=d["domain_shift_window"])
    p.add_argument("--domain-reference", type=float, default=d["domain_shift_reference"])
    p.add_argument("--overwrite", action="store_true", help="replace a result bag left by an earlier run")
    p.set_defaults(func=_run_eval_bag)
    return p


def default_out_dir(bag: str | Path) -> Path:
    base = bag_base(bag)
    return base.with_name(base.name + ".eval")


def _run_eval_bag(args: argparse.Namespace) -> int:
    from dann_ros.runtime.predictor import Predictor

    predictor = Predictor.load(args.model, backend=args.backend, device=args.device)
    out = Path(args.out) if args.out else default_out_dir(args.bag)
    labels: Any = False if args.no_labels else (args.labels or None)
    result = evaluate_bag(predictor, args.bag, tuple(args.topic or ()), labels, out, args.batch,
                          result_bag=not args.no_result_bag, storage=args.storage, top_k=args.top_k,
                          domain_window=args.domain_window, domain_reference=args.domain_reference,
                          overwrite=args.overwrite, model_path=str(args.model))
    r = result.report
    f, tp = r["frames"], r["throughput"]
    print(f"model {args.model} ({r['model']['backend']}); bag {args.bag}: {f['evaluated']} frames on "
          f"{', '.join(r['bag']['topics'])}, {tp['frames_per_second']:.1f} frames/s")
    if r["accuracy"] is not None and r["model"]["task"] == "detection":
        s = r["scores"]
        print(f"mAP@0.5 {100 * s['map50']:.2f}%, mAP@[.5:.95] {100 * s['map']:.2f}% on {s['n']} labelled frames "
              f"({r['labels']['path']})")
    elif r["accuracy"] is not None:
        print(f"accuracy {100 * r['accuracy']:.2f}% on {r['scores']['n']} labelled frames ({r['labels']['path']})")
    elif r.get("label_note"):
        print(r["label_note"])
    if r["domain_shift"]:
        for t, v in r["domain_shift"]["topics"].items():
            print(f"domain shift {t}: final {v['final']:.3f}, mean {v['mean']:.3f}, max {v['max']:.3f}")
    if not f["complete"]:
        print(f"WARNING: partly evaluated: {f['summary']}")
    print(f"wrote {out / 'report.html'}, {out / 'report.json'}"
          + (f", {r['result_bag']['path']}" if r["result_bag"] else ""))
    return 0
