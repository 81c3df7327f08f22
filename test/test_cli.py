"""The CLI offers what the config accepts."""

from __future__ import annotations

import typing

import pytest

from dann_ros.cli import build_parser
from dann_ros.train.config import AdaptationConfig


def test_train_adaptation_offers_every_method_the_config_accepts():
    accepted = typing.get_args(typing.get_type_hints(AdaptationConfig)["method"])
    assert "cdan" in accepted
    for method in accepted:
        assert build_parser().parse_args(["train", "--config", "c.yaml", "--adaptation", method]).adaptation == method


def test_train_adaptation_refuses_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--config", "c.yaml", "--adaptation", "coral"])
    assert "invalid choice" in capsys.readouterr().err
