"""The task registry: one entry per task at each layer, and evaluation's side reading the node's
messages back (what replay does) into the predictions eval-bag makes from the model's outputs."""

from __future__ import annotations

import numpy as np
import pytest

from dann_ros.data.labels import LabelFile
from dann_ros.data.tasks import TASK_SPECS, task_spec
from dann_ros.evaluation.result_bag import ResultBagWriter, vision_typestore
from dann_ros.evaluation.tasks import OutputOptions, task_for


def test_every_task_has_its_pieces_at_every_layer():
    from dann_ros.data.labels import TASKS as LABEL_KINDS
    from dann_ros.ros.outputs import TASKS as OUTPUTS

    assert set(TASK_SPECS) == set(LABEL_KINDS) == set(OUTPUTS) == {"classification", "detection"}
    for name, spec in TASK_SPECS.items():
        task = task_for(name, ("a", "b"))
        assert task.spec is spec and task.classes == ("a", "b")
    assert task_spec("detection").metric_key("target") == "target_map50"
    assert task_spec("classification").format_metric(0.8512) == "accuracy 85.12%"
    assert task_spec("detection").format_metric(None) == "mAP@0.5 -"
    with pytest.raises(ValueError, match="unknown task 'segmentation'; dann_ros supports classification, detection"):
        task_for("segmentation", ("a",))


def test_each_task_reads_only_its_own_option():
    options = OutputOptions(top_k=3, detection_threshold=0.6)
    assert task_for("classification", ("a",), options).codec.options_json() == {"top_k": 3}
    assert task_for("detection", ("a",), options).codec.options_json() == {"detection_threshold": 0.6}
    with pytest.raises(ValueError, match="detection threshold must lie within 0..1"):
        OutputOptions(detection_threshold=1.5)


class _Frames:
    """Two frames of one camera, as the FrameTable has them, with the model's raw outputs."""

    def __init__(self, outputs: dict) -> None:
        self.topics = np.array(["/cam/image_raw"] * 2)
        self.indices = np.array([0, 1])
        self.stamps_ns = np.array([1_000_000_000, 1_100_000_000])
        self.frame_ids = ["cam", "cam"]
        self.sizes = np.array([[60, 80], [60, 80]])
        self.outputs = outputs

    def __len__(self) -> int:
        return 2

    def geometry(self, row: int):
        from dann_ros.data.preprocess import Geometry

        return Geometry(1.0, 1.0, 0.0, 0.0)


def _predictions(task, frames) -> dict:
    """eval-bag's predictions: the raw outputs through the runtime's decode (Predictor.decode's entry)."""
    from dann_ros.runtime.tasks import TASKS as RUNTIME

    return task.codec.predictions(lambda outputs, *rest: RUNTIME[task.spec.name].decode(outputs, task.classes, *rest),
                                  frames)


def _round_trip(tmp_path, task, frames) -> list:
    """Messages as eval-bag writes them, read back as replay receives them."""
    from rosbags.highlevel import AnyReader

    pred = _predictions(task, frames)
    with ResultBagWriter(tmp_path / "bag") as writer:
        for row in range(len(frames)):
            task.codec.write(writer, "/cam/out", row, int(frames.stamps_ns[row]), frames, pred)
    with AnyReader([tmp_path / "bag"], default_typestore=vision_typestore()) as reader:
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]


def test_detections_read_back_from_detection2darray_equal_the_published_predictions(tmp_path):
    task = task_for("detection", ("red", "blue"), OutputOptions(detection_threshold=0.3))
    frames = _Frames({"boxes": np.array([[[10, 5, 30, 25], [40, 10, 70, 50], [0, 0, 5, 5]],
                                         [[1, 2, 3, 4], [5, 6, 7, 8], [9, 9, 9, 9]]], np.float32),
                      "scores": np.array([[0.9, 0.4, 0.1], [0.2, 0.1, 0.0]], np.float32),
                      "classes": np.array([[1, 0, 0], [0, 0, 0]], np.int64)})
    pred = _predictions(task, frames)
    assert [len(b) for b in pred["boxes"]] == [2, 0]  # scores >= 0.3 only
    back = task.codec.from_messages(_round_trip(tmp_path, task, frames))
    for key in ("boxes", "scores", "classes"):
        for mine, theirs in zip(pred[key], back[key]):
            np.testing.assert_allclose(theirs, mine, atol=1e-5)
    np.testing.assert_allclose(back["best"], [0.9, 0.0], atol=1e-6)  # what replay can see of the second frame


def test_classes_read_back_from_classification_equal_the_argmax(tmp_path):
    task = task_for("classification", ("a", "b", "c"), OutputOptions(top_k=2))
    frames = _Frames({"scores": np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)})
    msgs = _round_trip(tmp_path, task, frames)
    assert [len(m.results) for m in msgs] == [2, 2]  # top_k
    back = task.codec.from_messages(msgs)
    assert back["class_id"].tolist() == _predictions(task, frames)["class_id"].tolist() == [1, 0]
    np.testing.assert_allclose(back["confidence"], [0.7, 0.5], atol=1e-6)


def test_scores_of_the_read_back_detections(tmp_path):
    """A perfect detection and a wrong-class one: AP 1 for 'red', 0 for 'blue' -> mAP@0.5 = 0.5."""
    from dann_ros.data.labels import FrameLabel, LabelBox, ResolvedLabels

    task = task_for("detection", ("red", "blue"), OutputOptions(detection_threshold=0.3))
    frames = _Frames({"boxes": np.array([[[10, 5, 30, 25]], [[40, 10, 70, 50]]], np.float32),
                      "scores": np.array([[0.9], [0.8]], np.float32), "classes": np.array([[0], [0]], np.int64)})
    labels = LabelFile("detection", "/cam/image_raw", ("red", "blue"), (
        FrameLabel(index=0, stamp_ns=1_000_000_000, boxes=(LabelBox(10, 5, 30, 25, "red"),)),
        FrameLabel(index=1, stamp_ns=1_100_000_000, boxes=(LabelBox(40, 10, 70, 50, "blue"),))))
    back = task.codec.from_messages(_round_trip(tmp_path, task, frames))
    scores, info = task.scorer.score(back, ResolvedLabels(labels, tmp_path / "l.json", False), frames)
    assert scores.value == pytest.approx(0.5) and scores.n == 2 and info["matched"] == 2
    assert scores.to_json()["per_class_ap50"] == {"red": pytest.approx(1.0), "blue": pytest.approx(0.0)}


def test_eval_bag_decodes_detections_through_the_runtime_entry_the_node_uses():
    """A class id beyond the model's classes fails with the runtime decoder's error naming the field, as in
    the node (eval-bag's own decoding used to index past the class names silently)."""
    task = task_for("detection", ("red", "blue"), OutputOptions(detection_threshold=0.3))
    frames = _Frames({"boxes": np.array([[[10, 5, 30, 25]], [[40, 10, 70, 50]]], np.float32),
                      "scores": np.array([[0.9], [0.8]], np.float32), "classes": np.array([[0], [5]], np.int64)})
    with pytest.raises(ValueError, match="output 'classes' holds class id 5; its metadata field 'dann_ros.classes' "
                                         "names 2 classes"):
        _predictions(task, frames)
