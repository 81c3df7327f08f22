"""``dann-ros report``: what a training run did, on one page (optionally next to a second run).

- curves: task loss, domain loss, discriminator accuracy, GRL lambda and learning rate from the
  run's TensorBoard event files; source-validation and target metrics from metrics.json history;
- a 2-D t-SNE of source and target features of the run's model.pt (about 500 points per
  domain; PCA init), which shows whether adaptation pulled the domains together;
- proxy A-distance (from metrics.json, and recomputed on the report's features for every run,
  so a compared run gets one even if it was never computed);
- the confusion matrix on the labelled evaluation target, when the run had one.

Data comes from the training config stored in the checkpoint (dann_ros.train.data.load_train_data,
through the frame cache). Output: <run>/report/report.html (self-contained), the PNGs, report.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dann_ros.atomic_io import write_json
from dann_ros.data.tasks import task_spec
from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.run_features import Features, RunError, run_features, tsne

__all__ = ["Features", "RunError", "Run", "build_report", "load_run", "run_features", "tsne"]

log = logging.getLogger(__name__)

FORMAT = "dann_ros.train_report/1"
MIN_OBJECTS = 10  # fewer labelled objects on either side: no PAD at the objects (a classifier fit on a handful)
OBJECT_PAD_SPLITS = 8  # a few hundred labelled objects: one split's PAD varies by ~0.07, the mean of 8 by ~0.03
CURVES = (  # (tag, title, y label)
    ("train/task_loss", "Task loss (source cross-entropy)", "loss"),
    ("train/domain_loss", "Domain loss (discriminator BCE)", "loss"),
    ("train/discriminator_accuracy", "Discriminator accuracy on training batches", "accuracy"),
    ("train/lambda", "GRL coefficient lambda", "lambda"),
    ("train/lr", "Learning rate", "learning rate"),
)
HISTORY = (  # (figure, title, y label, metrics.json history keys)
    ("accuracy", "Accuracy at evaluation steps", "accuracy", ("source_val_accuracy", "target_accuracy")),
    ("map50", "mAP@0.5 at evaluation steps (detection)", "mAP@0.5", ("source_val_map50", "target_map50")),
    ("im", "Information maximization (IM) on target frames", "IM score", ("im",)),
    ("snd", "Soft neighbourhood density (SND) on target frames", "SND score", ("snd",)),
    ("stability", "Box stability score on target frames (detection)", "box stability", ("stability",)),
    ("domain_accuracy", "Discriminator accuracy between evaluations", "accuracy", ("domain_accuracy",)),
)


@dataclass
class Run:
    path: Path
    name: str
    metrics: dict
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]


def load_scalars(tb_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (steps, values) from every event file in the folder; a resumed run's repeated
    steps keep their last value."""
    if not tb_dir.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        by_step = {e.step: e.value for e in acc.Scalars(tag)}
        steps = np.array(sorted(by_step), np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps], np.float64))
    return out


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"run folder not found: {path}")
    metrics_file = path / "metrics.json"
    metrics: dict = {}
    if metrics_file.exists():
        try:
            metrics = json.loads(metrics_file.read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{metrics_file}: not valid JSON: {exc}") from None
    scalars = load_scalars(path / "tensorboard")
    if not metrics and not scalars and not (path / "model.pt").exists():
        raise RunError(f"{path} holds no metrics.json, tensorboard/ or model.pt: not a dann-ros training run")
    name = f"{path.name} ({metrics['method']})" if metrics.get("method") else path.name
    return Run(path, name, metrics, scalars)


def _tsne_png(runs: list[Run], embeddings: list[np.ndarray], feats: list[Features]) -> bytes:
    plt = plots._plt()
    with plt.rc_context(plots.STYLE):
        fig, axes = plt.subplots(1, len(runs), figsize=(6.2 * len(runs), 5.6), squeeze=False)
    for ax, run, emb, f in zip(axes[0], runs, embeddings, feats):
        n_s = len(f.source)
        ax.scatter(emb[:n_s, 0], emb[:n_s, 1], s=10, alpha=0.6, label=f"source (n={n_s})", c="tab:blue")
        ax.scatter(emb[n_s:, 0], emb[n_s:, 1], s=10, alpha=0.6, label=f"target (n={len(f.target)})", c="tab:orange")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", markerscale=2)
        plots.style(ax, f"t-SNE of features: {run.name}", "t-SNE 1", "t-SNE 2")
    return plots.to_png(fig)


def _confusions_png(runs: list[Run], feats: list[Features]) -> bytes:
    plt = plots._plt()
    k = len(feats[0].classes)
    size = min(3.6 + 0.36 * k, 10)
    with plt.rc_context(plots.STYLE):
        fig, axes = plt.subplots(1, len(runs), figsize=(size * len(runs), size), squeeze=False)
    for ax, run, f in zip(axes[0], runs, feats):
        s = f.confusion
        plots.confusion_matrix(s.confusion, f.classes, f"{run.name}: accuracy {100 * s.accuracy:.2f}%", ax=ax)
    return plots.to_png(fig)


# --------------------------------------------------------------------------- the report
def build_report(run_dir: str | Path, compare: str | Path | None = None, out_dir: str | Path | None = None,
                 points: int = 500, seed: int = 0, with_tsne: bool = True) -> dict:
    """Write report.html, report.json and the PNGs; returns the report dict."""
    runs = [load_run(run_dir)] + ([load_run(compare)] if compare else [])
    if len(runs) == 2 and runs[0].name == runs[1].name:  # e.g. two folders both called "run"
        for r in runs:
            r.name = f"{r.path.parent.name}/{r.name}"
        if runs[0].name == runs[1].name:
            runs[1].name += " [compared]"
    out = Path(out_dir) if out_dir is not None else runs[0].path / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict] = {}  # name -> {"png", "caption", "json"}
    notes: list[str] = []

    for tag, title, ylabel in CURVES:
        series = {r.name: r.scalars[tag] for r in runs if tag in r.scalars}
        if not series:
            continue
        name = tag.split("/", 1)[1]
        figures[name] = {
            "png": plots.lines(series, title, "training step", ylabel, integer_x=True,
                               marker="." if max(len(s[0]) for s in series.values()) < 40 else None),
            "caption": f"TensorBoard scalar {tag}",
            "json": {"title": title, "tag": tag, "runs": {n: {"step": s.tolist(), "value": v.tolist()}
                                                          for n, (s, v) in series.items()}}}
    for name, title, ylabel, keys in HISTORY:
        series, data = {}, {}
        for r in runs:
            hist = r.metrics.get("history") or []
            for key in keys:
                pts = [(h["step"], h[key]) for h in hist if h.get(key) is not None]
                if pts:
                    label = f"{key} - {r.name}" if len(runs) > 1 else key
                    series[label] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
                    data.setdefault(r.name, {})[key] = {"step": [p[0] for p in pts], "value": [p[1] for p in pts]}
        if series:
            figures[name] = {"png": plots.lines(series, title, "training step", ylabel, marker="o", integer_x=True),
                             "caption": "metrics.json history (evaluated every train.eval_every steps)",
                             "json": {"title": title, "runs": data}}
    if not figures:
        notes.append("No TensorBoard scalars and no metrics.json history found.")

    feats: list[Features | None] = []
    for r in runs:
        try:
            feats.append(run_features(r, points, seed))
        except Exception as exc:  # data moved, run unfinished ...: the curves are still worth a page
            log.warning("%s: no features: %s", r.path, exc)
            notes.append(f"{r.name}: no feature plots ({type(exc).__name__}: {exc})")
            feats.append(None)

    pads = []
    from dann_ros.train.metrics import proxy_a_distance

    for r, f in zip(runs, feats):
        recomputed = proxy_a_distance(f.source, f.target, seed) if f is not None else None
        objects = f is not None and f.source_objects is not None and min(
            len(f.source_objects), len(f.target_objects)) >= MIN_OBJECTS
        pads.append({"metrics_json": r.metrics.get("proxy_a_distance"), "recomputed": recomputed,
                     "objects": proxy_a_distance(f.source_objects, f.target_objects, seed, OBJECT_PAD_SPLITS)
                     if objects else None})

    have = [(r, f) for r, f in zip(runs, feats) if f is not None]
    if with_tsne and have:
        embeddings = [tsne(f, seed) for _, f in have]
        figures["tsne"] = {
            "png": _tsne_png([r for r, _ in have], embeddings, [f for _, f in have]),
            "caption": f"t-SNE (PCA init, seed {seed}) of model.pt's features on up to {points} source and {points} "
                       "target frames per run: mixed colours = aligned domains",
            "json": {"title": "t-SNE of source and target features", "runs": {
                r.name: {"source": e[:len(f.source)].tolist(), "target": e[len(f.source):].tolist(),
                         "target_from": f.target_from} for (r, f), e in zip(have, embeddings)}}}
    labelled = [(r, f) for r, f in have if f.confusion is not None]
    if labelled:
        figures["confusion_matrix"] = {
            "png": _confusions_png([r for r, _ in labelled], [f for _, f in labelled]),
            "caption": "model.pt on the labelled evaluation target (rows: true class, columns: predicted)",
            "json": {"title": "Confusion matrix on the labelled eval target", "runs": {
                r.name: {"classes": list(f.classes), "matrix": f.confusion.confusion.tolist(),
                         "accuracy": f.confusion.accuracy} for r, f in labelled}}}

    report = {
        "format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [{"name": r.name, "path": str(r.path), "task": r.metrics.get("task", "classification"),
                  "method": r.metrics.get("method"),
                  "selection": r.metrics.get("selection"), "selected": r.metrics.get("selected"),
                  "oracle": r.metrics.get("oracle"), "last": r.metrics.get("last"),
                  "train_seconds": r.metrics.get("train_seconds"),
                  "proxy_a_distance": pad,
                  "eval_target": f.confusion.to_json() if f is not None and f.confusion is not None else None}
                 for r, f, pad in zip(runs, feats, pads)],
        "notes": notes, "figures": {k: v["json"] for k, v in figures.items()},
    }
    for name, fig in figures.items():
        (out / f"{name}.png").write_bytes(fig["png"])
    write_json(out / "report.json", H.jsonable(report), indent=1, allow_nan=False)
    _page(report, figures).write(out / "report.html")
    report["out_dir"] = str(out)
    return report


def _page(report: dict, figures: dict[str, dict]) -> H.Page:
    runs = report["runs"]
    title = "Training report: " + " vs ".join(r["name"] for r in runs)
    page = H.Page(title)
    for n in report["notes"]:
        page.note(n, "warn")

    def metric(r: dict, key: str, field: str) -> Any:
        return (r.get(key) or {}).get(field)

    page.heading("Summary")
    spec = task_spec(runs[0]["task"])
    sv, tg, what = spec.metric_key("source_val"), spec.metric_key("target"), spec.metric_title
    page.table(("run", "method", "selection", "selected step", f"source val {what}", f"target {what} (selected)",
                f"target {what} (oracle)", "PAD metrics.json", "PAD recomputed", "PAD at objects", "train s"),
               [(r["name"], r["method"], r["selection"], metric(r, "selected", "step"),
                 H.pct(metric(r, "selected", sv)), H.pct(metric(r, "selected", tg)),
                 H.pct(metric(r, "oracle", tg)), r["proxy_a_distance"]["metrics_json"],
                 r["proxy_a_distance"]["recomputed"], r["proxy_a_distance"].get("objects"), r["train_seconds"])
                for r in runs], left=3)
    page.paragraph("Proxy A-distance: 2 (1 - 2 err) of a linear domain classifier on the features; 0 = the domains "
                   "cannot be told apart, 2 = perfectly separable. 'oracle' is the best target accuracy over the "
                   "evaluations, which needs target labels and so is not a fair model-selection number.")
    if any(r["proxy_a_distance"].get("objects") is not None for r in runs):
        page.paragraph("PAD at objects (detectors): the same measure on the feature vectors at the labelled objects' "
                       "centre cells (what the heads read), the source's boxes against the labelled eval target's. A "
                       "detector's pooled features mostly describe the background scene, so their PAD stays near 2 "
                       "whatever the objects do; this one says whether the objects themselves look alike.")
    sections = (("Training curves", ("task_loss", "domain_loss", "discriminator_accuracy", "lambda", "lr")),
                ("Evaluation metrics", ("accuracy", "map50", "im", "snd", "stability", "domain_accuracy")),
                ("Feature alignment", ("tsne",)),
                ("Labelled evaluation target", ("confusion_matrix",)))
    for heading, names in sections:
        present = [n for n in names if n in figures]
        if not present:
            continue
        page.heading(heading)
        for n in present:
            page.figure(figures[n]["png"], figures[n]["caption"])
    for r in runs:
        et = r.get("eval_target")
        if et:
            page.heading(f"Per-class scores on the eval target: {r['name']}", 3)
            page.table(("class", "labelled", "predicted", "precision", "recall"),
                       [(c, v["n"], v["predicted"], H.pct(v["precision"]), H.pct(v["recall"]))
                        for c, v in et["per_class"].items()])
    return page


# --------------------------------------------------------------------------- CLI
def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="HTML/JSON report of a training run (curves, t-SNE, PAD, confusion)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="training output_dir (metrics.json, tensorboard/, model.pt)")
    p.add_argument("--compare", help="a second run to show side by side (e.g. source-only vs DANN)")
    p.add_argument("--out", help="output folder (default: <run>/report)")
    p.add_argument("--points", type=int, default=500, help="t-SNE points per domain and run (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE embedding (the slowest part)")
    p.set_defaults(func=_run_report)
    return p


def _fmt(pad: float | None) -> str:
    return "-" if pad is None or not math.isfinite(pad) else f"{pad:.3f}"


def _run_report(args: argparse.Namespace) -> int:
    if args.points < 10:
        raise ValueError(f"--points must be at least 10, got {args.points}")
    report = build_report(args.run, args.compare, args.out, args.points, args.seed, not args.no_tsne)
    for r in report["runs"]:
        pad, spec = r["proxy_a_distance"]["recomputed"], task_spec(r["task"])
        value = (r.get("eval_target") or {}).get("accuracy") if spec.metric == "accuracy" else \
            (r.get("selected") or {}).get(spec.metric_key("target"))
        print(f"{r['name']}: eval-target {spec.format_metric(value)}, "
              f"proxy A-distance {_fmt(pad)}"
              + ("" if r["proxy_a_distance"].get("objects") is None else
                 f", at the labelled objects {_fmt(r['proxy_a_distance']['objects'])}"))
    for n in report["notes"]:
        print(f"note: {n}")
    print(f"wrote {Path(report['out_dir']) / 'report.html'} and report.json, {len(report['figures'])} figures")
    return 0
