"""Real ONNX models that misbehave on purpose, made from a working test model by graph surgery.

The node's failure paths (a NaN monitor output, an inference call that raises, one that does
not return) need a model that does this inside ONNX Runtime, in the node's own process: no
mock stands in for the backend. Each model misbehaves only on bright frames (some pixel above
``threshold``), so dark frames show the same node still works. Metadata is kept, so the node
loads them as the model they were made from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _rewire(src: Path, dst: Path, output: str, nodes, initializers=()) -> Path:
    """Rename ``output``'s producer to ``<output>_orig`` and let ``nodes`` make ``output`` from it."""
    model = onnx.load(str(src))
    graph = model.graph
    orig = f"{output}_orig"
    for node in graph.node:
        node.output[:] = [orig if o == output else o for o in node.output]
    graph.initializer.extend(initializers)
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def _bright(threshold: float) -> tuple[list, list, str]:
    """Nodes computing 'bright' (bool scalar): the frame's largest input value exceeds threshold."""
    const = numpy_helper.from_array(np.array(threshold, dtype=np.float32), "hostile_threshold")
    nodes = [helper.make_node("ReduceMax", ["images"], ["hostile_max"], keepdims=0),
             helper.make_node("Greater", ["hostile_max", "hostile_threshold"], ["hostile_bright"])]
    return nodes, [const], "hostile_bright"


def nan_domain(src: Path, dst: Path) -> Path:
    """The GRL discriminator's ``domain`` output is NaN on every frame; the scores stay right."""
    nan = numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "hostile_nan")
    return _rewire(src, dst, "domain", [helper.make_node("Add", ["domain_orig", "hostile_nan"], ["domain"])], [nan])


def raising_on_bright(src: Path, dst: Path, threshold: float = 128.0) -> Path:
    """ONNX Runtime raises (Gather index out of range) on bright frames; dark ones run normally."""
    bright_nodes, consts, bright = _bright(threshold)
    consts += [numpy_helper.from_array(np.zeros(1, np.float32), "hostile_table"),
               numpy_helper.from_array(np.array(1000, np.int64), "hostile_far")]
    nodes = bright_nodes + [
        helper.make_node("Cast", [bright], ["hostile_flag"], to=TensorProto.INT64),
        helper.make_node("Mul", ["hostile_flag", "hostile_far"], ["hostile_index"]),  # 0, or 1000 on bright frames
        helper.make_node("Gather", ["hostile_table", "hostile_index"], ["hostile_zero"]),
        helper.make_node("Add", ["scores_orig", "hostile_zero"], ["scores"]),
    ]
    return _rewire(src, dst, "scores", nodes, consts)


def stalling_on_bright(src: Path, dst: Path, iterations: int, threshold: float = 128.0, size: int = 192) -> Path:
    """On bright frames a Loop runs ``iterations`` matrix products (size x size) before the scores come
    out: an inference call that takes as long as the test wants; dark frames skip the loop."""
    bright_nodes, consts, bright = _bright(threshold)
    rng = np.random.default_rng(0)
    consts += [numpy_helper.from_array(rng.normal(0, 0.05, (size, size)).astype(np.float32), "hostile_w"),
               numpy_helper.from_array(np.array(iterations, np.int64), "hostile_iterations"),
               numpy_helper.from_array(np.array(True), "hostile_true"),
               numpy_helper.from_array(np.array(0.0, np.float32), "hostile_nought")]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["v_in", "hostile_w"], ["v_mm"]),
         helper.make_node("Tanh", ["v_mm"], ["v_out"])],
        "hostile_stall_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [size, size])])
    nodes = bright_nodes + [
        helper.make_node("Cast", [bright], ["hostile_flag"], to=TensorProto.INT64),
        helper.make_node("Mul", ["hostile_flag", "hostile_iterations"], ["hostile_trips"]),  # 0 on dark frames
        helper.make_node("Loop", ["hostile_trips", "hostile_true", "hostile_w"], ["hostile_v"], body=body),
        helper.make_node("ReduceSum", ["hostile_v"], ["hostile_sum"], keepdims=0),
        helper.make_node("Mul", ["hostile_sum", "hostile_nought"], ["hostile_zero"]),  # bounded (tanh): 0
        helper.make_node("Add", ["scores_orig", "hostile_zero"], ["scores"]),
    ]
    return _rewire(src, dst, "scores", nodes, consts)
