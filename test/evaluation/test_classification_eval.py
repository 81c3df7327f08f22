"""`dann-ros eval`: ImageFolder and labelled-bag accuracy, same numbers from checkpoint and ONNX."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dann_ros.cli import main
from dann_ros.data.make_bag import write_labelled_bag
from dann_ros.evaluation.accuracy import evaluate_image_folder, evaluate_labelled_bag
from dann_ros.runtime.predictor import Predictor


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3), dtype=np.uint8)
            for _ in range(n)]


def test_image_folder_json_matches_predictor(tiny_onnx, tmp_path):
    root = tmp_path / "folder"
    images = _images(12)
    names = ["3", "7", "7"]
    for i, image in enumerate(images):
        cls = root / names[i % 3]
        cls.mkdir(parents=True, exist_ok=True)
        grey = i % 4 == 0  # grey and colour files alike
        cv2.imwrite(str(cls / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if grey else image[:, :, ::-1])
    out = tmp_path / "acc.json"
    assert main(["eval", "--model", str(tiny_onnx), "--images", str(root), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"accuracy", "n", "per_class"} and result["n"] == 12
    predictor = Predictor.load(tiny_onnx)
    expected = []
    for path in sorted(p for p in root.rglob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
        expected.append(predictor.predict(np.ascontiguousarray(image)).class_name == path.parent.name)
    assert result["accuracy"] == pytest.approx(np.mean(expected))
    assert result["per_class"]["7"]["n"] == 8 and result["per_class"]["0"]["n"] == 0


def test_checkpoint_and_onnx_give_the_same_bag_accuracy(tiny_checkpoint, tiny_onnx, tmp_path):
    images = _images(40, seed=1)
    labels = [str(i % 10) for i in range(40)]
    bag = tmp_path / "bag"
    write_labelled_bag(bag, images, labels, classes=[str(i) for i in range(10)])
    a = evaluate_labelled_bag(Predictor.load(tiny_checkpoint), bag, f"{bag}.labels.json")
    b = evaluate_labelled_bag(Predictor.load(tiny_onnx), bag, f"{bag}.labels.json")
    assert a.n == b.n == 40
    assert abs(a.accuracy - b.accuracy) <= 0.002


def test_missing_folder_is_a_clear_error(tiny_onnx, tmp_path, capsys):
    assert main(["eval", "--model", str(tiny_onnx), "--images", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_empty_folder(tiny_onnx, tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        evaluate_image_folder(Predictor.load(tiny_onnx), tmp_path)


def test_bag_accuracy_is_streamed_by_a_memory_budget_and_keeps_no_frames(tiny_onnx, tmp_path, monkeypatch):
    """A labelled bag goes through a temporary frame store (deleted afterwards), read as many frames a
    batch as the memory budget pays for; a smaller budget gives the same report in smaller batches."""
    import tempfile

    from dann_ros.data.frame_store import runtime_frame_bytes

    bag = tmp_path / "bag"
    write_labelled_bag(bag, _images(20, seed=2), [str(i % 10) for i in range(20)], classes=[str(i) for i in range(10)])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    predictor = Predictor.load(tiny_onnx)
    batches: list[int] = []
    run = predictor.run_prepared
    monkeypatch.setattr(predictor, "run_prepared", lambda images: batches.append(len(images)) or run(images))
    full = evaluate_labelled_bag(predictor, bag, f"{bag}.labels.json")
    assert batches == [20]
    batches.clear()
    budget = 4 * runtime_frame_bytes(predictor.preprocess.input_shape) / 2**20
    small = evaluate_labelled_bag(predictor, bag, f"{bag}.labels.json", memory_mb=budget)
    assert batches == [4] * 5 and small.to_json() == full.to_json() and small.n == 20
    assert not list((tmp_path / "tmp").iterdir()), "the temporary frame store is deleted"


def test_a_cut_jpeg_in_an_image_folder_is_skipped_and_counted(tiny_onnx, tmp_path):
    """The folder is read with the one image-file reader (dann_ros.data.replicator.read_rgb): a JPEG cut
    short is refused, not decoded with grey rows where its data stopped and scored."""
    (tmp_path / "3").mkdir()
    ok, data = cv2.imencode(".jpg", _images(1)[0][:, :, ::-1])
    (tmp_path / "3" / "whole.jpg").write_bytes(data.tobytes())
    (tmp_path / "3" / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])
    report = evaluate_image_folder(Predictor.load(tiny_onnx), tmp_path)
    assert (report.n, report.skipped) == (1, 1)
