"""Checkpoint -> one ONNX graph (extractor + head [+ domain monitor]) that checks itself.

After writing, the file is validated by the ONNX checker and run by ONNX
Runtime on real frames from the training data next to PyTorch; an export
whose outputs disagree is an error, never a silent deployment. For a
detector candidates are matched by identity (class, and the nearest box within
``box_tolerance`` pixels), not by their place in the best-first list, so
near-ties may swap places without changing the result (the rules live in
dann_ros.export.parity, shared with the TensorRT engine check).
With ``fp16`` the graph computes in half precision behind float32 inputs and
outputs: the FP16 route of TensorRT 11, which has no BuilderFlag.FP16.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dann_ros.atomic_io import atomic_path
from dann_ros.export.checkpoint_model import model_from_checkpoint, stored_train_config
from dann_ros.export.metadata import INPUT_NAME, ModelInfo
from dann_ros.export.parity import (PEAK_KEY, TOLERANCES, ParityReport, Tolerance, compare, outputs_in_batches,
                                   save_parity_frames)
from dann_ros.model.inference import eval_batch_size
from dann_ros.train.checkpoint import load

if TYPE_CHECKING:
    from dann_ros.train.config import TrainConfig

log = logging.getLogger(__name__)


class ExportParityError(RuntimeError):
    pass


class _Fp16Graph(torch.nn.Module):
    """The model in half precision behind fp32 inputs and outputs: the runtime's contract stays the same,
    and TensorRT 11 (strongly typed only, no BuilderFlag.FP16) builds FP16 kernels from it."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(module).half()

    def forward(self, x: torch.Tensor):
        out = self.inner(x.half())
        out = out if isinstance(out, tuple) else (out,)
        out = tuple(o.float() if o.is_floating_point() else o for o in out)
        return out if len(out) > 1 else out[0]


def export_onnx(checkpoint: str | Path, out: str | Path, keep_domain: bool = True, opset: int = 17,
                parity_frames: np.ndarray | None = None, tolerance: float | None = None,
                box_tolerance: float | None = None, fp16: bool = False, feature_monitor: bool = True,
                monitor_frames: tuple[np.ndarray, np.ndarray | None] | None = None,
                ) -> tuple[ModelInfo, ParityReport]:
    """Write ``out`` (and ``<out stem>.parity.npz``, the frames it was checked on) or raise.

    ``feature_monitor``: fit the post-hoc shift monitor (output ``feature_shift``) on the
    adaptation-target frames of the training config (or ``monitor_frames`` = (target, source)
    prepared uint8 frames); skipped with a warning when there are none.

    ``fp16``: weights and compute in half precision, inputs/outputs float32 (metadata precision
    "fp16"); checked against the fp32 PyTorch model with the fp16 tolerances. Default
    tolerances: :data:`dann_ros.export.parity.TOLERANCES` ("onnx", or "fp16").
    """
    checkpoint, out = Path(checkpoint), Path(out)
    data = load(checkpoint)  # once: the model, its metadata and the training config all come from it
    module, info = model_from_checkpoint(data, checkpoint)
    try:
        cfg = stored_train_config(data, checkpoint)
    except Exception as exc:  # an older checkpoint or config: export without the data it names
        cfg = exc
    del data
    if not keep_domain and module.discriminator is not None:
        module.discriminator = None
        info = dataclasses.replace(info, has_domain=False)
    module.eval()
    monitor = None
    if feature_monitor:
        from dann_ros.export.monitor_fit import attach_feature_monitor, training_monitor_frames

        frames = monitor_frames if monitor_frames is not None else training_monitor_frames(cfg, info.preprocess)
        if frames is not None:
            info, monitor = attach_feature_monitor(module, info, *frames)
    limits = TOLERANCES["fp16" if fp16 else "onnx"]
    tolerance = limits.max_abs_diff if tolerance is None else tolerance
    box_tolerance = limits.box_px if box_tolerance is None else box_tolerance
    if fp16:
        info = dataclasses.replace(info, precision="fp16")
    graph = _Fp16Graph(module).eval() if fp16 else module
    c, h, w = info.preprocess.input_shape
    dummy = torch.rand(2, c, h, w) * 255
    names = info.output_names
    with atomic_path(out, suffix=".onnx") as tmp:
        with warnings.catch_warnings():  # the detector's decode reads its map size as ints on purpose (static K)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(graph, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=names,
                              dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]}, opset_version=opset,
                              dynamo=False)
        import onnx

        model = onnx.load(str(tmp))
        for key, value in info.to_props().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        peak_px = _peak_px(module)
        if peak_px > 0:
            entry = model.metadata_props.add()
            entry.key, entry.value = PEAK_KEY, repr(peak_px)
        if monitor is not None:
            from dann_ros.export.monitor_fit import REPORT_KEY

            entry = model.metadata_props.add()
            entry.key, entry.value = REPORT_KEY, json.dumps(monitor.report)
        model.doc_string = f"dann_ros {info.task} model ({info.precision}): classes {list(info.classes)}"
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))
    frames, origin = parity_frames, "given frames"
    if frames is None:
        frames, origin = training_frames(cfg, info)
    report = check_parity(module, out, frames, origin, info.task, box_tolerance, peak_px=peak_px)
    log.info("parity on %s", report.summary())
    failures = report.failures(Tolerance(tolerance, box_tolerance))
    if failures:
        out.unlink()
        raise ExportParityError(f"{out}: ONNX Runtime ({info.precision}) disagrees with PyTorch on {origin}: "
                                f"{'; '.join(failures)} (max |diff| {report.max_abs_diff:.3g}, tolerance "
                                f"{tolerance}); the file was removed")
    save_parity_frames(out, frames, origin)
    return info, report


def training_frames(cfg: TrainConfig | Exception, info: ModelInfo, limit: int = 256) -> tuple[np.ndarray, str]:
    """Real target frames the model was adapted on (from the training cache), else its source
    training images, else random pixels. ``cfg``: the checkpoint's training config, or why it has none."""
    try:
        from dann_ros.train.data import load_train_data

        if isinstance(cfg, Exception):
            raise cfg
        cfg = cfg.replace(**{"train.data": "stream", "eval_target": None})  # read only the frames used here
        run = load_train_data(cfg)
        stores, origin = (run.target, f"target frames of {cfg.target.bags[0]}") if run.target else \
            ([run.source], "source training images")
        frames = np.concatenate([s.read(np.arange(min(len(s), limit))) for s in stores])[:limit]
        return frames, f"{len(frames)} {origin}"
    except Exception as exc:  # data moved or deleted: still check on something
        log.warning("training data unavailable for the parity check (%s); using random frames", exc)
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (64, *info.preprocess.input_shape), dtype=np.uint8), "random frames"


def _peak_px(module: torch.nn.Module) -> float:
    """A detector's peak-picking window in input pixels (2 output strides), 0 for other models."""
    strides = [m.stride for m in module.modules() if hasattr(m, "decode") and isinstance(getattr(m, "stride", None),
                                                                                          int)]
    return 2.0 * max(strides) if strides else 0.0


def check_parity(module: torch.nn.Module, onnx_path: Path, frames: np.ndarray, origin: str,
                 task: str = "classification", box_tolerance: float = 0.05, peak_px: float = 0.0) -> ParityReport:
    """PyTorch (fp32) vs ONNX Runtime (CPU) on ``frames``, by the rules of dann_ros.export.parity; both
    run the same batches, as many frames each as the default evaluation memory budget holds."""
    import onnxruntime as ort

    def torch_outputs(batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(torch.from_numpy(batch))
        return [r.numpy() for r in (out if isinstance(out, tuple) else (out,))]

    frames = np.asarray(frames)
    size = eval_batch_size(module, tuple(frames.shape[1:]), most=max(len(frames), 1), forward=module)
    ref = outputs_in_batches(torch_outputs, frames, size)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = outputs_in_batches(lambda batch: sess.run(None, {INPUT_NAME: batch}), frames, size)
    return compare(ref, got, task, origin, box_tolerance, peak_px)
