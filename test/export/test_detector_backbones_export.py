"""Each detector backbone and neck exports to one plain ONNX graph (decode inside) that ONNX Runtime
runs like PyTorch; a checkpoint trained from a weights file loads where that file is gone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision

from dann_ros.data.preprocess import Preprocess
from dann_ros.export.checkpoint_model import load_model
from dann_ros.export.onnx_export import export_onnx
from dann_ros.model.builders import build_discriminator, build_model
from dann_ros.model.config import ModelConfig
from dann_ros.train.checkpoint import model_state, save_atomic

pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export",
                                        "ignore:The feature will be removed", "ignore::torch.jit.TracerWarning")

PRE = Preprocess(height=32, width=48, resize="letterbox")
CLASSES = tuple(str(i) for i in range(10))


def _checkpoint(path, cfg: ModelConfig):
    torch.manual_seed(0)
    model = build_model(cfg, "detection", len(CLASSES), PRE).eval()
    with torch.no_grad():  # spread the scores as training does: an untrained head ties at sigmoid(-2.19)
        model.heatmap[-1].weight.normal_(0.0, 3.0)
    disc = build_discriminator(cfg, model).eval()
    save_atomic(model_state(model, disc, task="detection", classes=CLASSES, preprocess=PRE, model_config=cfg,
                            digest="test", step=0), path)
    return path


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18", "mobilenet_v3_small", "mobilenet_v3_large"])
def test_fpn_detector_export_parity(backbone, tmp_path):
    cfg = ModelConfig(backbone=backbone, neck="fpn", fpn_strides=(4, 8, 16), discriminator_hidden=16)
    ckpt = _checkpoint(tmp_path / "model.pt", cfg)
    out = tmp_path / "det.onnx"
    info, parity = export_onnx(ckpt, out)  # raises ExportParityError beyond the "onnx" tolerances
    assert parity.frames == 64 and parity.top1_agreement == 1.0
    assert parity.max_abs_diff <= 1e-3 and parity.max_box_diff <= 0.05
    graph = onnx.load(str(out)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}  # standard operators only: no plugins
    ops = {n.op_type for n in graph.node}
    assert {"Resize", "TopK", "MaxPool"} <= ops and not ops & {"NonMaxSuppression", "NonZero", "Loop"}
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).uniform(0, 255, (3, 3, 32, 48)).astype(np.float32)
    boxes, scores, classes, domain = sess.run(None, {"images": x})
    assert boxes.shape == (3, 100, 4) and scores.shape == classes.shape == (3, 100) and domain.shape == (3,)
    module, _ = load_model(ckpt)
    with torch.inference_mode():
        ref = module(torch.from_numpy(x))
    np.testing.assert_allclose(scores, ref[1].numpy(), atol=1e-4)


def test_checkpoint_loads_without_the_pretrained_file(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    cfg = ModelConfig(backbone="resnet18", neck="fpn", backbone_weights=weights, discriminator_hidden=16)
    ckpt = _checkpoint(tmp_path / "model.pt", cfg)
    weights.unlink()  # the robot has the checkpoint, not the training machine's weight file
    module, info = load_model(ckpt)
    assert info.task == "detection" and module.model.neck.stride == 4
    assert torch.equal(module.model.backbone.body[0].weight, torch.load(ckpt, weights_only=True)["model"]
                       ["backbone.body.0.weight"])
