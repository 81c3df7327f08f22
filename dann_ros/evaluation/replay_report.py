"""replay's report: outputs matched to the frames they answer (by header stamp), latency and drops
per camera, the task's score on the answered frames, figures, page, and the replay bag."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dann_ros.data.tasks import task_spec
from dann_ros.evaluation import html as H
from dann_ros.evaluation import plots
from dann_ros.evaluation.replay_ros import node_diagnostics
from dann_ros.evaluation.bag_report_tools import figure, latency_histogram, page_header, percentiles, show_figures
from dann_ros.evaluation.tasks import EvalTask, task_for

FORMAT = "dann_ros.replay/2"
LATENCY = "publish here -> the node's output received here (monotonic clock of this process)"


@dataclass
class Rows:
    """Published frames (all cameras), aligned with the node's decoded answers (None = dropped)."""

    topics: np.ndarray
    indices: np.ndarray
    stamps_ns: np.ndarray
    answers: list[Any]

    def subset(self, mask: np.ndarray) -> Rows:
        return Rows(self.topics[mask], self.indices[mask], self.stamps_ns[mask],
                    [a for a, m in zip(self.answers, mask) if m])


@dataclass
class Scored:
    """The task's view of a replay: None where the node named no classes (no label_info)."""

    task: EvalTask | None
    pred: dict | None = None
    scores: Any = None
    label_info: dict | None = None


def _match(cameras: dict, store: Any) -> tuple[dict, Rows, int, list[float]]:
    """Each camera's received outputs matched to its published frames by header stamp."""
    per_cam: dict[str, Any] = {}
    topics, indices, stamps, answers, all_lat = [], [], [], [], []
    unmatched = 0
    for cam in cameras.values():
        pending: dict[int, list[int]] = {}
        for i, (_, stamp, _, _) in enumerate(cam.published):
            pending.setdefault(stamp, []).append(i)
        answered: list[Any] = [None] * len(cam.published)
        latency = np.full(len(cam.published), np.nan)
        for mono, _, raw in cam.received:
            msg = store.deserialize_cdr(raw, cam.output_msgtype)  # the task's message type
            slots = pending.get(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
            if not slots:
                unmatched += 1
                continue
            i = slots.pop(0)
            latency[i] = (mono - cam.published[i][2]) / 1e6
            answered[i] = msg
        ok = ~np.isnan(latency)
        all_lat += latency[ok].tolist()
        t0 = cam.published[0][2] if cam.published else 0
        per_cam[cam.bag_topic] = {
            "input_topic": cam.input_topic, "output_topic": cam.output_topic, "msgtype": cam.msgtype,
            "output_msgtype": cam.output_msgtype, "published": len(cam.published), "answered": int(ok.sum()),
            "dropped": int((~ok).sum()), "drop_rate": float((~ok).mean()) if len(ok) else None,
            "latency_ms": percentiles(latency[ok]),
            "series": {"t_s": [(p[2] - t0) / 1e9 for p in cam.published], "latency_ms": latency.tolist()},
        }
        for (index, stamp, _, _), msg in zip(cam.published, answered):
            topics.append(cam.bag_topic)
            indices.append(index)
            stamps.append(stamp)
            answers.append(msg)
    rows = Rows(np.asarray(topics, dtype=str), np.asarray(indices, np.int64), np.asarray(stamps, np.int64), answers)
    return per_cam, rows, unmatched, all_lat


def analyse(opts: Any, task_name: str, cameras: dict, played: dict, label_info: dict, diagnostics: Any,
            labels: Any, label_note: str | None, node_started: bool, wall_s: float) -> tuple[dict, Scored]:
    from dann_ros.evaluation.result_bag import vision_typestore

    per_cam, rows, unmatched, all_lat = _match(cameras, vision_typestore())
    classes = None
    for cam in cameras.values():
        info = label_info.get(cam.bag_topic)
        if info is not None:
            classes = tuple(c.class_name for c in sorted(info.class_map, key=lambda c: c.class_id))
            break
    published = len(rows.answers)
    answered = np.array([a is not None for a in rows.answers], bool)
    spec = task_spec(task_name)
    scored = Scored(task_for(task_name, classes, opts.output) if classes else None)
    if scored.task is not None and answered.any():
        got = rows.subset(answered)
        scored.pred = scored.task.codec.from_messages(got.answers)
        if labels is not None:
            scored.scores, scored.label_info = scored.task.scorer.score(scored.pred, labels, got)
            scored.label_info["labelled_and_dropped"] = int((labels.file.match(rows).matched & ~answered).sum())
    elif labels is not None and published:
        label_note = "no label_info received from the node: class ids cannot be named, no score"
    value = scored.scores.value if scored.scores is not None else None
    report: dict[str, Any] = {
        "format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bag": str(opts.bag), "rate": opts.rate, "model": str(opts.model) if opts.model else None,
        "task": task_name, "node": "started by replay" if node_started else "already running",
        "qos_reliability": opts.qos_reliability, "domain_id": os.environ.get("ROS_DOMAIN_ID"),
        "duration_s": played["duration_s"], "wall_s": wall_s,
        "frames": {"published": published, "answered": int(answered.sum()), "dropped": int((~answered).sum()),
                   "drop_rate": float((~answered).mean()) if published else None, "unmatched_outputs": unmatched},
        "latency_ms": percentiles(all_lat), "latency_definition": LATENCY,
        "publish_lag_ms": percentiles(played["lag_ms"]),
        "cameras": per_cam, "read_error": played["read_error"], "read_notes": played["notes"],
        "stopped_early": played["stopped_early"], "node_exit": played.get("node_exit"),
        "classes": list(classes) if classes else None,
        "outputs": scored.task.codec.options_json() if scored.task is not None else None,
        "metric": {"key": spec.metric, "title": spec.metric_title, "definition": spec.metric_detail, "value": value},
        spec.metric: value, "labels": None, "scores": None, "label_note": label_note,
        "node_diagnostics": node_diagnostics(diagnostics, cameras),
    }
    if scored.scores is not None:
        report["labels"] = {k: v for k, v in scored.label_info.items() if k != "label_ids"}
        report["scores"] = scored.scores.to_json()
    return report, scored


def write_record(path: Path, cameras: dict, played: dict) -> dict:
    """Frames as published and outputs as received, merged in wall-clock order."""
    from dann_ros.evaluation.result_bag import ResultBagWriter

    events: list[tuple[int, int, Any]] = [(wall, 0, (topic, raw)) for topic, wall, raw in played["record"]]
    msgtypes = {cam.output_topic: cam.output_msgtype for cam in cameras.values()}
    for cam in cameras.values():
        events += [(wall, 1, (cam.output_topic, raw)) for _, wall, raw in cam.received]
    events.sort(key=lambda e: (e[0], e[1]))
    try:
        with ResultBagWriter(path) as writer:
            for wall, kind, (topic, raw) in events:
                if kind == 0:
                    writer.copy(played["connections"][topic], wall, raw)  # under the topic it was published on
                else:
                    out = topic if topic.startswith("/") else "/" + topic
                    writer.write_raw_output(out, msgtypes[topic], wall, raw)
            counts = dict(writer.counts)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return {"path": str(path), "messages_per_topic": counts}


def figures(report: dict, scored: Scored) -> dict[str, dict]:
    """Latency and drops, then the task's figures of the answered frames."""
    figs: dict[str, dict] = {}
    lat = {t: np.asarray(c["series"]["latency_ms"], float) for t, c in report["cameras"].items()}
    if any(np.isfinite(v).any() for v in lat.values()):
        figs["latency"] = latency_histogram(lat, "End-to-end latency", "milliseconds (publish -> output received)",
                                            report["latency_definition"] + "; values above p99.5 are counted in the "
                                            "last bin")
    if report["cameras"]:
        fig, ax = plots.figure()
        multi = len(report["cameras"]) > 1
        for t, c in report["cameras"].items():
            x, y = np.asarray(c["series"]["t_s"], float), lat[t]
            ok = ~np.isnan(y)
            ax.plot(x[ok], y[ok], ".-", markersize=4, linewidth=1, label=f"latency {t}" if multi else "latency")
            if (~ok).any():
                ax.plot(x[~ok], np.zeros((~ok).sum()), "x", color="tab:red", markersize=6,
                        label=f"dropped {t}" if multi else "dropped (no output)")
        ax.legend()
        plots.style(ax, "Latency and drops over the replay", "time since the first publish (s)", "milliseconds")
        figs["latency_over_time"] = figure(
            plots.to_png(fig), "Each frame's end-to-end latency; red crosses are frames the node never answered",
            {"title": "Latency over the replay",
             "cameras": {t: {"t_s": c["series"]["t_s"], "latency_ms": c["series"]["latency_ms"],
                             "dropped": [bool(np.isnan(v)) for v in lat[t]]} for t, c in report["cameras"].items()}})
    if scored.task is not None and scored.pred is not None:
        figs.update(scored.task.section.figures(scored.pred, scored.scores, scored.label_info))
    return figs


def page(report: dict, figs: dict[str, dict], scored: Scored) -> H.Page:
    f, lat, metric = report["frames"], report["latency_ms"], report["metric"]
    p = page_header(f"replay: {Path(report['bag']).name} at {report['rate']:g}x", [
        ("bag", report["bag"]), ("node", f"{report['node']}" + (f" ({report['model']})" if report["model"] else "")),
        ("task", report["task"]),
        ("rate", f"{report['rate']:g}x real time, input QoS {report['qos_reliability']}"),
        ("replay duration", f"{report['duration_s']:.2f} s"),
        ("frames published", f["published"]), ("frames answered", f["answered"]),
        ("frames dropped", f"{f['dropped']} ({H.pct(f['drop_rate'])})"),
        ("latency p50 / p90 / p99", f"{H.fmt(lat['p50'])} / {H.fmt(lat['p90'])} / {H.fmt(lat['p99'])} ms"),
        (f"{metric['title']} (answered, labelled frames)", H.pct(metric["value"]) if metric["value"] is not None
         else "no labels"),
        ("created", report["created"]),
    ], [(report.get(k), "error" if k == "node_exit" else "warn")
        for k in ("node_exit", "read_error", "stopped_early", "label_note")])
    p.heading("Per camera")
    p.table(("bag topic", "published to", "output topic", "published", "answered", "dropped", "p50 ms", "p99 ms"),
            [(t, c["input_topic"], c["output_topic"], c["published"], c["answered"], c["dropped"],
              c["latency_ms"]["p50"], c["latency_ms"]["p99"]) for t, c in report["cameras"].items()], left=3)
    p.paragraph(f"Latency: {report['latency_definition']}. A drop is a published frame without an output "
                f"(dann_node keeps only the newest frame per camera). Publish lag behind the bag's schedule: "
                f"p50 {H.fmt(report['publish_lag_ms']['p50'])} ms, max {H.fmt(report['publish_lag_ms']['max'])} ms.")
    show_figures(p, figs, ["latency", "latency_over_time"])
    if scored.task is not None and scored.pred is not None:
        scored.task.section.html(p, report, figs)
    if report["node_diagnostics"]:
        p.heading("The node's own diagnostics (last /diagnostics message)")
        for t, values in report["node_diagnostics"].items():
            p.heading(t, 3)
            p.table(("key", "value"), sorted(values.items()), left=2)
    return p
