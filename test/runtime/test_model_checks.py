"""A model file is untrusted input (issue 22): its metadata is bounded and held against its graph at load,
and the ONNX Runtime backend is named after what actually loaded (defect 8)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dann_ros.export.metadata import MAX_INPUT_PIXELS, MAX_INPUT_SIDE
from dann_ros.runtime import onnxruntime_backend
from dann_ros.runtime.backends import ModelLoadError, OnnxRuntimeBackend, open_backend
from dann_ros.runtime.predictor import Predictor


def with_metadata(source, tmp_path, name="model.onnx", **changes):
    """A copy of a real exported ONNX model with some dann_ros metadata fields rewritten."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    for field, value in changes.items():
        key = f"dann_ros.{field}"
        if key == "dann_ros.preprocess" and isinstance(value, dict):
            value = json.dumps({**json.loads(props[key]), **value})
        props[key] = value if isinstance(value, str) else json.dumps(value)
    onnx.helper.set_model_props(model, props)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"preprocess": {"height": 32, "width": 32}},
     r"'dann_ros.preprocess' declares the input \(N, C, H, W\) = \(N, 3, 32, 32\); the graph's input 'images' is "
     r"\['batch', 3, 28, 28\]"),
    ({"preprocess": {"channels": "grey", "mean": [0.5], "std": [0.5]}}, r"\(N, 1, 28, 28\); the graph's input"),
    ({"classes": [str(i) for i in range(9)]}, r"'dann_ros.classes' names 9 classes; the graph's output 'scores' is "
                                              r"\['batch', 10\]"),
    ({"outputs": ["scores", "domain", "feature_shift"]}, r"'dann_ros.outputs' names \['feature_shift'\], which the "
                                                         r"graph does not have"),
])
def test_classifier_metadata_disagreeing_with_its_graph_is_refused_at_load(tiny_onnx, tmp_path, changes, message):
    path = with_metadata(tiny_onnx, tmp_path, **changes)
    for load in (lambda: Predictor.load(path, backend="onnxruntime"), lambda: open_backend(path)):
        with pytest.raises(ModelLoadError, match=message) as err:
            load()
        assert str(path) in str(err.value)


def test_detector_class_names_are_held_against_its_heatmap(tiny_detector_onnx, tmp_path):
    path = with_metadata(tiny_detector_onnx, tmp_path, classes=["person", "cart"])
    with pytest.raises(ModelLoadError, match=r"'dann_ros.classes' names 2 classes; the graph's detection head has 10"):
        Predictor.load(path, backend="onnxruntime")
    assert onnxruntime_backend.detection_class_count(onnx.load(str(tiny_detector_onnx))) == 10
    assert Predictor.load(tiny_detector_onnx, backend="onnxruntime").classes == tuple(str(i) for i in range(10))


def test_a_class_id_without_a_name_is_a_clear_error(tiny_detector_onnx, tmp_path, monkeypatch):
    """Where the graph's class count cannot be read, the first detection of a nameless class says so."""
    monkeypatch.setattr(onnxruntime_backend, "detection_class_count", lambda model: None)
    path = with_metadata(tiny_detector_onnx, tmp_path, classes=["only"])
    predictor = Predictor.load(path, backend="onnxruntime")
    frames = np.random.default_rng(0).integers(0, 256, (4, 120, 160, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"output 'classes' holds class id [1-9]; its metadata field "
                                         r"'dann_ros.classes' names 1 classes"):
        predictor.detect_batch(list(frames), score_threshold=0.0)


@pytest.mark.parametrize("changes, message", [
    ({"preprocess": {"height": 100_000, "width": 100_000}}, "declares a 100000x100000 input, above the"),
    ({"preprocess": {"height": 16, "width": MAX_INPUT_SIDE + 8}}, f"declares a 16x{MAX_INPUT_SIDE + 8} input"),
    ({"preprocess": {"height": 4000, "width": 4000}}, f"above the {MAX_INPUT_PIXELS}-pixel"),
    ({"classes": '"0123456789"'}, "'dann_ros.classes' is not a list of 1 to"),  # a JSON string
    ({"classes": []}, "'dann_ros.classes' is not a list"),
    ({"outputs": {"scores": 1}}, "'dann_ros.outputs' is not a list of names"),
    ({"preprocess": {"height": "28"}}, "malformed dann_ros metadata"),
])
def test_metadata_out_of_bounds_is_refused_before_anything_is_allocated(tiny_onnx, tmp_path, changes, message):
    """The warm-up allocates a batch of the declared input: 100000 x 100000 would be 120 GB."""
    path = with_metadata(tiny_onnx, tmp_path, **changes)
    with pytest.raises(ModelLoadError, match=message) as err:
        Predictor.load(path, backend="onnxruntime")
    assert str(path) in str(err.value)


def _cuda_compiled_in_but_not_loading(monkeypatch):
    """An onnxruntime that lists the CUDA provider whose session nonetheless runs on the CPU: what a CUDA build
    does when the CUDA/cuDNN libraries fail to load (here: a real CPU-only session asked for CUDA)."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider; test_cuda_session_is_named_cuda covers it")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_a_session_that_fell_back_to_the_cpu_is_named_cpu(tiny_onnx, monkeypatch, caplog):
    _cuda_compiled_in_but_not_loading(monkeypatch)
    backend = OnnxRuntimeBackend(tiny_onnx)
    assert backend.session.get_providers() == ["CPUExecutionProvider"]
    assert backend.name == "onnxruntime-cpu" and backend.device == "cpu"
    assert "CUDA provider did not load; running on the CPU" in caplog.text


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_device_cuda_fails_when_cuda_did_not_load(tiny_onnx, monkeypatch):
    _cuda_compiled_in_but_not_loading(monkeypatch)
    for load in (lambda: OnnxRuntimeBackend(tiny_onnx, device="cuda"),
                 lambda: Predictor.load(tiny_onnx, backend="onnxruntime", device="cuda")):
        with pytest.raises(ModelLoadError, match=r"device=cuda, but onnxruntime's CUDA provider did not load "
                                                 r"\(the session runs on \['CPUExecutionProvider'\]"):
            load()


def test_device_cuda_without_a_cuda_provider_fails(tiny_onnx):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(ModelLoadError, match="onnxruntime has no CUDA provider here"):
        OnnxRuntimeBackend(tiny_onnx, device="cuda")
    assert OnnxRuntimeBackend(tiny_onnx).name == "onnxruntime-cpu"


@pytest.mark.gpu
def test_cuda_session_is_named_cuda(tiny_onnx):
    """On a GPU machine with onnxruntime-gpu: device=cuda runs on the CUDA provider, and says so."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (CPU-only build)")
    backend = OnnxRuntimeBackend(tiny_onnx, device="cuda")
    assert backend.session.get_providers()[0] == "CUDAExecutionProvider" and backend.name == "onnxruntime-cuda"
