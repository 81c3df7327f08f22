import math

import pytest
import torch

from dann_ros.model.grl import GradientReverseLayer, reverse_gradient
from dann_ros.model.schedules import dann_lambda, dann_lr_factor


def test_forward_is_identity():
    x = torch.randn(4, 3)
    assert torch.equal(GradientReverseLayer(0.7)(x), x)


@pytest.mark.parametrize("coeff", [0.0, 0.3, 1.0, 2.5])
def test_backward_is_minus_lambda_times_gradient(coeff):
    x = torch.randn(5, 2, requires_grad=True)
    w = torch.randn(5, 2)
    (reverse_gradient(x, coeff) * w).sum().backward()
    assert torch.allclose(x.grad, -coeff * w)


def test_layer_coefficient_is_settable_state():
    layer = GradientReverseLayer(0.0)
    layer.coeff = 0.5
    x = torch.ones(3, requires_grad=True)
    layer(x).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.5))


def test_lambda_schedule_matches_ganin():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)
    assert dann_lambda(1.0, max_value=0.3) == pytest.approx(0.3 * dann_lambda(1.0))
    assert dann_lambda(-1.0) == 0.0
    # tllib's digits recipe: gamma 1 over a 1,000-step horizon, past p = 1
    assert dann_lambda(2.0, gamma=1.0) == pytest.approx(0.7616, abs=1e-4)


def test_lr_schedule_matches_ganin():
    assert dann_lr_factor(0.0) == 1.0
    assert dann_lr_factor(1.0) == pytest.approx(1 / 11 ** 0.75)
    assert dann_lr_factor(0.3, alpha=5, beta=0.5) == pytest.approx(1 / (1 + 1.5) ** 0.5)
