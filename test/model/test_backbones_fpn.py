"""Detector backbones by name with a feature pyramid neck, and torchvision weight files loaded from disk."""

from __future__ import annotations

import pytest
import torch
import torchvision

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.backbones import build_backbone
from dann_ros.model.builders import build_classifier
from dann_ros.model.config import ModelConfig
from dann_ros.model.detector import build_detector
from dann_ros.model.fpn import FeaturePyramidNeck

PRE = Preprocess(32, 48, "rgb", resize="letterbox")  # stride 4: 8 x 12 cells


@pytest.mark.parametrize("backbone, taps", [("small_cnn", 1), ("lenet", 1), ("resnet18", 3),
                                            ("mobilenet_v3_small", 3), ("mobilenet_v3_large", 3)])
def test_fpn_detector_builds_for_each_backbone(backbone, taps):
    torch.manual_seed(0)
    model = build_detector(ModelConfig(backbone=backbone, neck="fpn", fpn_strides=(4, 8, 16)), 10, PRE)
    assert isinstance(model.neck, FeaturePyramidNeck) and len(model.neck.taps) == taps
    assert len(model.neck.extra) == 3 - taps  # levels the backbone lacks are made by stride-2 blocks
    assert model.stride == 4 and model.output_hw == (8, 12) and model.feature_channels == 64
    x = torch.rand(2, *PRE.input_shape) * 255
    f, out = model.forward_train(x)
    assert f.shape == (2, 64, 8, 12) and out["heatmap"].shape == (2, 10, 8, 12)
    # every pyramid level reaches the output: the coarsest lateral conv gets a gradient
    out["heatmap"].sum().backward()
    assert model.neck.lateral[-1].weight.grad.abs().sum() > 0
    boxes, scores, classes = model.eval()(x)
    assert boxes.shape == (2, 100, 4) and (scores[:, :-1] >= scores[:, 1:]).all()


def test_batchnorm_statistics_follow_a_short_schedule():
    backbone = build_backbone("mobilenet_v3_small", 3, dense=True)  # torchvision builds it with momentum 0.01
    momenta = {m.momentum for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}


def test_fpn_truncates_what_no_level_reads():
    model = build_detector(ModelConfig(backbone="resnet18", neck="fpn", fpn_strides=(8, 16)), 10, PRE)
    assert model.stride == 8 and model.output_hw == (4, 6)
    assert len(model.backbone.body) == 7  # conv1 bn1 relu maxpool layer1 layer2 layer3: layer4 dropped
    assert not any(k.startswith("backbone.body.7.") for k in model.state_dict())


def test_conv_neck_is_unchanged_by_default():
    model = build_detector(ModelConfig(), 10, PRE)
    assert isinstance(model.neck, torch.nn.Sequential) and model.stride == 4
    assert "neck.0.weight" in model.state_dict()  # checkpoints of the conv neck keep their keys


@pytest.mark.parametrize("strides", [(3, 6), (4, 16), (8, 4), ()])
def test_fpn_strides_are_validated(strides):
    with pytest.raises(ValueError, match="model.fpn_strides"):
        ModelConfig(neck="fpn", fpn_strides=strides)


def test_fpn_must_start_at_a_backbone_map():
    with pytest.raises(ValueError, match=r"no map at stride 8 \(it has \[1, 2, 4\]\)"):  # small_cnn stops at 4
        build_detector(ModelConfig(neck="fpn", fpn_strides=(8, 16, 32)), 10, PRE)


def test_fpn_is_a_detection_neck():
    with pytest.raises(ValueError, match="detection neck"):
        build_classifier(ModelConfig(neck="fpn"), 10, Preprocess())


# ---------------------------------------------------------------------- weight files

def _torchvision_file(tmp_path, name: str, **kwargs):
    """A weights file as torchvision distributes them: torch.save(model.state_dict()), classifier included."""
    torch.manual_seed(1)
    net = torchvision.models.get_model(name, weights=None, **kwargs)
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_resnet18_weights_round_trip(tmp_path):
    path, state = _torchvision_file(tmp_path, "resnet18", num_classes=7)  # another head: ignored
    model = build_detector(ModelConfig(backbone="resnet18", neck="fpn", backbone_weights=path), 10, PRE)
    own = model.backbone.body.state_dict()
    # body = conv1 bn1 relu maxpool layer1 layer2 layer3 (truncated): torchvision's keys shifted by index
    assert torch.equal(own["0.weight"], state["conv1.weight"])
    assert torch.equal(own["1.running_var"], state["bn1.running_var"])
    assert torch.equal(own["4.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert torch.equal(own["6.1.bn2.bias"], state["layer3.1.bn2.bias"])
    fresh = build_detector(ModelConfig(backbone="resnet18", neck="fpn"), 10, PRE)
    assert not torch.equal(fresh.backbone.body.state_dict()["0.weight"], state["conv1.weight"])


def test_mobilenet_weights_round_trip(tmp_path):
    path, state = _torchvision_file(tmp_path, "mobilenet_v3_small")
    backbone = build_backbone("mobilenet_v3_small", 3, dense=True, weights_path=path)
    own = backbone.body.state_dict()
    assert torch.equal(own["0.0.weight"], state["features.0.0.weight"])
    assert all(torch.equal(own[k[len("features."):]], v) for k, v in state.items() if k.startswith("features."))


def test_grey_input_sums_the_pretrained_rgb_filters(tmp_path):
    path, state = _torchvision_file(tmp_path, "resnet18")
    backbone = build_backbone("resnet18", 1, dense=True, weights_path=path)
    torch.testing.assert_close(backbone.body[0].weight, state["conv1.weight"].sum(1, keepdim=True))


def test_wrong_weights_name_the_file_and_the_keys(tmp_path):
    path, _ = _torchvision_file(tmp_path, "resnet34")
    with pytest.raises(ValueError, match=r"resnet34\.pth does not match backbone 'resnet18'.*unexpected .*layer1\.2\."):
        build_backbone("resnet18", 3, weights_path=path)
    path, _ = _torchvision_file(tmp_path, "mobilenet_v3_large")
    with pytest.raises(ValueError, match=r"mobilenet_v3_large\.pth .*shape mismatch .*features\.\d+\..*: file \("):
        build_backbone("mobilenet_v3_small", 3, weights_path=path)


def test_unreadable_weights_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth does not exist"):
        build_backbone("resnet18", 3, weights_path=tmp_path / "nothing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth is not a readable state_dict"):
        build_backbone("resnet18", 3, weights_path=tmp_path / "junk.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth does not hold a state_dict"):
        build_backbone("resnet18", 3, weights_path=tmp_path / "list.pth")


def test_wrapped_and_ddp_state_dicts_load(tmp_path):
    path, state = _torchvision_file(tmp_path, "resnet18")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    backbone = build_backbone("resnet18", 3, weights_path=tmp_path / "ddp.pth")
    assert torch.equal(backbone.body[0].weight, state["conv1.weight"])
