"""The Predictor on real backends: .pt and .onnx agree, bad input and bad model files fail clearly."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dann_ros.data.preprocess import Preprocess
from dann_ros.runtime.backends import ModelLoadError
from dann_ros.runtime.predictor import Predictor

SIZES = [(28, 28), (480, 640), (37, 91), (120, 50), (9, 9)]


def camera_like(height: int, width: int, digit: int, seed: int) -> np.ndarray:
    """A digit on a gradient + texture + noise background, roughly what a camera crop looks like."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    grad = (xx / max(width - 1, 1))[..., None] * rng.uniform(-60, 60, 3)
    image = np.clip(base + grad + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    colour = tuple(float(c) for c in (255 - base))
    scale = min(height, width) / 30
    cv2.putText(image, str(digit), (int(width * 0.3), int(height * 0.75)), cv2.FONT_HERSHEY_SIMPLEX,
                max(scale, 0.3), colour, max(1, int(scale * 2)))
    return cv2.GaussianBlur(image, (3, 3), 0)


@pytest.fixture(scope="module")
def predictors(tiny_checkpoint, tiny_onnx):
    pt = Predictor.load(tiny_checkpoint, backend="torch", device="cpu")
    ox = Predictor.load(tiny_onnx, backend="onnxruntime", device="cpu")
    return pt, ox


def test_pt_and_onnx_give_the_same_scores(predictors):
    pt, ox = predictors
    assert pt.backend.name == "torch-cpu" and ox.backend.name == "onnxruntime-cpu"
    assert pt.info.classes == ox.info.classes and pt.info.preprocess == ox.info.preprocess
    images = [camera_like(h, w, i % 10, i) for i, (h, w) in enumerate(SIZES)]
    a, b = pt.predict_batch(images), ox.predict_batch(images)
    assert len(a) == len(b) == len(images)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-5)
        assert x.class_id == y.class_id and x.class_name == pt.classes[x.class_id]
        assert x.domain_score == pytest.approx(y.domain_score, abs=1e-5)
        assert x.scores.sum() == pytest.approx(1.0, abs=1e-5)
    single = ox.predict(images[1])
    np.testing.assert_allclose(single.scores, b[1].scores, atol=1e-6)
    assert pt.predict_batch([]) == []


def test_grey_input_is_accepted(predictors):
    _, ox = predictors
    rgb = camera_like(60, 80, 3, 0)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = ox.predict(grey)
    expected = ox.predict(np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_allclose(out.scores, expected.scores, atol=1e-6)


@pytest.mark.parametrize("image, problem", [
    (np.zeros((28, 28, 3), np.float32), "dtype float32"),
    (np.zeros((28, 28, 4), np.uint8), r"\(28, 28, 4\)"),
    (np.zeros((28, 28, 1), np.uint8), r"\(28, 28, 1\)"),
    (np.zeros((2, 28, 28, 3), np.uint8), r"\(2, 28, 28, 3\)"),
    (np.zeros((28,), np.uint8), r"\(28,\)"),
    (np.zeros((0, 28, 3), np.uint8), "empty"),
])
def test_bad_images_raise_value_error(predictors, image, problem):
    _, ox = predictors
    with pytest.raises(ValueError, match=problem):
        ox.predict(image)


def test_bad_prepared_batch_raises_value_error(predictors):
    _, ox = predictors
    with pytest.raises(ValueError, match=r"\(N, 3, 28, 28\)"):
        ox.run_prepared(np.zeros((1, 1, 28, 28), np.uint8))


@pytest.mark.parametrize("name", ["missing.onnx", "missing.pt"])
def test_missing_model_file(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ModelLoadError, match="not found") as err:
        Predictor.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["garbage.onnx", "garbage.pt"])
def test_corrupt_model_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00\xffnot a model\x13\x37" * 50)
    with pytest.raises(ModelLoadError) as err:
        Predictor.load(path, backend="torch" if name.endswith(".pt") else "onnxruntime")
    assert str(path) in str(err.value)


def test_onnx_without_dann_ros_metadata(tmp_path):
    path = tmp_path / "plain.onnx"
    weight = helper.make_tensor("w", TensorProto.FLOAT, (4, 3, 3, 3), np.zeros(108, np.float32))
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["scores"])], "plain",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, (1, 3, 16, 16))],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, (1, 4, 14, 14))], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelLoadError, match="'dann_ros.schema' is missing") as err:
        Predictor.load(path, backend="onnxruntime")
    assert str(path) in str(err.value)


def test_incompatible_schema(tiny_onnx, tmp_path):
    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key == "dann_ros.schema":
            prop.value = "dann_ros.model/99"
    path = tmp_path / "future.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match=r"'dann_ros.schema' is 'dann_ros.model/99'") as err:
        Predictor.load(path, backend="onnxruntime")
    assert str(path) in str(err.value)


def test_predictor_load_of_copied_onnx_reads_its_own_metadata(tiny_onnx, tmp_path):
    copy = tmp_path / "copy.onnx"
    shutil.copy(tiny_onnx, copy)
    p = Predictor.load(copy, backend="onnxruntime", warmup=False)
    assert p.classes == tuple(str(i) for i in range(10)) and p.info.has_domain


def _bright_box(image: np.ndarray, threshold: int = 128) -> np.ndarray:
    ys, xs = np.nonzero(image.max(axis=-1 if image.ndim == 3 else 0) > threshold)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)


@pytest.mark.parametrize("policy, size, box", [
    ("letterbox", (48, 160), (100, 10, 140, 40)),   # wide frame: bars above and below
    ("letterbox", (200, 60), (10, 120, 50, 180)),   # tall frame: bars left and right
    ("center_crop", (48, 160), (60, 8, 100, 40)),   # box inside the kept middle
    ("center_crop", (200, 60), (10, 80, 50, 120)),
    ("stretch", (48, 160), (100, 10, 140, 40)),
])
def test_geometry_maps_boxes_back(policy, size, box):
    """A white rectangle found in the network image lands back on itself in input pixels."""
    pre = Preprocess(height=64, width=64, resize=policy)
    h, w = size
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    net, geometry = pre.prepare(image)
    assert net.shape == (3, 64, 64)
    back = geometry.to_image(_bright_box(net.transpose(1, 2, 0)))
    tolerance = 1.5 / min(geometry.scale_x, geometry.scale_y)  # a network pixel, plus resampling blur
    np.testing.assert_allclose(back[0], box, atol=tolerance)
    # and the forward mapping of the geometry agrees with where the box ended up
    scale = np.array([geometry.scale_x, geometry.scale_y] * 2, np.float32)
    offset = np.array([geometry.offset_x, geometry.offset_y] * 2, np.float32)
    net_box = np.array(box, np.float32) * scale + offset
    np.testing.assert_allclose(geometry.to_image(net_box[None])[0], box, atol=1e-3)
