"""The one task registry: every task has an entry in each layer's TaskRegistry, and a new task (a toy
keypoint task, defined only here) needs a TaskSpec and those entries, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from dann_ros.data.tasks import LAYERS, REGISTRIES, TASK_SPECS, TaskSpec, missing_entries
from dann_ros.evaluation.tasks.base import EvalEntry

# each layer's registry (the modules dann_ros.data.tasks' docstring names), and what every entry offers
LAYER_MODULES = {"model": "dann_ros.model.tasks", "train": "dann_ros.train.tasks", "export": "dann_ros.export.parity",
                 "runtime": "dann_ros.runtime.tasks", "ros": "dann_ros.ros.outputs",
                 "evaluation": "dann_ros.evaluation.tasks"}
SHAPES = {"model": ("build", "deployed", "self_training", "feature_map"),
          "train": ("source_store", "eval_target_store", "targets", "evaluate"),
          "export": ("__call__",),
          "runtime": ("decode", "heatmap_head"),
          "ros": ("configured", "infer", "to_message", "draw"),
          "evaluation": ("scorer", "codec", "section")}
# the evaluation entry's three parts (dann_ros.evaluation.tasks.base), and what each offers
EVALUATION_PARTS = {"scorer": ("score", "summary", "evaluate_labelled_bag"),
                    "codec": ("options_json", "predictions", "write", "from_messages"),
                    "section": ("figures", "html", "summary_line")}


def _import_layers() -> None:
    import importlib

    for module in LAYER_MODULES.values():
        importlib.import_module(module)


def test_every_registered_task_has_an_entry_of_its_layers_shape_in_every_layer():
    _import_layers()
    assert tuple(LAYER_MODULES) == LAYERS and set(REGISTRIES) == set(LAYERS)
    assert missing_entries() == []
    for layer, registry in REGISTRIES.items():
        assert set(registry) == set(TASK_SPECS), layer
        for name in TASK_SPECS:
            entry = registry[name]  # a module string resolves here
            assert [a for a in SHAPES[layer] if not hasattr(entry, a)] == [], f"{name}/{layer}: {entry}"
            if layer == "evaluation":
                for part, methods in EVALUATION_PARTS.items():
                    cls = getattr(entry, part)
                    assert [m for m in methods if not hasattr(cls, m)] == [], f"{name}/evaluation.{part}: {cls}"


def test_a_task_without_an_entry_is_named(monkeypatch):
    _import_layers()
    monkeypatch.setitem(TASK_SPECS, "keypoints", KEYPOINTS)
    assert missing_entries() == [f"keypoints/{layer}" for layer in LAYERS]
    from dann_ros.runtime.tasks import TASKS

    with pytest.raises(ValueError, match="task 'keypoints' has no runtime entry; runtime supports classification, "
                                         "detection"):
        TASKS["keypoints"]
    with pytest.raises(ValueError, match="unknown task 'segmentation'; dann_ros supports classification, detection"):
        TASKS["segmentation"]


# ---------------------------------------------------------------------------------------------- a toy task
KEYPOINTS = TaskSpec("keypoints", "pck", "PCK", "keypoints within 5 px",
                     "vision_msgs/msg/Detection2DArray", ("points", "scores"), label_payload="boxes",
                     class_scores_per_image=False, source_crops=False)


class ToyModel:
    feature_map = False

    @staticmethod
    def build(cfg, num_classes, preprocess):
        from torch import nn

        model = nn.Linear(4, num_classes)
        model.task, model.feature_dim = "keypoints", 4
        return model

    @staticmethod
    def deployed(model, discriminator=None):
        return ("deployed", model, discriminator)

    @staticmethod
    def self_training(model, threshold, ema_decay, mask_ratio, mask_block, view):
        return ("self-training", model, threshold)


class ToyTraining:
    def source_store(self, cfg, progress): ...

    def eval_target_store(self, cfg, classes): ...

    def targets(self, model, source, device): ...

    def evaluate(self, model, source_val, eval_target, target_frames, device, classes, budget_mb=0): ...


def toy_parity(ref, got, n, origin, box_tolerance, peak_px=0.0):
    return ("parity", n, origin)


class ToyRuntime:
    heatmap_head = False

    @staticmethod
    def decode(outputs, classes, geometries=None, image_sizes=None, score_threshold=0.3):
        return [("points", classes[int(i)]) for i in outputs["scores"].argmax(1)]


class ToyOutput:
    topic = "keypoints"

    def __init__(self, classes, threshold):
        self.classes, self.threshold = tuple(classes), threshold

    @classmethod
    def configured(cls, classes, top_k, detection_threshold):
        return cls(classes, detection_threshold)

    def infer(self, predictor, batch, geometries, image_sizes):
        return predictor.infer(batch, geometries, image_sizes, self.threshold)

    def to_message(self, result, header): ...

    def draw(self, image, result, geometry): ...


class ToyPart:
    def __init__(self, classes, options):
        self.classes, self.options = classes, options


class ToyScorer(ToyPart):
    def score(self, pred, labels, frames): ...

    def summary(self, pred): ...

    @staticmethod
    def evaluate_labelled_bag(predictor, bag, labels, topics): ...


class ToyCodec(ToyPart):
    def options_json(self):
        return {"detection_threshold": self.options.detection_threshold}

    def predictions(self, decode, frames): ...

    def write(self, writer, topic, row, log_ns, frames, pred): ...

    def from_messages(self, messages): ...


class ToySection(ToyPart):
    def figures(self, pred, scores, label_info): ...

    def html(self, page, report, figures): ...

    def summary_line(self, report, what="labelled frames"): ...


TOY_ENTRIES = {"model": ToyModel, "train": f"{__name__}:ToyTraining", "export": toy_parity, "runtime": ToyRuntime,
               "ros": ToyOutput, "evaluation": EvalEntry(ToyScorer, ToyCodec, ToySection)}


@pytest.fixture
def keypoints(monkeypatch):
    """The toy task registered in-process: its TaskSpec and one entry per layer, gone after the test."""
    _import_layers()
    monkeypatch.setitem(TASK_SPECS, "keypoints", KEYPOINTS)
    for layer, entry in TOY_ENTRIES.items():
        REGISTRIES[layer].register("keypoints", entry)
    yield
    for layer in TOY_ENTRIES:
        REGISTRIES[layer].unregister("keypoints")


def _config(tmp_path, **changes):
    from dann_ros.typed_config import from_dict
    from dann_ros.train.config import TrainConfig

    data = {"task": "keypoints", "output_dir": str(tmp_path / "run"), "classes": ["nose", "tail"],
            "source": {"replicator": str(tmp_path / "synth")}, "target": {"bags": [str(tmp_path / "bag")]},
            "selection": "source_val", **changes}
    return from_dict(TrainConfig, data)


def test_a_toy_task_needs_entries_only_in_the_registries(keypoints, tmp_path, tiny_onnx):
    import dataclasses

    from dann_ros.data.labels import LabelFile
    from dann_ros.data.preprocess import Preprocess
    from dann_ros.evaluation.tasks import OutputOptions, task_for
    from dann_ros.export.metadata import ModelInfo
    from dann_ros.export.parity import compare
    from dann_ros.model.builders import build_discriminator, build_model
    from dann_ros.model.discriminator import DomainDiscriminator
    from dann_ros.model.tasks import build_pseudo_label_loss, deploy
    from dann_ros.ros.outputs import handler_for
    from dann_ros.runtime.predictor import Predictor
    from dann_ros.train.tasks import train_task

    assert missing_entries() == []
    # the config validates by the spec's capabilities: no class scores per image, no boxes... of its own
    cfg = _config(tmp_path)
    assert cfg.task == "keypoints"
    with pytest.raises(ValueError, match="selection im scores class probabilities"):
        _config(tmp_path, selection="im")
    with pytest.raises(ValueError, match="adaptation.method cdan"):
        _config(tmp_path, adaptation={"method": "cdan"})
    # labels: the spec's payload
    labels = LabelFile("keypoints", "/cam/image_raw", ("nose", "tail"), ())
    assert LabelFile.from_dict(labels.to_dict()) == labels
    # model layer: build, deploy, self-training and the discriminator's input, each through the entry
    model = build_model(cfg.model, "keypoints", 2, Preprocess())
    assert model.task == "keypoints" and model.out_features == 2
    assert deploy(model)[:2] == ("deployed", model)
    assert build_pseudo_label_loss(model, 0.9, 0.99) == ("self-training", model, 0.9)
    disc = build_discriminator(cfg.model, model)  # a feature vector (feature_map False), not a map
    assert type(disc) is DomainDiscriminator and disc[0].in_features == 4
    # train, export
    task = train_task("keypoints")
    assert isinstance(task, ToyTraining) and task.spec is KEYPOINTS
    assert compare([np.zeros((3, 2))], [np.zeros((3, 2))], "keypoints", "onnx", 0.05) == ("parity", 3, "onnx")
    # runtime: Predictor.infer on a real ONNX Runtime session decodes through the toy entry
    predictor = Predictor.load(tiny_onnx, backend="onnxruntime", warmup=False)
    predictor.info = dataclasses.replace(predictor.info, task="keypoints", classes=tuple("abcdefghij"))
    batch = np.zeros((2, *predictor.preprocess.input_shape), np.uint8)
    results = predictor.infer(batch, [None, None])
    assert len(results) == 2 and all(kind == "points" and name in "abcdefghij" for kind, name in results)
    # ros: the node's handler, whose infer is the Predictor's
    handler = handler_for(predictor.info, detection_threshold=0.4)
    assert isinstance(handler, ToyOutput) and handler.threshold == 0.4
    assert handler.infer(predictor, batch, [None, None], [(28, 28)] * 2) == results
    # evaluation
    task = task_for("keypoints", ("nose",), OutputOptions(detection_threshold=0.2))
    assert task.spec is KEYPOINTS and task.classes == ("nose",)
    assert (type(task.scorer), type(task.codec), type(task.section)) == (ToyScorer, ToyCodec, ToySection)
    assert task.codec.options_json() == {"detection_threshold": 0.2}
    assert ModelInfo("keypoints", ("nose",), Preprocess(), "d", "0").output_names == ["points", "scores"]
