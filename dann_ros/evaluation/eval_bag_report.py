"""eval-bag's report: report.json's content, its figures and its HTML page (the task's own parts
come from evaluation/tasks, the shared parts from evaluation/bag_report_tools)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.frames import FrameTable
from dann_ros.evaluation.bag_report_tools import (figure, latency_histogram, page_header, percentiles, show_figures,
                                           thin)


@dataclass
class DomainShift:
    window: int
    reference: float  # the GRL discriminator's reference (the feature monitor's is 0)
    monitor: str  # which score sets the shift: "feature_shift" or "grl_discriminator" (dann_ros.ros.diagnostics)
    score: np.ndarray  # (N,) the monitor's per-frame input: feature_shift, or P(synthetic source)
    shift: np.ndarray  # (N,) the node's score after each frame
    domain: np.ndarray | None  # (N,) the discriminator's P(frame looks like the synthetic source); None without
    grl_shift: np.ndarray | None  # (N,) the discriminator's score when it is the second monitor


def _per_frame(frames: FrameTable, name: str) -> np.ndarray | None:
    values = frames.outputs.get(name)
    return None if values is None else np.asarray(values, float).reshape(len(frames), -1).mean(1)


def domain_shift(frames: FrameTable, window: int, reference: float) -> DomainShift | None:
    """The node's domain-shift score after each frame, per camera (dann_ros.ros.diagnostics: the feature
    monitor's when the model has one, else the discriminator's); None for a model with neither output."""
    from dann_ros.ros.diagnostics import FEATURE_SHIFT, GRL, CameraMonitor

    domain, feature = _per_frame(frames, "domain"), _per_frame(frames, "feature_shift")
    kind = FEATURE_SHIFT if feature is not None else GRL if domain is not None else None
    if kind is None:
        return None
    monitors: dict[str, CameraMonitor] = {}
    shift, grl = np.empty(len(frames)), np.full(len(frames), np.nan)
    for i, topic in enumerate(frames.topics):
        mon = monitors.setdefault(topic, CameraMonitor(kind, window, reference, domain is not None))
        mon.add(None if domain is None else float(domain[i]), None if feature is None else float(feature[i]))
        shift[i] = mon.shift()
        if mon.grl is not None:
            grl[i] = mon.grl.shift()
    return DomainShift(window, reference, kind, feature if kind == FEATURE_SHIFT else domain, shift, domain,
                       grl if kind == FEATURE_SHIFT and domain is not None else None)


_DEFINITIONS = {
    "feature_shift": "dann_node's score with the feature monitor (fitted at export on the frozen features of the "
                     "adaptation-target frames): mean over the camera's last `window` frames of feature_shift, "
                     "~0 on frames like the adaptation target, -> 1 beyond",
    "grl_discriminator": "dann_node's score: mean over the camera's last `window` frames of |domain - reference| / "
                         "max(reference, 1 - reference); domain = P(frame looks like the synthetic source)",
}


def _domain_block(shift: DomainShift, chosen: list[str], frames: FrameTable) -> dict:
    """Per topic: the node's score (final, mean, max) and how many frames, and what share, it would have
    reported at WARN or worse / at ERROR (dann_ros.ros.diagnostics.shift_level, dann_node's default levels)."""
    from dann_ros.ros.diagnostics import ERROR, WARN, shift_level
    from dann_ros.ros.params import PARAMETERS

    warn, error = PARAMETERS["domain_shift_warn"][0], PARAMETERS["domain_shift_error"][0]

    def levels(scores: np.ndarray) -> np.ndarray:
        return np.array([shift_level(float(v), warn, error) for v in scores], dtype=int)

    ds: dict[str, Any] = {"monitor": shift.monitor, "window": shift.window,
                          "reference": 0.0 if shift.monitor == "feature_shift" else shift.reference,
                          "grl_reference": shift.reference, "warn": warn, "error": error,
                          "definition": _DEFINITIONS[shift.monitor], "topics": {}}
    for t in chosen:
        m = frames.topics == t
        if m.any():
            s = shift.shift[m]
            level = levels(s)
            ds["topics"][t] = {"final": float(s[-1]), "mean": float(s.mean()), "max": float(s.max()),
                               "mean_domain_score": None if shift.domain is None else float(shift.domain[m].mean()),
                               "frames_at_or_above_warn": int((level >= WARN).sum()),
                               "frames_at_or_above_error": int((level >= ERROR).sum()),
                               "share_at_or_above_warn": float((level >= WARN).mean())}
            if shift.monitor == "feature_shift":
                g = None if shift.grl_shift is None else shift.grl_shift[m]
                ds["topics"][t].update({"mean_feature_shift": float(shift.score[m].mean()),
                                        "grl_final": None if g is None else float(g[-1]),
                                        "grl_mean": None if g is None else float(g.mean()),
                                        "grl_share_at_or_above_warn":
                                            None if g is None else float((levels(g) >= WARN).mean())})
    return ds


def build_report(predictor: Any, opts: Any, meta: Any, chosen: list[str], frames: FrameTable, stats: Any, task: Any,
                 pred: dict, scores: Any, label_info: dict | None, label_note: str | None, shift: DomainShift | None,
                 run: Any, frames_wall: float, bag_report: dict | None) -> dict:
    info = predictor.info
    n = len(frames)
    per_topic = {}
    for t in chosen:
        counts = stats.topics.get(t)
        listed = meta.image_topics[t][1]
        seen = (counts.decoded + counts.skipped) if counts else 0
        per_topic[t] = {"msgtype": meta.image_topics[t][0],
                        "messages_in_bag": None if listed == 0 and seen else listed,  # a truncated MCAP lists none
                        "decoded": counts.decoded if counts else 0, "skipped": counts.skipped if counts else 0}
    sizes = sorted({(int(h), int(w)) for h, w in frames.sizes.tolist()})
    spec = task.spec
    report: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": opts.model_path, "backend": getattr(predictor.backend, "name", "?"), "task": info.task,
                  "classes": list(info.classes), "input_shape": list(info.preprocess.input_shape),
                  "domain_monitor": shift is not None},
        "bag": {"path": str(opts.bag), "start_ns": meta.start_ns, "end_ns": meta.end_ns, "topics": per_topic,
                "image_sizes": [f"{w}x{h}" for h, w in sizes]},
        "frames": {"evaluated": n, "decoded": stats.decoded, "skipped": stats.skipped, "complete": stats.ok,
                   "skipped_examples": list(stats.examples), "read_errors": list(stats.read_errors),
                   "summary": stats.summary()},
        "throughput": {"frames_per_second": n / frames_wall if frames_wall > 0 else None,
                       "frames_per_second_with_outputs": n / run.wall_s if run.wall_s > 0 else None,
                       "frames_wall_s": frames_wall, "wall_s": run.wall_s, "decoder_thread_s": run.decode_wall_s,
                       "inference_s": run.inference_s, "result_bag_s": run.result_bag_s,
                       "batch_size": opts.batch_size, "batches": int(len(frames.batch_ms))},
        "latency_ms": {"decode": percentiles(frames.decode_ms), "prepare": percentiles(frames.prepare_ms),
                       "inference_per_frame": percentiles(frames.inference_ms),
                       "processing_per_frame": percentiles(frames.total_ms),
                       "batch_inference": percentiles(frames.batch_ms),
                       "definition": "decode = read + deserialize + decode to RGB (iter_frames); prepare = "
                                     "Preprocess.prepare; inference_per_frame = the frame's share of its batch's model "
                                     "call; processing_per_frame = their sum"},
        "outputs": task.codec.options_json(),
        "predictions": task.scorer.summary(pred),
        "metric": {"key": spec.metric, "title": spec.metric_title, "definition": spec.metric_detail,
                   "value": scores.value if scores is not None else None},
        spec.metric: scores.value if scores is not None else None,
        "labels": None, "scores": None, "label_note": label_note,
        "domain_shift": _domain_block(shift, chosen, frames) if shift is not None else None,
        "result_bag": bag_report,
    }
    if scores is not None:
        report["labels"] = {k: v for k, v in (label_info or {}).items() if k != "label_ids"}
        report["scores"] = scores.to_json()
    return report


def figures(report: dict, frames: FrameTable, task: Any, pred: dict, scores: Any, label_info: dict | None,
            shift: DomainShift | None) -> dict[str, dict]:
    """The task's figures, then domain shift and latency."""
    figs: dict[str, dict] = task.section.figures(pred, scores, label_info)
    t_s = (frames.log_times_ns - int(frames.log_times_ns.min())) / 1e9
    if shift is not None:
        ds = report["domain_shift"]
        data, line_series = {}, {}
        multi = len(ds["topics"]) > 1
        for topic in ds["topics"]:
            m = frames.topics == topic
            x, y_shift = thin(t_s[m], shift.shift[m])
            data[topic] = {"t_s": x, "shift": y_shift}
            line_series[f"shift {topic}" if multi else "domain-shift score"] = (t_s[m], shift.shift[m])
            if shift.monitor == "feature_shift":
                data[topic]["feature_shift"] = thin(t_s[m], shift.score[m])[1]
                line_series[f"feature_shift {topic}" if multi else "feature_shift per frame"] = (t_s[m], shift.score[m])
            if shift.domain is not None:
                data[topic]["domain_score"] = thin(t_s[m], shift.domain[m])[1]
                line_series[f"P(synthetic) {topic}" if multi else "P(synthetic) per frame"] = (t_s[m], shift.domain[m])
        figs["domain_shift"] = figure(
            plots.lines(line_series, f"Domain shift over time (window {ds['window']} frames)",
                        "recording time since the first frame (s)", "score",
                        hlines={f"warn {ds['warn']:g}": ds["warn"], f"error {ds['error']:g}": ds["error"]},
                        ylim=(-0.02, 1.02)),
            ("dann_node's domain-shift score from the feature monitor (0 = like the adaptation target), its "
             "per-frame feature_shift" if shift.monitor == "feature_shift" else
             "dann_node's domain-shift score (0 = like the adapted target, 1 = the discriminator is sure of a domain)")
            + (" and the per-frame discriminator output P(synthetic source)" if shift.domain is not None else ""),
            {"title": "Domain shift over time", "monitor": ds["monitor"], "window": ds["window"],
             "reference": ds["reference"],
             "warn": ds["warn"], "error": ds["error"], "topics": data})
    figs["latency"] = latency_histogram(
        {"decode": frames.decode_ms, "prepare": frames.prepare_ms, "inference (share of batch)": frames.inference_ms,
         "total": frames.total_ms}, "Per-frame processing time", "milliseconds (values above p99.5 in the last bin)",
        "Decode (read + deserialize + decode), prepare (resize/reorder), the frame's share of its batch's model "
        "time, and their sum", {"percentiles_ms": report["latency_ms"]})
    x, y = thin(t_s, frames.total_ms)
    figs["latency_over_time"] = figure(
        plots.lines({"processing time per frame": (t_s, frames.total_ms)}, "Processing time over the recording",
                    "recording time since the first frame (s)", "milliseconds"),
        "Per-frame processing time (decode + prepare + share of model time) along the bag",
        {"title": "Processing time over the recording", "t_s": x, "total_ms": y})
    return figs


def page(report: dict, figs: dict[str, dict], task: Any) -> H.Page:
    m, b, f, tp, metric = report["model"], report["bag"], report["frames"], report["throughput"], report["metric"]
    p = page_header(f"eval-bag: {Path(b['path']).name}", [
        ("model", f"{m['path']} ({m['backend']}, {m['task']}, {len(m['classes'])} classes, input "
                  f"{'x'.join(map(str, m['input_shape']))})"),
        ("bag", b["path"]), ("topics", ", ".join(b["topics"])), ("image sizes", ", ".join(b["image_sizes"])),
        ("frames evaluated", f["evaluated"]), ("frames skipped", f["skipped"]),
        (metric["title"], H.pct(metric["value"]) if metric["value"] is not None else "no labels"),
        ("throughput", f"{tp['frames_per_second']:.1f} frames/s (decode, prepare, model; batch {tp['batch_size']})"),
        ("result bag", report["result_bag"]["path"] if report["result_bag"] else "not written"),
        ("created", report["created"]),
    ], [("Partly evaluated: " + f["summary"] if not f["complete"] else "", "warn"), (report.get("label_note"), "warn")])
    task.section.html(p, report, figs)

    p.heading("Domain shift")
    ds = report["domain_shift"]
    if ds is None:
        p.note("The model has no domain monitor output (exported without the discriminator).", "warn")
    else:
        p.paragraph(f"Monitor: {ds['monitor']}. Definition: " + ds["definition"] + f". Window {ds['window']} "
                    f"frames, reference {ds['reference']:g}, WARN at {ds['warn']:g}, ERROR at {ds['error']:g} "
                    "(dann_node's defaults).")
        grl = ds["monitor"] == "feature_shift"
        p.table(("topic", "final", "mean", "max") + (("mean feature_shift per frame",) if grl else ())
                + ("mean P(synthetic)",) + (("GRL discriminator's score, mean", "GRL: share >= warn") if grl else ())
                + ("frames >= warn", "share >= warn", "frames >= error"),
                [(t, v["final"], v["mean"], v["max"]) + ((v["mean_feature_shift"],) if grl else ())
                 + (v["mean_domain_score"],)
                 + ((v["grl_mean"], H.pct(v["grl_share_at_or_above_warn"], 1)) if grl else ())
                 + (v["frames_at_or_above_warn"], H.pct(v["share_at_or_above_warn"], 1), v["frames_at_or_above_error"])
                 for t, v in ds["topics"].items()])
        if grl:
            p.paragraph("The GRL discriminator's score (reference "
                        f"{ds['grl_reference']:g}) is shown beside it: a discriminator fooled at equilibrium "
                        "may say little about new shift.")
        show_figures(p, figs, ["domain_shift"])

    p.heading("Latency and throughput")
    lat = report["latency_ms"]
    p.table(("stage (ms)", "mean", "p50", "p90", "p99", "max"),
            [(name, v["mean"], v["p50"], v["p90"], v["p99"], v["max"]) for name, v in lat.items()
             if isinstance(v, dict)])
    p.paragraph(lat["definition"] + ".")
    p.paragraph(f"Wall time {tp['wall_s']:.2f} s ({tp['frames_wall_s']:.2f} s decoding and inference, overlapped; "
                f"{tp['inference_s']:.2f} s in the model; {tp['result_bag_s']:.2f} s writing the result bag).")
    show_figures(p, figs, ["latency", "latency_over_time"])

    p.heading("Frames read and skipped")
    p.table(("topic", "type", "messages in bag", "decoded", "skipped"),
            [(t, v["msgtype"], v["messages_in_bag"], v["decoded"], v["skipped"]) for t, v in b["topics"].items()])
    if f["skipped_examples"]:
        p.paragraph("Examples of skipped frames:")
        p.table(("frame: reason",), [(e,) for e in f["skipped_examples"]])
    for e in f["read_errors"]:
        p.note(e, "error")
    if f["complete"]:
        p.note("Every selected message was read and decoded.", "ok")
    rb = report["result_bag"]
    if rb:
        p.heading("Result bag")
        p.paragraph(f"{rb['path']} ({rb['storage']}): {rb['input_messages']} input messages copied, "
                    f"{rb['outputs']} outputs. Open it in Foxglove Studio or RViz.")
        p.table(("topic", "messages"), sorted(rb["messages_per_topic"].items()))
    return p
