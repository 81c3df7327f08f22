"""DA-Faster's instance-level alignment and consistency term on CenterNet features, against values
worked out by hand on a tiny batch (one channel, discriminators with fixed weights)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.adaptation.instance import InstanceAdversarialLoss, gather_centres, peak_indices
from dann_ros.model.builders import build_domain_loss, build_model
from dann_ros.model.config import ModelConfig


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


class _PixelLogit(nn.Module):
    """Image-level discriminator: logit = the feature itself at every location, (N, h*w)."""

    def forward(self, f):
        return f.flatten(1)


def _instance_disc(weight: float) -> nn.Linear:
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(weight)
        lin.bias.zero_()
    return lin.double()


# one source and one target image, 1 channel, 2 x 2 maps (flat cells 0 1 / 2 3)
F_S = [[0.0, 1.0], [2.0, 3.0]]
F_T = [[1.0, -1.0], [0.5, 0.0]]
TARGETS = {"indices": torch.tensor([[3, 0]]), "mask": torch.tensor([[1.0, 0.0]])}  # one object, centre cell 3
HEAT_S = [[0.1, 0.3], [0.2, 2.0]]  # source peak: cell 3 (the labelled object's centre, as a trained detector's)
HEAT_T = [[0.2, 3.0], [0.1, 0.4]]  # target peaks: cell 1 (3.0) first, cell 3 (0.4) is a local maximum too


def _case(coeff: float = 1.0, top_k: int = 1, consistency: bool = True):
    f_s = torch.tensor([[F_S]], dtype=torch.float64, requires_grad=True)
    f_t = torch.tensor([[F_T]], dtype=torch.float64, requires_grad=True)
    loss = InstanceAdversarialLoss(_PixelLogit(), _instance_disc(2.0), top_k=top_k, consistency=consistency)
    loss.coeff = coeff
    heat = torch.tensor([[HEAT_T, [[0.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)  # 2 classes
    heat_s = torch.tensor([[HEAT_S, [[0.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    out = loss(f_s, f_t, {"heatmap": heat_s}, {"heatmap": heat}, targets=TARGETS)
    return loss, f_s, f_t, out


def _value(t: torch.Tensor) -> float:
    return float(t.detach())


def test_parts_match_hand_computed_values():
    _, _, _, out = _case()
    assert set(out) == {"domain", "instance", "consistency"}
    # image level: 0.5 (mean_uv BCE(f_s, 1) + mean_uv BCE(f_t, 0)), BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    img = 0.5 * (sum(_softplus(-v) for v in (0, 1, 2, 3)) / 4 + sum(_softplus(v) for v in (1, -1, 0.5, 0)) / 4)
    assert _value(out["domain"]) == pytest.approx(img, abs=1e-7)
    # instances: source at its top peak cell 3 (feature 3 -> logit 6); target at its top peak cell 1 (-1 -> -2)
    ins = 0.5 * (_softplus(-6.0) + _softplus(-2.0))
    assert _value(out["instance"]) == pytest.approx(ins, abs=1e-7)
    # consistency: |mean_uv sigmoid(image logits) - sigmoid(instance logit)| per instance, averaged
    p_img_s = sum(_sig(v) for v in (0, 1, 2, 3)) / 4
    p_img_t = sum(_sig(v) for v in (1, -1, 0.5, 0)) / 4
    cst = (abs(p_img_s - _sig(6.0)) + abs(p_img_t - _sig(-2.0))) / 2
    assert _value(out["consistency"]) == pytest.approx(cst, abs=1e-7)


def test_instance_gradient_is_reversed_and_consistency_is_not():
    _, f_s, _, out = _case(coeff=0.5)
    out["instance"].backward()
    # d/dx 0.5 softplus(-2x) at x = 3 = -sigmoid(-6); reversed and scaled by coeff 0.5, only at the centre
    expected = torch.zeros(2, 2, dtype=torch.float64)
    expected[1, 1] = 0.5 * _sig(-6.0)
    torch.testing.assert_close(f_s.grad[0, 0], expected)

    _, f_s, _, out = _case(coeff=0.5)
    out["consistency"].backward()
    # source term 0.5 |p_img - sigmoid(2x)| with p_img = 0.766 < sigmoid(6): d/dx at the centre x = 3 is
    # 0.5 (2 sigmoid'(6) - sigmoid'(3) / 4), NOT reversed (and not scaled by the GRL's 0.5)
    s6 = _sig(6.0)
    d_centre = 0.5 * (2 * s6 * (1 - s6) - _sig(3.0) * (1 - _sig(3.0)) / 4)
    assert float(f_s.grad[0, 0, 1, 1]) == pytest.approx(d_centre, abs=1e-7)
    assert float(f_s.grad[0, 0, 0, 0]) == pytest.approx(-0.5 * 0.25 / 4, abs=1e-7)  # -sigmoid'(0) / 4 cells


def test_instances_of_both_domains_are_their_strongest_peaks():
    heat = torch.tensor([[HEAT_T, [[0.0, 0.0], [0.0, 2.5]]]])  # class 1 peaks at cell 3 above class 0's 0.4
    assert peak_indices(heat, 2).tolist() == [[1, 3]]
    heat = torch.tensor([[[[0.0, 1.0, 0.9, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.8]]]])  # 0.9 beside 1.0: no peak
    assert peak_indices(heat, 2).tolist() == [[1, 9]]
    f = torch.arange(8.0).reshape(1, 2, 2, 2)  # 2 channels
    assert gather_centres(f, torch.tensor([[3, 0]])).tolist() == [[[3.0, 7.0], [0.0, 4.0]]]
    loss, f_s, f_t, _ = _case(top_k=2)
    src, src_img, tgt, tgt_img = loss.instances(f_s, f_t, {"heatmap": torch.tensor([[HEAT_T]])},
                                                {"heatmap": torch.tensor([[HEAT_T]])})
    assert src.tolist() == [[1.0], [3.0]] and tgt.tolist() == [[-1.0], [0.0]]  # the same cells 1 and 3 on both
    assert src_img.tolist() == [0, 0] and tgt_img.tolist() == [0, 0]


def test_source_labels_play_no_part_and_switches():
    loss = InstanceAdversarialLoss(_PixelLogit(), _instance_disc(1.0), top_k=1, consistency=False)
    f = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    out = loss(f, f, {"heatmap": f}, {"heatmap": f}, targets={"indices": torch.zeros(1, 1, dtype=torch.int64),
                                                              "mask": torch.zeros(1, 1)})  # no source objects
    assert set(out) == {"domain", "instance"}  # consistency off
    assert _value(out["instance"]) == pytest.approx(math.log(2))  # one peak per domain: BCE(0, 1) = BCE(0, 0) = ln 2
    with pytest.raises(ValueError, match="both domains' predicted heatmaps"):
        loss(f, f, None, {"heatmap": f})
    loss.coeff = 0.3
    assert loss.grl.coeff == loss.instance_grl.coeff == 0.3 and loss.coeff == 0.3


def test_builder_and_its_refusals():
    pre = Preprocess(32, 48, "rgb", resize="letterbox")
    cfg = ModelConfig(neck="fpn", discriminator_hidden=16)
    det = build_model(cfg, "detection", 10, pre)
    loss = build_domain_loss(cfg, det, "dann", instance=True, consistency=True, top_k=4)
    assert isinstance(loss, InstanceAdversarialLoss) and loss.top_k == 4 and loss.consistency
    x = torch.rand(4, 3, 32, 48) * 255
    f, out = det.forward_train(x)
    targets = det.encode_targets([[[2.0, 2.0, 20.0, 20.0]], [[10.0, 4.0, 30.0, 28.0]]], [[1], [5]])
    parts = loss(f[:2], f[2:], {k: v[:2] for k, v in out.items()}, {k: v[2:] for k, v in out.items()},
                 targets=targets)
    assert all(torch.isfinite(v) and v > 0 for v in parts.values())
    sum(parts.values()).backward()
    assert loss.instance_discriminator[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="detection only"):
        build_domain_loss(ModelConfig(), 256, "dann", instance=True)
    with pytest.raises(ValueError, match="set instance"):
        build_domain_loss(cfg, det, "dann", consistency=True)
