import json
from types import SimpleNamespace

import numpy as np
import pytest

from dann_ros.data.labels import FORMAT, FrameLabel, LabelBox, LabelError, LabelFile, default_labels_path

T0 = 1_700_000_000_000_000_000


def classification():
    return LabelFile("classification", "/cam", ("cat", "dog"),
                     tuple(FrameLabel(index=i, stamp_ns=T0 + i * 100, label="cat" if i % 2 else "dog")
                           for i in range(4)),
                     source={"made_by": "test"})


def detection():
    box = LabelBox(1.0, 2.0, 10.5, 12.0, "dog")
    return LabelFile("detection", "/cam", ("cat", "dog"),
                     (FrameLabel(index=0, stamp_ns=T0, boxes=(box, LabelBox(0, 0, 3, 3, "cat"))),
                      FrameLabel(index=1, stamp_ns=T0 + 100, boxes=())))


def frameset(stamps, indices, topic="/cam"):
    return SimpleNamespace(stamps_ns=np.asarray(stamps, np.int64), indices=np.asarray(indices, np.int64),
                           topics=np.asarray([topic] * len(stamps)))


@pytest.mark.parametrize("make", [classification, detection])
def test_save_load_round_trip(tmp_path, make):
    labels = make()
    path = labels.save(tmp_path / "bag.labels.json")
    assert LabelFile.load(path) == labels
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["task"] == labels.task
    if labels.task == "detection":
        assert data["frames"][0]["boxes"][0] == {"x_min": 1.0, "y_min": 2.0, "x_max": 10.5, "y_max": 12.0,
                                                 "class": "dog"}


def valid_dict():
    return classification().to_dict()


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("format"), r": format: missing"),
    (lambda d: d.update(format="labels/2"), r": format: expected 'dann_ros.labels/1'"),
    (lambda d: d.update(task="segmentation"), r": task: expected one of"),
    (lambda d: d.update(topic="cam"), r": topic: expected a topic name"),
    (lambda d: d.update(classes=["a", "a"]), r": classes: duplicate"),
    (lambda d: d.update(extra=1), r": extra: unknown key"),
    (lambda d: d["frames"][2].update(label="cow"), r": frames\[2\]\.label: 'cow' is not one of classes"),
    (lambda d: d["frames"][1].pop("label"), r": frames\[1\]\.label: missing"),
    (lambda d: d["frames"][1].update(stamp_ns=-5), r": frames\[1\]\.stamp_ns: expected a non-negative integer"),
    (lambda d: d["frames"][3].update(stamp_ns=T0), r": frames\[3\]\.stamp_ns: .* repeats frames\[0\]\.stamp_ns"),
    (lambda d: d["frames"][3].update(index=True), r": frames\[3\]\.index: expected a non-negative integer"),
    (lambda d: [d["frames"][0].pop(k) for k in ("index", "stamp_ns")], r": frames\[0\]: needs stamp_ns or index"),
    (lambda d: d["frames"][0].update(lable="cat"), r": frames\[0\]\.lable: unknown key"),
])
def test_validation_errors_name_the_file_and_field(tmp_path, edit, message):
    data = valid_dict()
    edit(data)
    path = tmp_path / "x.labels.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LabelError, match=r"x\.labels\.json" + message):
        LabelFile.load(path)


@pytest.mark.parametrize("box,message", [
    ({"x_min": 5, "y_min": 0, "x_max": 5, "y_max": 3, "class": "dog"}, r"boxes\[0\]: needs x_max > x_min"),
    ({"x_min": 0, "y_min": 0, "x_max": "5", "y_max": 3, "class": "dog"}, r"boxes\[0\]\.x_max: expected a finite"),
    ({"x_min": 0, "y_min": 0, "x_max": 5, "y_max": 3, "class": "cow"}, r"boxes\[0\]\.class: 'cow'"),
    ({"x_min": 0, "y_min": 0, "x_max": 5, "y_max": 3}, r"boxes\[0\]\.class: missing"),
])
def test_detection_box_validation(box, message):
    data = detection().to_dict()
    data["frames"][1]["boxes"] = [box]
    with pytest.raises(LabelError, match=r"<dict>: frames\[1\]\." + message):
        LabelFile.from_dict(data)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.labels.json"
    path.write_text("{not json")
    with pytest.raises(LabelError, match="broken.labels.json: not valid JSON"):
        LabelFile.load(path)
    path.write_text("[" * 100_000 + "]" * 100_000)  # nested deeper than json can: was a RecursionError
    with pytest.raises(LabelError, match="broken.labels.json: not valid JSON"):
        LabelFile.load(path)
    with pytest.raises(FileNotFoundError, match="label file not found"):
        LabelFile.load(tmp_path / "missing.json")


def test_lookup_by_stamp_then_index():
    labels = classification()
    assert labels.lookup(stamp_ns=T0 + 100).label == "cat"
    assert labels.lookup(stamp_ns=123, index=2).index == 2
    assert labels.lookup(stamp_ns=123) is None


def test_match_classification():
    labels = classification()
    # frames 0..3 by stamp (one with a changed stamp -> index fallback), plus a frame without any label
    frames = frameset([T0, T0 + 100, T0 + 999, T0 + 300, T0 + 400], [0, 1, 2, 3, 4])
    m = labels.match(frames)
    assert m.class_ids.tolist() == [1, 0, 1, 0, -1]
    assert (m.unmatched, m.by_index) == (1, 1) and m.matched.tolist() == [True] * 4 + [False]
    assert labels.match(frames, match_on="stamp").class_ids.tolist() == [1, 0, -1, 0, -1]


def test_match_other_recording_or_topic_is_an_error():
    labels = classification()
    with pytest.raises(LabelError, match=r"none of the 3 frame stamps on /cam .* occurs in the label file"):
        labels.match(frameset([1, 2, 3], [0, 1, 2]))
    m = labels.match(frameset([1, 2, 3], [0, 1, 2]), match_on="index")  # a restamped copy of the recording
    assert m.class_ids.tolist() == [1, 0, 1] and m.by_index == 3
    with pytest.raises(LabelError, match=r"label topic '/cam' is not among the frames' topics \['/other'\]"):
        labels.match(frameset([T0], [0], topic="/other"))
    with pytest.raises(LabelError, match="no frame on /cam matches"):
        labels.match(frameset([1], [99]), match_on="index")


def test_match_detection():
    m = detection().match(frameset([T0 + 100, T0, T0 + 5], [1, 0, 7]))
    assert m.class_ids is None and m.unmatched == 1
    assert m.boxes[0].shape == (0, 4) and m.boxes[2].shape == (0, 4)
    np.testing.assert_allclose(m.boxes[1], [[1, 2, 10.5, 12], [0, 0, 3, 3]])
    assert m.box_class_ids[1].tolist() == [1, 0]


def test_default_labels_path(tmp_path):
    bag = tmp_path / "real_digits_test"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("x")
    (bag / "real_digits_test.mcap").write_bytes(b"")
    assert default_labels_path(bag) == tmp_path / "real_digits_test.labels.json"
    assert default_labels_path(bag / "real_digits_test.mcap") == tmp_path / "real_digits_test.labels.json"
    assert default_labels_path(tmp_path / "lone.db3") == tmp_path / "lone.labels.json"
