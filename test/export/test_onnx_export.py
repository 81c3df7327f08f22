"""Checkpoint -> ONNX: metadata, dynamic batch, the domain output, the parity gate and the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dann_ros.export.metadata import SCHEMA, ModelInfo
from dann_ros.export.onnx_export import ExportParityError, export_onnx


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_metadata_and_dynamic_batch(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    info, parity = export_onnx(tiny_checkpoint, out)
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    assert props == info.to_props() and props["dann_ros.schema"] == SCHEMA
    assert ModelInfo.from_props(props, str(out)) == info
    assert json.loads(props["dann_ros.classes"]) == [str(i) for i in range(10)]
    assert info.has_domain and json.loads(props["dann_ros.outputs"]) == ["scores", "domain"]
    assert parity.max_abs_diff <= 1e-3 and parity.top1_agreement >= 0.995 and parity.frames > 0

    sess = _session(out)
    assert [o.name for o in sess.get_outputs()] == ["scores", "domain"]
    rng = np.random.default_rng(1)
    for n in (1, 5):
        scores, domain = sess.run(None, {"images": rng.uniform(0, 255, (n, 3, 28, 28)).astype(np.float32)})
        assert scores.shape == (n, 10) and domain.shape == (n,)
        np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)  # (domain: a sigmoid; its parity is above)


def test_no_domain_drops_the_second_output(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    info, _ = export_onnx(tiny_checkpoint, out, keep_domain=False)
    assert not info.has_domain
    assert [o.name for o in _session(out).get_outputs()] == ["scores"]
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["dann_ros.outputs"]) == ["scores"]


def test_broken_parity_raises_and_removes_the_file(tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    frames = np.random.default_rng(2).integers(0, 256, (8, 3, 28, 28), dtype=np.uint8)
    with pytest.raises(ExportParityError, match="m.onnx.*removed"):
        export_onnx(tiny_checkpoint, out, parity_frames=frames, tolerance=-1)
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no temporary file left either


def test_cli_export_prints_parity(tiny_checkpoint, tmp_path, capsys):
    from dann_ros.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--no-domain"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "outputs ['scores']" in text
    assert "parity vs PyTorch on" in text and "top-1 agreement 100.00%" in text
    assert out.exists()


def test_cli_export_missing_checkpoint_is_an_error(tmp_path, capsys):
    from dann_ros.cli import main

    missing = tmp_path / "nope.pt"
    assert main(["export", "--checkpoint", str(missing), "--out", str(tmp_path / "x.onnx")]) == 2
    assert str(missing) in capsys.readouterr().err
