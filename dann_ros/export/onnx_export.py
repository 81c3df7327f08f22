"""Checkpoint -> one ONNX graph (extractor + head [+ domain monitor]) that checks itself.

After writing, the file is validated by the ONNX checker and run by ONNX
Runtime on real frames from the training data next to PyTorch; an export
whose outputs disagree is an error, never a silent deployment.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dann_ros.export.metadata import INPUT_NAME, ModelInfo
from dann_ros.train.checkpoint import load, load_model

log = logging.getLogger(__name__)


class ExportParityError(RuntimeError):
    pass


@dataclass(frozen=True)
class ParityReport:
    frames: int
    max_abs_diff: float
    top1_agreement: float
    frames_from: str


def export_onnx(checkpoint: str | Path, out: str | Path, keep_domain: bool = True, opset: int = 17,
                parity_frames: np.ndarray | None = None, tolerance: float = 1e-3) -> tuple[ModelInfo, ParityReport]:
    checkpoint, out = Path(checkpoint), Path(out)
    module, info = load_model(checkpoint)
    if not keep_domain and module.discriminator is not None:
        module.discriminator = None
        info = ModelInfo(info.task, info.classes, info.preprocess, info.config_digest, info.version, False)
    module.eval()
    c, h, w = info.preprocess.input_shape
    dummy = torch.rand(2, c, h, w) * 255
    names = info.output_names
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.onnx.export(module, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=names,
                      dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]}, opset_version=opset,
                      dynamo=False)
    import onnx

    model = onnx.load(str(tmp))
    for key, value in info.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"dann_ros {info.task} model: classes {list(info.classes)}"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp))
    tmp.replace(out)
    frames, origin = parity_frames, "given frames"
    if frames is None:
        frames, origin = training_frames(checkpoint, info)
    report = check_parity(module, out, frames, origin)
    log.info("parity on %d frames (%s): max |diff| %.2e, top-1 agreement %.4f", report.frames, origin,
             report.max_abs_diff, report.top1_agreement)
    if report.max_abs_diff > tolerance or report.top1_agreement < 0.995:
        out.unlink()
        raise ExportParityError(f"{out}: ONNX Runtime disagrees with PyTorch on {origin}: max |diff| "
                                f"{report.max_abs_diff:.3g} (tolerance {tolerance}), top-1 agreement "
                                f"{report.top1_agreement:.4f}; the file was removed")
    return info, report


def training_frames(checkpoint: Path, info: ModelInfo, limit: int = 256) -> tuple[np.ndarray, str]:
    """Real target frames the model was adapted on (from the training cache), else random pixels."""
    data = load(checkpoint)
    try:
        from dann_ros.config import from_dict
        from dann_ros.train.config import TrainConfig
        from dann_ros.train.datasets import load_target

        cfg = from_dict(TrainConfig, json.loads(data["train_config"]))
        if cfg.target.bags:
            frames = load_target(cfg.target, info.preprocess, cfg.cache_dir, cfg.seed)
            return frames[:limit], f"{len(frames[:limit])} target frames of {cfg.target.bags[0]}"
        from dann_ros.train.datasets import load_source

        src, _ = load_source(cfg.source, info.preprocess, info.classes, cfg.cache_dir)
        return src.images[:limit], "source training images"
    except Exception as exc:  # data moved or deleted: still check on something
        log.warning("training data unavailable for the parity check (%s); using random frames", exc)
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (64, *info.preprocess.input_shape), dtype=np.uint8), "random frames"


def check_parity(module: torch.nn.Module, onnx_path: Path, frames: np.ndarray, origin: str) -> ParityReport:
    import onnxruntime as ort

    batch = np.ascontiguousarray(frames, dtype=np.float32)
    with torch.inference_mode():
        ref = module(torch.from_numpy(batch))
    ref = ref if isinstance(ref, tuple) else (ref,)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: batch})
    diff = max(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got))
    agree = float((ref[0].numpy().argmax(1) == got[0].argmax(1)).mean())
    return ParityReport(len(batch), diff, agree, origin)
