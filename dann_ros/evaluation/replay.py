"""``dann-ros replay``: the project's own bag player, with dann_node in the loop.

Plays a bag's camera topics into ROS 2 in real time (or ``--rate`` times faster), keeping
every message's original bytes and so its header stamp, records what the node publishes and
matches outputs to inputs by header stamp. Reports end-to-end latency (publish here -> the
node's output received here, both on this process's monotonic clock), the frames the node never
answered (drops), and the task's score where a label file exists (accuracy, or mAP@0.5 of the
published detections); writes ``replay_bag/`` (the frames as published and the outputs as
received, with wall-clock log times), report.json and report.html.

With ``--model`` the node is started here as a subprocess (config/dann_ros.yaml, autostart,
an isolated DDS domain on loopback, the Fast DDS shared-memory profile) and stopped at the
end. Without it, an already running node is used (``--input-topic``/``--output-topic`` name
its topics, ``--task`` what it publishes; this process uses the caller's ROS environment).

Messages are published as their serialized bytes (rclpy's Publisher.publish accepts bytes),
so nothing is converted and the stamps are exactly the recorded ones.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dann_ros.data.bags import BagError, RawMessage, bag_info, iter_messages, open_bag
from dann_ros.data.labels import resolve_labels
from dann_ros.data.tasks import TASK_SPECS, task_spec
from dann_ros.evaluation.frames import Prefetch
from dann_ros.evaluation.replay_options import ReplayCamera, ReplayOptions
from dann_ros.evaluation.replay_report import analyse, figures, page, write_record
from dann_ros.evaluation.replay_ros import (ReplayError, RosSide, environment, header_stamp_ns, process_env,
                                            start_node, wait_outputs, wait_ready)
from dann_ros.evaluation.bag_report_tools import claim_bag_output, default_out_dir, write_reports
from dann_ros.evaluation.tasks import OutputOptions, task_for
from dann_ros.ros import names
from dann_ros.ros.outputs import output_topic_name

__all__ = ["ReplayCamera", "ReplayError", "ReplayOptions", "header_stamp_ns", "replay", "summary"]


# --------------------------------------------------------------------------- cameras and task
def _cameras(opts: ReplayOptions, image_topics: dict[str, tuple[str, int]], task: str) -> dict[str, ReplayCamera]:
    from dann_ros.evaluation.result_bag import output_topics

    chosen = list(opts.topics) or sorted(image_topics)
    for t in chosen:
        if t not in image_topics:
            raise BagError(f"topic {t!r} is not an image topic of {opts.bag}; image topics: {sorted(image_topics)}")
    for flag, given in (("--input-topic", opts.input_topics), ("--output-topic", opts.output_topics)):
        if given and len(given) != len(chosen):
            raise ValueError(f"{flag} given {len(given)} times for {len(chosen)} camera topics {chosen}; "
                             "give one per --topic, in the same order")
    inputs = list(opts.input_topics) or chosen
    compressed = [image_topics[t][0].endswith("CompressedImage") for t in chosen]
    spec = task_spec(task)
    outs = list(opts.output_topics) or list(output_topics(inputs, output_topic_name(task), compressed).values())
    infos = [f"{o.rsplit('/', 1)[0]}/{names.LABEL_INFO}" if "/" in o.strip("/") else names.LABEL_INFO for o in outs] \
        if opts.output_topics else list(output_topics(inputs, names.LABEL_INFO, compressed).values())
    return {t: ReplayCamera(t, image_topics[t][0], i, o, li, output_msgtype=spec.output_msgtype)
            for t, i, o, li in zip(chosen, inputs, outs, infos)}


def model_task(opts: ReplayOptions) -> str:
    """What the node will publish: from the model file's own metadata when replay starts the node."""
    if opts.task != "auto":
        return opts.task
    if opts.model is None or not Path(opts.model).exists():
        return "classification"
    suffix = Path(opts.model).suffix
    if suffix == ".onnx":
        from dann_ros.runtime.backends import onnx_info

        return onnx_info(Path(opts.model)).task
    if suffix == ".pt":
        from dann_ros.train.checkpoint import load

        return str(load(opts.model).get("task", "classification"))
    return "classification"


# --------------------------------------------------------------------------- playback
def _sleep_until(target_ns: int) -> None:
    while True:
        left = target_ns - time.monotonic_ns()
        if left <= 0:
            return
        time.sleep(min(left / 1e9, 0.05) if left > 2_000_000 else left / 2e9)


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _messages(bag: Path, topics: list[str], state: dict) -> Iterator[RawMessage]:
    """The bag's raw camera messages, read ahead of the player by the shared reader (so disk and
    chunk decompression never delay a publish); stops at the first unreadable one."""
    try:
        source = open_bag(bag)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the node still gets stopped cleanly
        state["errors"].append(str(exc))
        return
    with source:
        state["notes"] = list(source.notes)
        yield from iter_messages(source, topics, errors=state["errors"], path=bag)


def _play(opts: ReplayOptions, cameras: dict[str, ReplayCamera], ros: RosSide) -> dict:
    pubs = {cam.bag_topic: pub for cam, pub in zip(cameras.values(), ros.publishers)}
    state: dict[str, list] = {"errors": [], "notes": []}
    start_mono = first_log = None
    lag_ns: list[int] = []
    connections: dict[str, Any] = {}
    record: list[tuple[str, int, bytes]] = []  # (bag topic, publish wall ns, raw) for the replay bag
    stopped_early = None
    reader = Prefetch(lambda: _messages(opts.bag, list(cameras), state), "replay_reader", chunk=4, depth=16)
    try:
        for m in reader:
            if start_mono is None:
                start_mono, first_log = time.monotonic_ns(), m.log_time_ns
            target = start_mono + int((m.log_time_ns - first_log) / opts.rate)
            if opts.max_duration is not None and target - start_mono > opts.max_duration * 1e9:
                stopped_early = f"--max-duration {opts.max_duration:g} s reached"
                break
            _sleep_until(target)
            topic, raw = m.connection.topic, bytes(m.raw)
            cam = cameras[topic]
            stamp = header_stamp_ns(raw)
            mono, wall = time.monotonic_ns(), time.time_ns()
            pubs[topic].publish(raw)
            lag_ns.append(mono - target)
            with cam.lock:
                cam.published.append((m.index, stamp, mono, wall))
            if opts.record_bag:
                if topic not in connections:
                    connections[topic] = m.connection._replace(topic=_absolute(cam.input_topic))
                record.append((topic, wall, raw))
    finally:
        reader.close()
    duration = (time.monotonic_ns() - start_mono) / 1e9 if start_mono is not None else 0.0
    return {"duration_s": duration, "lag_ms": np.asarray(lag_ns, float) / 1e6,
            "read_error": state["errors"][0] if state["errors"] else None, "notes": state["notes"],
            "stopped_early": stopped_early, "connections": connections, "record": record}


# --------------------------------------------------------------------------- the replay
def replay(opts: ReplayOptions) -> dict:
    """Play, record, match; returns the report (also written to ``opts.out`` when set)."""
    meta = bag_info(opts.bag)
    if not meta.image_topics:
        raise BagError(f"bag {opts.bag} has no sensor_msgs Image or CompressedImage topic")
    task = model_task(opts)
    cameras = _cameras(opts, meta.image_topics, task)
    labels, label_note = resolve_labels(opts.bag, opts.labels, task, list(cameras))
    if opts.model is not None:
        if len({c.compressed for c in cameras.values()}) > 1:
            raise ValueError("dann_node takes either raw or compressed images; replay raw and compressed topics "
                             "in two runs (--topic)")
        if not Path(opts.model).exists():
            raise FileNotFoundError(f"model file not found: {opts.model}")
        from dann_ros.ros.topics import camera_topics

        cams = list(cameras.values())
        camera_topics([c.input_topic for c in cams], cams[0].compressed)  # the node's own check, before it starts
    out = Path(opts.out) if opts.out is not None else None
    if out is not None and opts.record_bag:
        claim_bag_output(out / "replay_bag", opts.overwrite)

    env_values, node_env, domain_id = environment(opts)
    node = None
    t_start = time.monotonic()
    try:
        with process_env(env_values, isolated=opts.model is not None):
            try:
                ros = RosSide(list(cameras.values()), opts.qos_reliability)
            except ImportError as exc:
                raise ReplayError(f"rclpy is not importable here ({exc})") from None
            try:
                if opts.model is not None:
                    node = start_node(opts, cameras, node_env, out)
                wait_ready(opts, ros, cameras, node)
                played = _play(opts, cameras, ros)
                wait_outputs(opts, cameras, node)
                if node is not None and not node.alive():
                    played["node_exit"] = (f"dann_node exited with {node.proc.returncode} during the replay "
                                           f"(log: {node.log_path})")
                ros.wait_fresh_diagnostics()
                diagnostics = ros.diagnostics
                label_info = dict(ros.label_info)
            finally:
                if node is not None:
                    node.stop()
                ros.close()
    finally:
        if domain_id is not None:
            from dann_ros.ros.env import release_domain_id

            release_domain_id(domain_id)
    report, scored = analyse(opts, task, cameras, played, label_info, diagnostics, labels, label_note,
                             node is not None, time.monotonic() - t_start)
    if out is not None:
        if opts.record_bag:
            report["replay_bag"] = write_record(out / "replay_bag", cameras, played)
        figs = figures(report, scored)
        write_reports(out, report, figs, page(report, figs, scored))
    return report


# --------------------------------------------------------------------------- CLI
def add_replay_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    node = OutputOptions.node_defaults()
    p = subparsers.add_parser("replay", help="play a bag into ROS 2 with dann_node in the loop: latency, drops, "
                                             "accuracy or mAP", description=__doc__.splitlines()[0])
    p.add_argument("--bag", required=True, help="rosbag2 folder (any name, e.g. run1.bag), or a .mcap/.db3 file")
    p.add_argument("--model", help="start dann_node with this model (isolated domain); without: use a running node")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0 = real time)")
    p.add_argument("--topic", action="append", help="bag camera topic to play (repeatable; default: all)")
    p.add_argument("--input-topic", action="append", help="publish the matching --topic here instead (a running "
                                                          "node's input)")
    p.add_argument("--output-topic", action="append",
                   help="the node's Classification (or Detection2DArray) topic for the matching --topic")
    p.add_argument("--task", choices=["auto", *TASK_SPECS], default="auto",
                   help="what the node publishes (auto: from --model, else classification)")
    p.add_argument("--top-k", type=int, default=node.top_k, help="the node's top_k (passed on with --model)")
    p.add_argument("--detection-threshold", type=float, default=node.detection_threshold,
                   help="the node's detection_threshold (passed on with --model)")
    lab = p.add_mutually_exclusive_group()
    lab.add_argument("--labels", help="label file (default: <bag>.labels.json when it exists)")
    lab.add_argument("--no-labels", action="store_true")
    p.add_argument("--out", help="report folder (default: <bag>.replay next to the bag)")
    p.add_argument("--qos", default="best_effort", choices=["best_effort", "reliable"],
                   help="reliability of the camera publishers (and of the node's input with --model)")
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for the node (default 60)")
    p.add_argument("--grace", type=float, default=2.0, help="seconds to wait for late outputs after the last frame")
    p.add_argument("--max-duration", type=float, help="stop playing after this many seconds")
    p.add_argument("--dds-profile", default="auto",
                   help="Fast DDS profile: auto (config/fastdds_shm.xml), none, or a file")
    p.add_argument("--no-record", action="store_true", help="do not write replay_bag/")
    p.add_argument("--overwrite", action="store_true", help="replace a replay_bag/ left by an earlier run")
    p.set_defaults(func=_run_replay)
    return p


def _run_replay(args: argparse.Namespace) -> int:
    opts = ReplayOptions(
        bag=Path(args.bag), topics=tuple(args.topic or ()), rate=args.rate,
        model=Path(args.model) if args.model else None, backend=args.backend,
        input_topics=tuple(args.input_topic or ()), output_topics=tuple(args.output_topic or ()),
        labels=False if args.no_labels else (args.labels or None),
        out=Path(args.out) if args.out else default_out_dir(args.bag, "replay"), qos_reliability=args.qos,
        start_timeout=args.start_timeout, grace=args.grace, max_duration=args.max_duration,
        dds_profile=args.dds_profile, record_bag=not args.no_record, overwrite=args.overwrite, task=args.task,
        output=OutputOptions(args.top_k, args.detection_threshold))
    print(summary(replay(opts), opts))
    return 0


def summary(r: dict, opts: ReplayOptions) -> str:
    """The replay result in a few lines, for the CLI and the demo."""
    f, lat = r["frames"], r["latency_ms"]
    lines = [f"replayed {f['published']} frames of {opts.bag} at {opts.rate:g}x in {r['duration_s']:.2f} s: "
             f"{f['answered']} answered, {f['dropped']} dropped"]
    if lat["n"]:
        lines.append(f"latency ms: p50 {lat['p50']:.2f}, p90 {lat['p90']:.2f}, p99 {lat['p99']:.2f}, "
                     f"max {lat['max']:.2f}")
    if r["scores"] is not None:
        lines.append(task_for(r["task"], r["classes"], opts.output).section.summary_line(
            r, "labelled answered frames"))
    if r.get("label_note"):
        lines.append(r["label_note"])
    lines += [f"WARNING: {r[key]}" for key in ("node_exit", "read_error", "stopped_early") if r.get(key)]
    if opts.out is not None:
        lines.append(f"wrote {opts.out / 'report.html'}, {opts.out / 'report.json'}")
    return "\n".join(lines)
