"""Checkpoint -> one ONNX graph (extractor + head [+ domain monitor]) that checks itself.

After writing, the file is validated by the ONNX checker and run by ONNX
Runtime on real frames from the training data next to PyTorch; an export
whose outputs disagree is an error, never a silent deployment. For a
detector the best detection of each frame must agree (class, and box within
``box_tolerance`` pixels), and scores position by position: candidates come
sorted best first, so near-ties may swap places without changing the result.
"""

from __future__ import annotations

import json
import logging
import warnings
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
    top1_agreement: float  # detection: the best detection's class and box agree
    frames_from: str
    max_box_diff: float | None = None  # detection: pixels between each frame's best boxes


def export_onnx(checkpoint: str | Path, out: str | Path, keep_domain: bool = True, opset: int = 17,
                parity_frames: np.ndarray | None = None, tolerance: float = 1e-3,
                box_tolerance: float = 0.05) -> tuple[ModelInfo, ParityReport]:
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
    with warnings.catch_warnings():  # the detector's decode reads its map size as ints on purpose (static K)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
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
    report = check_parity(module, out, frames, origin, info.task, box_tolerance)
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
        from dann_ros.train.datasets import load_detection_source, load_source

        load_src = load_detection_source if cfg.task == "detection" else load_source
        src, _ = load_src(cfg.source, info.preprocess, info.classes, cfg.cache_dir)
        return src.images[:limit], "source training images"
    except Exception as exc:  # data moved or deleted: still check on something
        log.warning("training data unavailable for the parity check (%s); using random frames", exc)
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (64, *info.preprocess.input_shape), dtype=np.uint8), "random frames"


def check_parity(module: torch.nn.Module, onnx_path: Path, frames: np.ndarray, origin: str,
                 task: str = "classification", box_tolerance: float = 0.05) -> ParityReport:
    import onnxruntime as ort

    batch = np.ascontiguousarray(frames, dtype=np.float32)
    with torch.inference_mode():
        ref = module(torch.from_numpy(batch))
    ref = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: batch})
    if task == "detection":
        return _detection_parity(ref, got, len(batch), origin, box_tolerance)
    diff = max(float(np.abs(r - g).max()) for r, g in zip(ref, got))
    agree = float((ref[0].argmax(1) == got[0].argmax(1)).mean())
    return ParityReport(len(batch), diff, agree, origin)


def _detection_parity(ref: list[np.ndarray], got: list[np.ndarray], n: int, origin: str,
                      box_tolerance: float, score_tolerance: float = 1e-3) -> ParityReport:
    """Outputs boxes, scores, classes[, domain]. Each frame's best ONNX detection must have a PyTorch
    candidate of (nearly) the same score with its class and box: ties may come in another order."""
    (r_boxes, r_scores, r_classes, *r_rest), (g_boxes, g_scores, g_classes, *g_rest) = ref, got
    diff = max([float(np.abs(r_scores - g_scores).max())] + [float(np.abs(r - g).max()) for r, g in zip(r_rest, g_rest)])
    agree, box_diff = 0, 0.0
    for i in range(n):
        tied = np.abs(r_scores[i] - g_scores[i, 0]) <= score_tolerance
        same = tied & (r_classes[i] == g_classes[i, 0])
        dist = np.abs(r_boxes[i][same] - g_boxes[i, 0]).max(axis=1) if same.any() else np.array([np.inf])
        box_diff = max(box_diff, float(dist.min()))
        agree += bool(dist.min() <= box_tolerance)
    return ParityReport(n, diff, agree / max(n, 1), origin, box_diff)
