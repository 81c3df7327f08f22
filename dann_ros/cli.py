"""``dann-ros``: one command, a subcommand per stage of the flow."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from dann_ros.train.config import load_train_config
    from dann_ros.train.trainer import train

    cfg = load_train_config(args.config)
    overrides = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.output_dir is not None:
        overrides["output_dir"] = args.output_dir
    if args.adaptation is not None:
        overrides["adaptation.method"] = args.adaptation
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if overrides:
        cfg = cfg.replace(**overrides)
    result = train(cfg, resume=not args.restart)
    if result:
        from dann_ros.data.tasks import task_spec

        sel = result["selected"]
        spec = task_spec(cfg.task)
        score = spec.format_metric(sel.get(spec.metric_key("target")))
        print(f"selected step {sel['step']} by {result['selection']}: target {score}; "
              f"model at {Path(cfg.output_dir) / 'model.pt'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dann_ros.evaluation.tasks import task_for
    from dann_ros.runtime.predictor import Predictor

    predictor = Predictor.load(args.model, backend=args.backend)
    task = task_for(predictor.info.task, predictor.info.classes)
    if args.images:
        if not task.spec.class_scores_per_image:
            raise SystemExit(f"eval --images takes an ImageFolder of classes: classification models only; "
                             f"a {task.spec.name} model needs --bag and --labels")
        from dann_ros.evaluation.accuracy import evaluate_image_folder

        result = evaluate_image_folder(predictor, args.images)
        table, data = result.table(), result.to_json()
    else:
        if not args.labels:
            raise SystemExit(f"eval --bag needs --labels <{task.spec.name} label file>")
        table, data = task.scorer.evaluate_labelled_bag(predictor, args.bag, args.labels, tuple(args.topic or ()))
    print(f"model {args.model} ({predictor.backend.name})")
    print(table)
    if args.json:
        from dann_ros.atomic_io import write_json
        from dann_ros.evaluation.html import jsonable

        write_json(args.json, jsonable(data), indent=1, allow_nan=False)
    return 0


def _export(args: argparse.Namespace) -> int:
    from dann_ros.export.onnx_export import export_onnx

    info, parity = export_onnx(args.checkpoint, args.out, keep_domain=not args.no_domain, opset=args.opset,
                               fp16=args.fp16, feature_monitor=not args.no_feature_monitor)
    print(f"wrote {args.out}: {info.task}, {len(info.classes)} classes, input {info.preprocess.input_shape}, "
          f"outputs {info.output_names}")
    boxes = "" if parity.max_box_diff is None else f", matched boxes within {parity.max_box_diff:.2e} px"
    print(f"parity vs PyTorch on {parity.frames_from}: max |diff| {parity.max_abs_diff:.2e}, "
          f"top-1 agreement {100 * parity.top1_agreement:.2f}%{boxes}")
    return 0


def adaptation_methods() -> tuple[str, ...]:
    """What ``adaptation.method`` accepts, read from the config's Literal (train/config.py imports no torch)."""
    import typing

    from dann_ros.train.config import AdaptationConfig

    return typing.get_args(typing.get_type_hints(AdaptationConfig)["method"])


def build_parser() -> argparse.ArgumentParser:
    from dann_ros.data.make_bag import add_make_bag_parser
    from dann_ros.demo_data.synth import add_synth_parser
    from dann_ros.evaluation.eval_bag import add_eval_bag_parser
    from dann_ros.evaluation.replay import add_replay_parser
    from dann_ros.evaluation.training_report import add_report_parser
    from dann_ros.runtime.tensorrt_backend import add_build_engine_parser

    parser = argparse.ArgumentParser(prog="dann-ros", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_synth_parser(sub)
    add_make_bag_parser(sub)
    add_build_engine_parser(sub)
    add_eval_bag_parser(sub)
    add_replay_parser(sub)
    add_report_parser(sub)

    p = sub.add_parser("train", help="train a source-only or DANN model from a YAML config")
    p.add_argument("--config", required=True)
    p.add_argument("--seed", type=int)
    p.add_argument("--output-dir")
    p.add_argument("--adaptation", choices=adaptation_methods(), help="adaptation.method")
    p.add_argument("--steps", type=int)
    p.add_argument("--restart", action="store_true", help="ignore a previous run's last.pt instead of resuming")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="accuracy of a model on an ImageFolder or a labelled bag (mAP for detection)")
    p.add_argument("--model", required=True, help="model.pt, model.onnx or a TensorRT engine")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="ImageFolder root: <root>/<class name>/<image>")
    src.add_argument("--bag")
    p.add_argument("--labels", help="label file of the bag")
    p.add_argument("--topic", action="append")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--json")
    p.set_defaults(func=_eval)

    p = sub.add_parser("export", help="export a checkpoint to ONNX and check it against PyTorch")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--no-domain", action="store_true", help="drop the domain-shift monitor output")
    p.add_argument("--no-feature-monitor", action="store_true",
                   help="do not fit the post-hoc shift monitor (output feature_shift) on the training frames")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--fp16", action="store_true", help="FP16 weights and compute behind fp32 inputs/outputs (the "
                                                        "FP16 route of TensorRT 11, which has no BuilderFlag.FP16)")
    p.set_defaults(func=_export)

    try:
        from dann_ros.demo import add_demo_parser
    except ImportError as exc:  # a robot-side install has no torch: every other command must still work
        p = sub.add_parser("demo", help=f"the end-to-end demo (unavailable here: {exc})")
        p.set_defaults(func=lambda args, exc=exc: _unavailable("demo", exc))
    else:
        add_demo_parser(sub)
    return parser


def _unavailable(command: str, exc: ImportError) -> int:
    raise RuntimeError(f"needs the training side of dann_ros ({exc}); install it with `make setup`, not the "
                       "[runtime] extra")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"dann-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
