import numpy as np
import onnx
import pytest
import torch

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.config import ModelConfig
from dann_ros.model.detector import (
    CenterNetDetector,
    build_detector,
    decode_centernet,
    encode_targets,
    focal_loss,
    gaussian_radius,
)
from dann_ros.model.discriminator import PixelDomainDiscriminator

pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export",
                                        "ignore:The feature will be removed", "ignore::torch.jit.TracerWarning")

PRE = Preprocess(48, 64, "rgb", resize="letterbox")  # (h, w) = (48, 64): feature map 12 x 16
BOXES = [np.array([[4.0, 6.0, 20.0, 30.0], [30.5, 10.25, 55.0, 40.0]]), np.zeros((0, 4)),
         np.array([[40.0, 2.0, 63.0, 20.0]])]
CLASSES = [np.array([3, 7]), np.array([], np.int64), np.array([3])]


def _model() -> CenterNetDetector:
    torch.manual_seed(0)
    return build_detector(ModelConfig(), 10, PRE)


def test_shapes_and_interface():
    model = _model()
    assert model.task == "detection" and model.stride == 4 and model.output_hw == (12, 16)
    x = torch.rand(2, *PRE.input_shape) * 255
    f, out = model.forward_train(x)
    assert f.shape == (2, model.feature_channels, 12, 16)
    assert out["heatmap"].shape == (2, 10, 12, 16)
    assert out["size"].shape == out["offset"].shape == (2, 2, 12, 16)
    assert torch.allclose(model.heatmap[-1].bias, torch.full((10,), -2.19))
    model.eval()
    boxes, scores, classes = model(x)
    assert boxes.shape == (2, 100, 4) and scores.shape == (2, 100) and classes.shape == (2, 100)
    assert classes.dtype == torch.int64 and (scores[:, :-1] >= scores[:, 1:]).all()
    # the pixel discriminator takes the detector's feature map as it is
    assert PixelDomainDiscriminator(model.feature_channels, 16)(f).shape == (2, 12 * 16)


def test_object_features_read_each_box_at_its_centre_cell():
    """The PAD at the objects reads the cell training puts each object's peak on: floor(centre / stride);
    the pooled features come from the same pass, equal to pooled_features'."""
    from dann_ros.model.inference import pooled_and_object_features, pooled_features

    model = _model()
    x = torch.rand(3, *PRE.input_shape) * 255
    model.eval()
    with torch.no_grad():
        f, _ = model.forward_train(x)
    # batch_size 2: the boxes must follow their images across batches
    pooled, got = pooled_and_object_features(model, x, BOXES, torch.device("cpu"), batch_size=2)
    want = [f[i, :, int((b[1] + b[3]) / 2 // 4), int((b[0] + b[2]) / 2 // 4)]
            for i, boxes in enumerate(BOXES) for b in boxes]
    assert got.shape == (3, model.feature_channels)
    assert torch.allclose(got, torch.stack(want), atol=1e-5)
    assert torch.equal(pooled, pooled_features(model, x, torch.device("cpu"), batch_size=2))
    assert model.training is False  # left as it was
    with pytest.raises(ValueError, match="3 images but 2 box arrays"):
        pooled_and_object_features(model, x, BOXES[:2], torch.device("cpu"))


def test_max_detections_is_capped_by_the_map():
    pre = Preprocess(8, 8, "rgb")
    model = build_detector(ModelConfig(), 2, pre)  # 2 x 2 x 2 = 8 candidates
    assert model.max_detections == 8
    boxes, scores, _ = model.eval()(torch.zeros(1, 3, 8, 8))
    assert boxes.shape == (1, 8, 4)


def test_encode_targets_contents():
    t = encode_targets(BOXES, CLASSES, 10, (48, 64), 4)
    assert t["heatmap"].shape == (3, 10, 12, 16) and t["indices"].shape == (3, 2)
    assert t["mask"].tolist() == [[1, 1], [0, 0], [1, 0]]
    # first box: centre (12, 18) px = (3.0, 4.5) cells -> cell (3, 4), offset (0, 0.5), size (4, 6) cells
    assert t["indices"][0, 0] == 4 * 16 + 3
    assert torch.allclose(t["offset"][0, 0], torch.tensor([0.0, 0.5]))
    assert torch.allclose(t["size"][0, 0], torch.tensor([4.0, 6.0]))
    hm = t["heatmap"]
    assert hm[0, 3, 4, 3] == 1 and hm[0, 7].max() == 1 and hm[1].max() == 0 and hm[2, 3].max() == 1
    assert int(hm.eq(1).sum()) == 3 and float(hm.max()) <= 1
    assert hm[0, 3, 4, 2] < 1  # a gaussian, not a plateau
    with pytest.raises(ValueError, match="class ids"):
        encode_targets(BOXES, [np.array([3, 10]), CLASSES[1], CLASSES[2]], 10, (48, 64), 4)


def test_gaussian_radius_matches_centernet_reference():
    # CenterNet's gaussian_radius((h, w)) for a few sizes, computed with its numpy code
    def reference(h, w, o=0.7):
        b1, c1 = h + w, w * h * (1 - o) / (1 + o)
        b2, c2 = 2 * (h + w), (1 - o) * w * h
        b3, c3 = -2 * o * (h + w), (o - 1) * w * h
        return min((b1 + np.sqrt(b1 ** 2 - 4 * c1)) / 2, (b2 + np.sqrt(b2 ** 2 - 16 * c2)) / 2,
                   (b3 + np.sqrt(b3 ** 2 - 16 * o * c3)) / 2)

    for h, w in [(4, 6), (10, 3), (30, 30), (1, 1)]:
        got = float(gaussian_radius(torch.tensor(float(h)), torch.tensor(float(w))))
        assert got == pytest.approx(reference(h, w), rel=1e-5)


def test_batch_encoding_equals_encoding_each_image_alone():
    """The vectorised batch encoder gives each image the targets it would get alone (its speed is
    benchmarked, not asserted here)."""
    rng = np.random.default_rng(0)
    boxes, classes = [], []
    for _ in range(16):
        k = int(rng.integers(1, 5))
        xy = rng.uniform(0, 100, (k, 2))
        boxes.append(np.concatenate([xy, xy + rng.uniform(8, 40, (k, 2))], 1))
        classes.append(rng.integers(0, 10, k))
    batch = encode_targets(boxes, classes, 10, (120, 160), 4)
    for i in range(16):
        alone = encode_targets([boxes[i]], [classes[i]], 10, (120, 160), 4)
        assert torch.equal(batch["heatmap"][i], alone["heatmap"][0])
        k = int(alone["mask"][0].sum())
        assert k == len(boxes[i]) and int(batch["mask"][i].sum()) == k
        for key in ("indices", "size", "offset"):
            assert torch.allclose(batch[key][i][batch["mask"][i].bool()].float(),
                                  alone[key][0][alone["mask"][0].bool()].float()), key


def _perfect_outputs(t: dict, h: int, w: int) -> dict:
    n = t["heatmap"].shape[0]
    logits = torch.logit(t["heatmap"].clamp(1e-6, 1 - 1e-6))
    size = torch.zeros(n, 2, h * w)
    offset = torch.zeros(n, 2, h * w)
    for i in range(n):
        for j in range(t["mask"].shape[1]):
            if t["mask"][i, j]:
                size[i, :, t["indices"][i, j]] = t["size"][i, j]
                offset[i, :, t["indices"][i, j]] = t["offset"][i, j]
    return {"heatmap": logits, "size": size.reshape(n, 2, h, w), "offset": offset.reshape(n, 2, h, w)}


def test_encode_decode_round_trip():
    t = encode_targets(BOXES, CLASSES, 10, (48, 64), 4)
    out = _perfect_outputs(t, 12, 16)
    boxes, scores, classes = decode_centernet(out["heatmap"], out["size"], out["offset"], 4, 100)
    for i, (gt_b, gt_c) in enumerate(zip(BOXES, CLASSES)):
        found = scores[i] > 0.99
        assert int(found.sum()) == len(gt_c)
        got = boxes[i][found].numpy()
        got_c = classes[i][found].numpy()
        for b, c in zip(gt_b, gt_c):
            err = np.abs(got - b).max(axis=1)
            k = int(err.argmin())
            assert err[k] < 1.0 and got_c[k] == c


def test_loss_decreases_on_a_tiny_batch():
    model = _model()
    x = torch.rand(3, *PRE.input_shape) * 255
    t = model.encode_targets(BOXES, CLASSES)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        _, out = model.forward_train(x)
        loss = model.task_loss(out, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]
    assert set(model.loss_parts) == {"heatmap", "size", "offset"}


def test_focal_loss_prefers_the_right_heatmap():
    t = encode_targets(BOXES[:1], CLASSES[:1], 10, (48, 64), 4)["heatmap"]
    good = focal_loss(torch.logit(t.clamp(0.01, 0.99)), t)
    bad = focal_loss(torch.full_like(t, -2.19), t)
    assert float(good) < float(bad)
    assert float(focal_loss(torch.full((1, 2, 4, 4), -5.0), torch.zeros(1, 2, 4, 4))) < 0.01  # no objects: finite


def _export(model: torch.nn.Module, path, shape) -> None:
    names = ["boxes", "scores", "classes"]
    torch.onnx.export(model, (torch.rand(1, *shape) * 255,), str(path), input_names=["images"], output_names=names,
                      dynamic_axes={n: {0: "batch"} for n in ["images", *names]}, opset_version=17, dynamo=False)


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _model().eval()
    with torch.no_grad():  # give the heads something to find: random but peaky maps
        model.heatmap[-1].bias.normal_(0, 2)
    path = tmp_path / "det.onnx"
    _export(model, path, PRE.input_shape)
    graph = onnx.load(str(path)).graph
    ops = {(n.domain or "ai.onnx", n.op_type) for n in graph.node}
    assert {d for d, _ in ops} == {"ai.onnx"}, "custom-domain ops need plugins"
    assert not {op for _, op in ops} & {"NonMaxSuppression", "NonZero", "Loop", "If", "Scan"}
    assert ("ai.onnx", "TopK") in ops and ("ai.onnx", "MaxPool") in ops
    out_shapes = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
    assert out_shapes == {"boxes": ["batch", 100, 4], "scores": ["batch", 100], "classes": ["batch", 100]}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, *PRE.input_shape) * 255
    ob, os_, oc = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        tb, ts, tc = model(x)
    np.testing.assert_allclose(os_, ts.numpy(), atol=1e-5)
    real = ts.numpy() > 1e-4  # below that, exact ties between suppressed zeros may order differently
    assert real.sum() > 10
    np.testing.assert_array_equal(oc[real], tc.numpy()[real])
    np.testing.assert_allclose(ob[real], tb.numpy()[real], atol=1e-3)


def test_decode_alone_exports_with_standard_ops(tmp_path):
    class Decode(torch.nn.Module):
        def forward(self, heatmap, size, offset):
            return decode_centernet(heatmap, size, offset, 4, 20)

    path = tmp_path / "decode.onnx"
    args = (torch.randn(2, 3, 6, 8), torch.rand(2, 2, 6, 8) * 3, torch.rand(2, 2, 6, 8))
    torch.onnx.export(Decode(), args, str(path), input_names=["hm", "size", "off"], opset_version=17, dynamo=False,
                      dynamic_axes={"hm": {0: "n"}, "size": {0: "n"}, "off": {0: "n"}})
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {n.domain or "ai.onnx" for n in model.graph.node} == {"ai.onnx"}
    ort = pytest.importorskip("onnxruntime")
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"hm": args[0].numpy(), "size": args[1].numpy(), "off": args[2].numpy()})
    want = [w.numpy() for w in Decode()(*args)]
    real = want[1] > 0  # suppressed locations score exactly 0 and may tie in any order
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g[real], w[real], atol=1e-5)
