"""``dann-ros eval-bag``: a model over every frame of a recorded bag, offline and as fast as it goes.

Frames are read and decoded ahead in a thread (dann_ros.evaluation.frames) while this thread
prepares them with the Predictor (the node's own code path) and runs the model on full batches;
``Predictor.decode``, the second half of the node's ``infer``, turns the outputs into its results.
Outputs in ``--out``:

- ``result_bag/``: the camera messages copied byte for byte plus what dann_node would publish
  (vision_msgs/Classification or Detection2DArray, and LabelInfo) with the input's header and log time;
- ``report.json`` and ``report.html``: the task's score against a label file (accuracy, per-class
  precision/recall and confusion matrix; or COCO-style mAP and per-class AP), class and confidence
  histograms, the domain-shift score over time (the node's definition), per-frame latency, and the
  frames that were skipped and why.

A bag that stops being readable part way is evaluated up to there; the report says so. The task
(classification, detection) comes from the model and dispatches through evaluation/tasks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dann_ros.data.bags import BagError, BagSelection, DecodeStats, bag_info
from dann_ros.data.labels import resolve_labels
from dann_ros.evaluation.eval_bag_report import build_report, domain_shift, figures, page
from dann_ros.evaluation.frames import FrameTable, RunStats, run_frames
from dann_ros.evaluation.bag_report_tools import claim_bag_output, default_out_dir, write_reports
from dann_ros.evaluation.tasks import OutputOptions, TaskScores, task_for

FORMAT = "dann_ros.eval_bag/2"


def _node_default(name: str) -> Any:
    from dann_ros.ros.params import PARAMETERS

    return PARAMETERS[name][0]


@dataclass(frozen=True)
class EvalBagOptions:
    """Everything eval-bag does, validated once (the CLI builds one from its flags)."""

    bag: Path
    topics: tuple[str, ...] = ()  # empty = every image topic
    labels: Any = None  # a path; None = <bag>.labels.json when it exists; False = none
    out: Path | None = None  # None: nothing written, the report is only returned
    batch_size: int = 64
    result_bag: bool = True
    storage: str = "mcap"
    output: OutputOptions = field(default_factory=OutputOptions.node_defaults)
    domain_window: int = field(default_factory=lambda: int(_node_default("domain_shift_window")))
    domain_reference: float = field(default_factory=lambda: float(_node_default("domain_shift_reference")))
    overwrite: bool = False
    model_path: str = ""
    html: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bag", Path(self.bag))
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.domain_window < 1 or not 0.0 <= self.domain_reference <= 1.0:
            raise ValueError(f"domain-shift window must be >= 1 and reference within 0..1 (got {self.domain_window}, "
                             f"{self.domain_reference})")


@dataclass
class EvalBagResult:
    report: dict
    out_dir: Path | None
    scores: TaskScores | None = None  # ClassificationScores or DetectionScores, by the model's task
    frames: FrameTable | None = None
    decode: DecodeStats = field(default_factory=DecodeStats)

    @property
    def metric(self) -> float | None:
        """The task's headline metric (accuracy, or mAP@0.5 for detection); None without labels."""
        return self.scores.value if self.scores is not None else None


def _check_topics(bag: Path, meta: Any, topics: tuple[str, ...]) -> list[str]:
    for topic in topics:
        if topic not in meta.image_topics:
            what = f"has type {meta.other_topics[topic]}, not an image type" if topic in meta.other_topics \
                else "is not in the bag"
            raise BagError(f"topic {topic!r} {what} ({bag}); image topics in the bag: "
                           f"{sorted(meta.image_topics) or 'none'}")
    if not meta.image_topics:
        raise BagError(f"bag {bag} has no sensor_msgs Image or CompressedImage topic "
                       f"(topics: {sorted(meta.other_topics) or 'none'})")
    return list(topics) or sorted(meta.image_topics)


def evaluate(predictor: Any, opts: EvalBagOptions, progress: Callable[[int], None] | None = None) -> EvalBagResult:
    """Run ``predictor`` over the bag; write the result bag and reports into ``opts.out``."""
    from dann_ros.evaluation.result_bag import write_result_bag

    t_start = time.perf_counter()
    info = predictor.info
    task = task_for(info.task, info.classes, opts.output)
    meta = bag_info(opts.bag)  # fails early, naming the bag, when it cannot be opened at all
    chosen = _check_topics(opts.bag, meta, opts.topics)
    labels, label_note = resolve_labels(opts.bag, opts.labels, info.task, chosen)
    bag_out = opts.out / "result_bag" if opts.out is not None and opts.result_bag else None
    if bag_out is not None:
        claim_bag_output(bag_out, opts.overwrite)

    run = RunStats()
    t_frames = time.perf_counter()
    frames, stats = run_frames(predictor, opts.bag, BagSelection(tuple(chosen)), opts.batch_size, progress=progress,
                               run_stats=run)
    frames_wall = time.perf_counter() - t_frames
    pred = task.codec.predictions(predictor.decode, frames)  # the node's decode: Predictor.infer's second half
    scores = label_info = None
    if labels is not None:
        scores, label_info = task.scorer.score(pred, labels, frames)
    shift = domain_shift(frames, opts.domain_window, opts.domain_reference)
    bag_report = None
    if bag_out is not None:
        t = time.perf_counter()
        compressed = {t_: meta.image_topics[t_][0].endswith("CompressedImage") for t_ in chosen}
        bag_report = write_result_bag(bag_out, opts.bag, chosen, frames, task, pred, compressed, opts.storage)
        run.result_bag_s = time.perf_counter() - t
    run.wall_s = time.perf_counter() - t_start
    report = build_report(predictor, opts, meta, chosen, frames, stats, task, pred, scores, label_info, label_note,
                          shift, run, frames_wall, bag_report)
    report["format"] = FORMAT
    if opts.out is not None:
        t = time.perf_counter()
        figs = figures(report, frames, task, pred, scores, label_info, shift)
        write_reports(opts.out, report, figs, page(report, figs, task) if opts.html else None)
        run.report_s = time.perf_counter() - t
    return EvalBagResult(report, opts.out, scores, frames, stats)


def evaluate_bag(predictor: Any, bag: str | Path, topics: tuple[str, ...] = (), labels: Any = None,
                 out_dir: str | Path | None = None, batch_size: int = 64, result_bag: bool = True,
                 storage: str = "mcap", top_k: int | None = None, detection_threshold: float | None = None,
                 domain_window: int | None = None, domain_reference: float | None = None, overwrite: bool = False,
                 model_path: str = "", html: bool = True,
                 progress: Callable[[int], None] | None = None) -> EvalBagResult:
    """:func:`evaluate` with keyword arguments; None = the node's default."""
    node = OutputOptions.node_defaults()
    output = OutputOptions(node.top_k if top_k is None else top_k,
                           node.detection_threshold if detection_threshold is None else detection_threshold)
    extra = {k: v for k, v in (("domain_window", domain_window), ("domain_reference", domain_reference))
             if v is not None}
    opts = EvalBagOptions(Path(bag), tuple(topics), labels, Path(out_dir) if out_dir is not None else None, batch_size,
                          result_bag, storage, output, overwrite=overwrite, model_path=model_path, html=html, **extra)
    return evaluate(predictor, opts, progress)


# --------------------------------------------------------------------------- CLI
def add_eval_bag_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    node = OutputOptions.node_defaults()
    p = subparsers.add_parser("eval-bag", help="run a model over every frame of a bag: result bag + HTML/JSON report",
                              description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model.pt, model.onnx or a TensorRT engine")
    p.add_argument("--bag", required=True, help="rosbag2 folder (any name, e.g. run1.bag), or a .mcap/.db3 file")
    p.add_argument("--topic", action="append", help="camera topic (repeatable; default: every image topic)")
    lab = p.add_mutually_exclusive_group()
    lab.add_argument("--labels", help="label file (default: <bag>.labels.json when it exists)")
    lab.add_argument("--no-labels", action="store_true", help="ignore any label file")
    p.add_argument("--out", help="output folder (default: <bag>.eval next to the bag)")
    p.add_argument("--batch", type=int, default=64, help="frames per model call (default 64)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: CUDA when available")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="result bag storage (default mcap)")
    p.add_argument("--no-result-bag", action="store_true", help="write only the reports")
    p.add_argument("--top-k", type=int, default=node.top_k,
                   help=f"classification: hypotheses per Classification, 0 = all (node default {node.top_k})")
    p.add_argument("--detection-threshold", type=float, default=node.detection_threshold,
                   help="detection: lowest score of a published (and scored) detection, as the node's "
                        f"detection_threshold (default {node.detection_threshold:g}; 0 scores every candidate)")
    p.add_argument("--domain-window", type=int, default=_node_default("domain_shift_window"))
    p.add_argument("--domain-reference", type=float, default=_node_default("domain_shift_reference"))
    p.add_argument("--overwrite", action="store_true", help="replace a result bag left by an earlier run")
    p.set_defaults(func=_run_eval_bag)
    return p


def _run_eval_bag(args: argparse.Namespace) -> int:
    from dann_ros.runtime.predictor import Predictor

    opts = EvalBagOptions(
        bag=Path(args.bag), topics=tuple(args.topic or ()), labels=False if args.no_labels else (args.labels or None),
        out=Path(args.out) if args.out else default_out_dir(args.bag, "eval"), batch_size=args.batch,
        result_bag=not args.no_result_bag, storage=args.storage,
        output=OutputOptions(args.top_k, args.detection_threshold), domain_window=args.domain_window,
        domain_reference=args.domain_reference, overwrite=args.overwrite, model_path=str(args.model))
    predictor = Predictor.load(args.model, backend=args.backend, device=args.device)
    print(summary(evaluate(predictor, opts).report, opts))
    return 0


def summary(r: dict, opts: EvalBagOptions) -> str:
    """The evaluation in a few lines, for the CLI."""
    f, tp = r["frames"], r["throughput"]
    lines = [f"model {r['model']['path']} ({r['model']['backend']}); bag {opts.bag}: {f['evaluated']} frames on "
             f"{', '.join(r['bag']['topics'])}, {tp['frames_per_second']:.1f} frames/s"]
    if r["scores"] is not None:
        lines.append(task_for(r["model"]["task"], r["model"]["classes"], opts.output).section.summary_line(r))
    elif r.get("label_note"):
        lines.append(r["label_note"])
    ds = r["domain_shift"] or {}
    for t, v in ds.get("topics", {}).items():
        feature = f", feature_shift per frame {v['mean_feature_shift']:.3f}" if "mean_feature_shift" in v else ""
        grl = (f"; GRL discriminator's mean {v['grl_mean']:.3f}, {100 * v['grl_share_at_or_above_warn']:.1f}% "
               f">= warn" if v.get("grl_mean") is not None else "")
        lines.append(f"domain shift {t} ({ds['monitor']}): final {v['final']:.3f}, mean {v['mean']:.3f}, "
                     f"max {v['max']:.3f}{feature}, {100 * v['share_at_or_above_warn']:.1f}% of frames >= warn "
                     f"{ds['warn']:g}{grl}")
    if not f["complete"]:
        lines.append(f"WARNING: partly evaluated: {f['summary']}")
    if opts.out is not None:
        lines.append(f"wrote {opts.out / 'report.html'}, {opts.out / 'report.json'}"
                     + (f", {r['result_bag']['path']}" if r["result_bag"] else ""))
    return "\n".join(lines)
