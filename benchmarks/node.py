"""Output rate and end-to-end latency of dann_node against the bare Predictor, raw and compressed input.

Starts dann_node in its own process (Fast DDS SHM profile, isolated domain, the launch file's
parameters file), publishes 640x480 rgb8 frames at 30 Hz for a fixed time and
measures, per frame, input stamp -> receipt of the output (vision_msgs/Classification or
Detection2DArray, by the model's task) here. Drops are frames published without an output;
the output rate is outputs per second of streaming, against the publish rate. The same frames
then go through the Predictor (predict / detect: preprocessing, model, results) in this
process: the bare cost, paced at the stream rate and back to back, whose rate is the ceiling
the node is compared with. An echo process (subscribe + republish the header, no model)
gives the DDS/rclpy floor for moving the frame. The tables report the node's overhead over
the bare Predictor (e2e p50 - predict p50), the same over decode + predict, and the in-node
part (the node's own receive -> publish p50 - decode + predict).

    .venv/bin/python benchmarks/node.py [--model m.onnx] [--seconds 10] [--modes raw,compressed]
    .venv/bin/python benchmarks/node.py --model runs/demo/det_dann/model.onnx   # the demo detector
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dann_ros.ros import names  # noqa: E402
from dann_ros.ros.arguments import node_command  # noqa: E402
from dann_ros.ros.env import isolated_ros_env  # noqa: E402

NAMESPACE = "/bench"


def tiny_model(out_dir: Path) -> Path:
    """A random-weight classifier with its domain discriminator (28x28 input, 10 classes)."""
    import torch

    from dann_ros.data.preprocess import Preprocess
    from dann_ros.export.onnx_export import export_onnx
    from dann_ros.model.builders import build_classifier, build_domain_loss
    from dann_ros.model.config import ModelConfig
    from dann_ros.train.checkpoint import model_state, save_atomic

    torch.manual_seed(0)
    pre, cfg, classes = Preprocess(), ModelConfig(discriminator_hidden=64), tuple(str(i) for i in range(10))
    model = build_classifier(cfg, len(classes), pre).eval()
    disc = build_domain_loss(cfg, model.feature_dim).discriminator.eval()
    ckpt = out_dir / "bench_model.pt"
    save_atomic(model_state(model, disc, task="classification", classes=classes, preprocess=pre,
                            model_config=cfg, digest="bench", step=0), ckpt)
    onnx_path = out_dir / "bench_model.onnx"
    export_onnx(ckpt, onnx_path)
    return onnx_path


def make_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(n):
        base = (np.sin(xx / (17 + i)) * 60 + np.cos(yy / (23 + i)) * 60 + 128)
        noise = rng.integers(0, 40, (height, width, 3))
        frames.append(np.clip(base[..., None] + noise, 0, 255).astype(np.uint8))
    return frames


def build_messages(frames: list[np.ndarray], compressed: bool) -> list:
    from sensor_msgs.msg import CompressedImage, Image

    from dann_ros.data.images import COMPRESSED_FORMATS, encode_compressed, rgb8_to_image_fields

    msgs = []
    for f in frames:
        if compressed:
            msgs.append(CompressedImage(format=COMPRESSED_FORMATS["jpeg"], data=encode_compressed(f, "jpeg", 90)))
        else:
            h, w, enc, step, data = rgb8_to_image_fields(f)
            msgs.append(Image(height=h, width=w, encoding=enc, step=step, data=data))
    for i, m in enumerate(msgs):
        m.header.frame_id = f"camera_{i}"
    return msgs


def echo_main() -> None:
    """A bare relay: what moving the frame costs without any model (DDS + rclpy floor)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from dann_ros.ros.qos import RESULT_QOS

    compressed = sys.argv[2] == "compressed"
    rclpy.init()
    node = rclpy.create_node("echo", namespace=NAMESPACE)
    pub = node.create_publisher(Header, "echo", RESULT_QOS)
    node.create_subscription(CompressedImage if compressed else Image, "image", lambda m: pub.publish(m.header),
                             qos_profile_sensor_data)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, Exception):
        pass


def percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def run_stream(mode: str, target: str, msgs: list, env: dict, model: Path, info, seconds: float, rate: float,
               log_dir: Path) -> dict:
    """Start ``target`` (node or echo), stream frames, return latencies, drops and the streaming time."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header
    from diagnostic_msgs.msg import DiagnosticArray

    from dann_ros.ros.outputs import handler_for
    from dann_ros.ros.qos import RESULT_QOS

    compressed = mode == "compressed"
    if target == "node":
        cmd = node_command(model, namespace=NAMESPACE, parameters={"compressed": compressed})
        handler = handler_for(info)  # the node's own choice of topic and message type for this model
        out_type, out_topic = handler.msg_type, f"{NAMESPACE}/{handler.topic}"
    else:
        cmd = [sys.executable, __file__, "--echo", mode]
        out_type, out_topic = Header, f"{NAMESPACE}/echo"
    log = open(log_dir / f"{target}_{mode}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    node = rclpy.create_node(f"bench_{target}_{mode}")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    sent: dict[tuple[int, int], int] = {}
    received: dict[tuple[int, int], int] = {}
    diag: list = []

    def on_output(msg) -> None:
        header = msg.header if hasattr(msg, "header") else msg
        received[(header.stamp.sec, header.stamp.nanosec)] = node.get_clock().now().nanoseconds

    node.create_subscription(out_type, out_topic, on_output, RESULT_QOS)
    node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, diag.append, 10)
    pub = node.create_publisher(CompressedImage if compressed else Image, f"{NAMESPACE}/image",
                                qos_profile_sensor_data)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{target} did not subscribe; see {log.name}")
            time.sleep(0.05)

        def stream(duration: float, record: bool) -> float:
            period_ns = int(1e9 / rate)
            start = time.monotonic_ns()
            i = 0
            while True:
                due = start + i * period_ns
                if due - start > duration * 1e9:
                    return i / rate  # the streaming time these i frames cover
                delay = (due - time.monotonic_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
                msg = msgs[i % len(msgs)]
                now = node.get_clock().now()
                msg.header.stamp = now.to_msg()
                if record:
                    sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = now.nanoseconds
                pub.publish(msg)
                i += 1

        # warm up: discovery of the output side, first-frame allocations
        warm_end = time.monotonic() + 20
        while not received and time.monotonic() < warm_end:
            stream(0.5, record=False)
        if not received:
            raise RuntimeError(f"no output from {target}; see {log.name}")
        stream(1.0, record=False)
        received.clear()
        diag.clear()
        streamed = stream(seconds, record=True)
        time.sleep(1.0)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        executor.shutdown(timeout_sec=1)
        node.destroy_node()
        log.close()
    lat = [(received[k] - t) / 1e6 for k, t in sent.items() if k in received]
    node_lat = None
    for array in reversed(diag):
        for status in array.status:
            values = {kv.key: kv.value for kv in status.values}
            if "latency p50 (ms)" in values and values["latency p50 (ms)"] != "n/a":
                node_lat = float(values["latency p50 (ms)"]), float(values["latency p99 (ms)"])
                break
        if node_lat:
            break
    return {"published": len(sent), "outputs": len(lat), "drops": len(sent) - len(lat), "lat": lat,
            "node_internal": node_lat, "seconds": streamed}


def bare_predictor(model: Path, frames: list[np.ndarray], msgs: list, seconds: float, rate: float) -> dict:
    """The Predictor on the same frames (predict, or detect at the node's default threshold for a
    detector), paced like the stream (a frame every 1/rate s), then back to back.

    Pacing matters on small VMs: code that ran 33 ms ago is colder than code in a tight loop,
    and the node sees the paced case.
    """
    from dann_ros.data.images import message_to_rgb8
    from dann_ros.ros.params import PARAMETERS
    from dann_ros.runtime.predictor import Predictor

    predictor = Predictor.load(model)
    threshold = PARAMETERS["detection_threshold"][0]  # the node's default

    def run(image: np.ndarray):
        return predictor.infer_batch([image], threshold)[0]
    predict, decode_predict = [], []
    period = 1.0 / rate
    start = time.monotonic()
    for i in range(int(seconds * rate)):
        delay = start + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame, msg = frames[i % len(frames)], msgs[i % len(msgs)]
        if i % 2:
            t0 = time.perf_counter_ns()
            run(frame)
            predict.append((time.perf_counter_ns() - t0) / 1e6)
        else:
            t0 = time.perf_counter_ns()
            run(message_to_rgb8(msg))
            decode_predict.append((time.perf_counter_ns() - t0) / 1e6)
    hot = []
    for frame in frames * 2:  # back to back, for comparison with the paced figure
        t0 = time.perf_counter_ns()
        run(frame)
        hot.append((time.perf_counter_ns() - t0) / 1e6)
    return {"predict": predict, "decode_predict": decode_predict, "predict_hot": hot,
            "backend": predictor.backend.name}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--echo":
        echo_main()
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="model file (default: a tiny random classifier)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured streaming time per run")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--modes", default="raw,compressed")
    ap.add_argument("--no-echo", action="store_true", help="skip the DDS floor measurement")
    ap.add_argument("--no-profile", action="store_true", help="run without the Fast DDS SHM profile")
    ap.add_argument("--smoke", action="store_true", help="a quick check that it runs: 2 s, raw 160x120, no echo")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.modes, args.width, args.height, args.no_echo = 2.0, "raw", 160, 120, True

    tmp = Path(tempfile.mkdtemp(prefix="dann_ros_bench_"))
    model = args.model or tiny_model(tmp)
    env = isolated_ros_env(fastdds_profile=not args.no_profile)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS")})
    if "FASTDDS_DEFAULT_PROFILES_FILE" in env:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = env["FASTDDS_DEFAULT_PROFILES_FILE"]
    import rclpy

    from dann_ros.runtime.predictor import Predictor

    info = Predictor.load(model, warmup=False).info
    rclpy.init()
    frames = make_frames(30, args.width, args.height)
    rows = []
    try:
        for mode in args.modes.split(","):
            msgs = build_messages(frames, mode == "compressed")
            res = run_stream(mode, "node", msgs, env, model, info, args.seconds, args.rate, tmp)
            echo = None if args.no_echo else run_stream(mode, "echo", msgs, env, model, info, args.seconds, args.rate,
                                                        tmp)
            bare = bare_predictor(model, frames, msgs, args.seconds, args.rate)
            rows.append((mode, res, echo, bare))
    finally:
        rclpy.try_shutdown()

    bare_call = "infer"
    shape = "x".join(map(str, info.preprocess.input_shape))
    print(f"\ndann_node benchmark: {args.width}x{args.height} rgb8 published at {args.rate:g} Hz for "
          f"{args.seconds:g} s per run, model {model.name} ({info.task}, input {shape} {info.preprocess.resize}, "
          f"{rows[0][3]['backend'] if rows else '?'}), Fast DDS profile "
          f"{'off' if args.no_profile else 'SHM 16 MB'}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min) at the end; logs in {tmp}\n")
    head = ("input", "published (Hz)", "outputs (Hz)", "outputs / published", "drops", "e2e p50 / p90 / p99",
            f"bare Predictor.{bare_call} (Hz, back to back)", "node / bare Predictor")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    figures = []
    for mode, res, _, bare in rows:
        sent_hz, out_hz = res["published"] / res["seconds"], res["outputs"] / res["seconds"]
        hot_hz = 1000.0 / percentiles(bare["predict_hot"])[0]
        p50, p90, p99 = (float(np.percentile(res["lat"], q)) if res["lat"] else float("nan") for q in (50, 90, 99))
        print(f"| {mode} | {sent_hz:.1f} | {out_hz:.1f} | {out_hz / sent_hz:.3f} | {res['drops']} | "
              f"{p50:.1f} / {p90:.1f} / {p99:.1f} ms | {hot_hz:.1f} | {out_hz / min(sent_hz, hot_hz):.3f} |")
        figures.append({"input": mode, "published": res["published"], "outputs": res["outputs"],
                        "drops": res["drops"], "seconds": res["seconds"], "published_hz": sent_hz,
                        "output_hz": out_hz, "e2e_ms": {"p50": p50, "p90": p90, "p99": p99},
                        "bare_hz": hot_hz, "node_over_bare": out_hz / min(sent_hz, hot_hz),
                        "bare_paced_p50_ms": percentiles(bare["predict"])[0]})
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "task": info.task, "rate_hz": args.rate,
                                         "width": args.width, "height": args.height, "cpus": os.cpu_count(),
                                         "load_average": os.getloadavg(), "rows": figures}, indent=1))
    print("""
outputs (Hz): outputs received per second of streaming; drops: frames published without an output.
node / bare Predictor: the node's output rate over what the bare Predictor sustains at this input
  rate, min(published, back-to-back rate), both measured in this run: 1.0 = the node loses nothing.
""")
    head = ("input", "e2e p50 / p99", "DDS floor p50", "node p50", f"{bare_call} p50 (back to back)",
            f"decode+{bare_call} p50", f"e2e - {bare_call}", f"e2e - (decode+{bare_call})", "in-node overhead",
            f"e2e / {bare_call}")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for mode, res, echo, bare in rows:
        p50, p99 = percentiles(res["lat"])
        pred50, _ = percentiles(bare["predict"])
        hot50, _ = percentiles(bare["predict_hot"])
        dp50, _ = percentiles(bare["decode_predict"])
        echo50 = percentiles(echo["lat"])[0] if echo else float("nan")
        node50 = res["node_internal"][0] if res["node_internal"] else float("nan")
        print(f"| {mode} | {p50:.2f} / {p99:.2f} ms | {echo50:.2f} ms | {node50:.2f} ms | "
              f"{pred50:.2f} ms ({hot50:.2f} ms) | {dp50:.2f} ms | {p50 - pred50:.2f} ms | {p50 - dp50:.2f} ms | "
              f"{node50 - dp50:.2f} ms | {p50 / pred50:.1f}x |")
    print(f"""
e2e: input stamp (set just before publishing) -> output received in this process.
DDS floor: the same frames through a relay without a model (subscribe, republish the header): what
  moving the frame between processes costs any rclpy node here (echo drops are listed in the log).
node: the node's own receive -> publish latency from its /diagnostics (p50 of its last window).
{bare_call}: Predictor.{bare_call} on the decoded frame in this process (preprocessing, model, results),
  paced at the stream rate; decode+{bare_call} adds dann_ros.data.images.message_to_rgb8 on the
  message (JPEG decoding for compressed input).
in-node overhead = node - (decode+{bare_call}): hand-off to the worker, building and publishing the
  message, bookkeeping.""")
    for mode, _, echo, _ in rows:
        if echo:
            print(f"  echo {mode}: {echo['outputs']}/{echo['published']} returned, "
                  f"p50/p99 {percentiles(echo['lat'])[0]:.2f} / {percentiles(echo['lat'])[1]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
