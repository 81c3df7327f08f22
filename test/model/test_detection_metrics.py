import math

import numpy as np
import pytest
import torch

from dann_ros.model.detection_metrics import DetectionReport, average_precision, evaluate_detections

GT = [np.array([[10, 10, 50, 50], [60, 60, 100, 120]], np.float32), np.array([[0, 0, 30, 20]], np.float32)]
GT_C = [np.array([0, 1]), np.array([0])]


def _eval(pb, ps, pc, gb=GT, gc=GT_C, k=3, **kw) -> DetectionReport:
    return evaluate_detections(pb, ps, pc, gb, gc, k, **kw)


def test_perfect_predictions():
    r = _eval(GT, [np.array([0.9, 0.8]), np.array([0.7])], GT_C, class_names=["a", "b", "c"])
    assert r.map50 == pytest.approx(1.0) and r.map == pytest.approx(1.0)
    assert r.per_class_ap50["a"] == pytest.approx(1.0) and r.per_class_ap50["b"] == pytest.approx(1.0)
    assert math.isnan(r.per_class_ap50["c"])  # no ground truth: left out of the mean
    assert (r.n_images, r.n_gt, r.n_detections) == (2, 3, 3)


def test_torch_tensors_are_accepted():
    r = _eval([torch.from_numpy(b) for b in GT], [torch.tensor([0.9, 0.8]), torch.tensor([0.7])],
              [torch.from_numpy(c) for c in GT_C])
    assert r.map == pytest.approx(1.0)


def test_false_positive_ranked_above_true_positive():
    # one image, one GT: FP (0.9) then TP (0.8): precision 0.5 at every recall level -> AP 0.5
    gt, gc = [np.array([[0, 0, 10, 10]], np.float32)], [np.array([0])]
    pb = [np.array([[50, 50, 60, 60], [0, 0, 10, 10]], np.float32)]
    r = _eval(pb, [np.array([0.9, 0.8])], [np.array([0, 0])], gt, gc, k=1)
    assert r.map50 == pytest.approx(0.5) and r.map == pytest.approx(0.5)
    # the same FP ranked below the TP costs nothing
    r = _eval(pb, [np.array([0.7, 0.8])], [np.array([0, 0])], gt, gc, k=1)
    assert r.map50 == pytest.approx(1.0)


def test_missed_ground_truth():
    # 2 GT, one found: precision 1 up to recall 0.5 -> 51 of 101 recall points
    r = _eval([GT[0][:1]], [np.array([0.9])], [np.array([0])], [GT[0]], [np.array([0, 0])], k=1)
    assert r.map50 == pytest.approx(51 / 101)


def test_class_with_ground_truth_but_no_detections_counts_zero():
    r = _eval([GT[0][:1], GT[1]], [np.array([0.9]), np.array([0.8])], [np.array([0]), np.array([0])])
    assert r.per_class_ap50["0"] == pytest.approx(1.0) and r.per_class_ap50["1"] == 0.0
    assert r.map50 == pytest.approx(0.5)


def test_wrong_class_is_a_false_positive_and_a_miss():
    gt, gc = [np.array([[0, 0, 10, 10]], np.float32)], [np.array([0])]
    r = _eval(gt, [np.array([0.9])], [np.array([1])], gt, gc, k=2)
    assert r.map50 == 0.0 and math.isnan(r.per_class_ap50["1"])


def test_duplicate_detection_is_a_false_positive():
    gt, gc = [np.array([[0, 0, 10, 10]], np.float32)], [np.array([0])]
    pb = [np.array([[0, 0, 10, 10], [0, 0, 10, 9]], np.float32)]
    # duplicate ranked second: recall 1 reached at precision 1 -> AP 1
    assert _eval(pb, [np.array([0.9, 0.8])], [np.array([0, 0])], gt, gc, k=1).map50 == pytest.approx(1.0)
    # two images: the duplicate of image 1 outranks image 2's true positive
    gt2, gc2 = gt * 2, gc * 2
    pb2 = [pb[0], np.array([[0, 0, 10, 10]], np.float32)]
    r = _eval(pb2, [np.array([0.9, 0.8]), np.array([0.7])], [np.array([0, 0]), np.array([0])], gt2, gc2, k=1)
    # ranks: TP (p=1, r=.5), FP (p=.5), TP (p=2/3, r=1): envelope 1 up to r=.5, then 2/3
    assert r.map50 == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_iou_thresholds():
    gt, gc = [np.array([[0, 0, 100, 100]], np.float32)], [np.array([0])]
    # IoU 0.72: a match at 0.50, 0.55, 0.60, 0.65, 0.70 -> 5 of 10 thresholds
    r = _eval([np.array([[0, 0, 100, 72]], np.float32)], [np.array([0.9])], [np.array([0])], gt, gc, k=1)
    assert r.map50 == pytest.approx(1.0) and r.map == pytest.approx(0.5)
    # IoU 0.45: no match anywhere
    r = _eval([np.array([[0, 0, 100, 45]], np.float32)], [np.array([0.9])], [np.array([0])], gt, gc, k=1)
    assert r.map50 == 0.0 and r.map == 0.0


def test_greedy_matching_takes_the_best_unmatched_box():
    # two GT side by side; the top detection overlaps both but the second more
    gt = [np.array([[0, 0, 10, 10], [8, 0, 18, 10]], np.float32)]
    pb = [np.array([[7, 0, 17, 10], [0, 0, 10, 10]], np.float32)]
    r = _eval(pb, [np.array([0.9, 0.8])], [np.array([0, 0])], gt, [np.array([0, 0])], k=1)
    assert r.map50 == pytest.approx(1.0)


def test_score_threshold_and_validation():
    r = _eval(GT, [np.array([0.9, 0.1]), np.array([0.7])], GT_C, score_threshold=0.5)
    assert r.per_class_ap50["1"] == 0.0 and r.n_detections == 2
    with pytest.raises(ValueError, match="differ in length"):
        _eval(GT, [np.array([0.9])], GT_C)
    with pytest.raises(ValueError, match="class ids"):
        _eval(GT, [np.array([0.9, 0.8]), np.array([0.7])], [np.array([0, 5]), np.array([0])])


def test_average_precision_edge_cases():
    assert math.isnan(average_precision(np.zeros(0), 0))
    assert average_precision(np.zeros(0), 3) == 0.0
    assert average_precision(np.array([1.0, 1.0]), 2) == pytest.approx(1.0)


# --------------------------------------------------------------------------- reference

def _coco_reference(pb, ps, pc, gb, gc, num_classes, max_det=100):
    """A literal transcription of pycocotools' COCOeval.evaluateImg + accumulate (area 'all', no crowd)."""
    thrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
    rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    precision = -np.ones((len(thrs), len(rec_thrs), num_classes))
    for c in range(num_classes):
        evals = []
        for i in range(len(gb)):
            g = [b for b, k in zip(gb[i], gc[i]) if k == c]
            d = [(s, b) for b, s, k in zip(pb[i], ps[i], pc[i]) if k == c]
            if not g and not d:
                continue
            d = [d[j] for j in np.argsort([-s for s, _ in d], kind="mergesort")[:max_det]]
            dtm = np.zeros((len(thrs), len(d)))
            gtm = np.zeros((len(thrs), len(g)))
            for tind, t in enumerate(thrs):
                for dind, (_, db) in enumerate(d):
                    best, m = min([t, 1 - 1e-10]), -1
                    for gind, gbox in enumerate(g):
                        if gtm[tind, gind] > 0:
                            continue
                        v = iou(db, gbox)
                        if v < best:
                            continue
                        best, m = v, gind
                    if m == -1:
                        continue
                    dtm[tind, dind] = 1
                    gtm[tind, m] = 1
            evals.append(([s for s, _ in d], dtm, len(g)))
        if not evals:
            continue
        scores = np.concatenate([e[0] for e in evals])
        inds = np.argsort(-scores, kind="mergesort")
        dtm = np.concatenate([e[1] for e in evals], axis=1)[:, inds]
        npig = sum(e[2] for e in evals)
        if npig == 0:
            continue
        tps, fps = dtm == 1, dtm == 0
        tp_sum = np.cumsum(tps, axis=1).astype(float)
        fp_sum = np.cumsum(fps, axis=1).astype(float)
        for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
            nd = len(tp)
            rc = tp / npig
            pr = (tp / (fp + tp + np.spacing(1))).tolist()
            q = np.zeros(len(rec_thrs))
            for i in range(nd - 1, 0, -1):
                if pr[i] > pr[i - 1]:
                    pr[i - 1] = pr[i]
            ri_inds = np.searchsorted(rc, rec_thrs, side="left")
            try:
                for ri, pi in enumerate(ri_inds):
                    q[ri] = pr[pi]
            except IndexError:
                pass
            precision[t, :, c] = q
    per_class = []
    for c in range(num_classes):
        p = precision[:, :, c]
        if (p > -1).any():
            per_class.append((np.mean(p[0][p[0] > -1]), np.mean(p[p > -1])))
    return np.mean([a for a, _ in per_class]), np.mean([b for _, b in per_class])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_cocoeval_transcription_on_random_data(seed):
    rng = np.random.default_rng(seed)
    k = 4
    pb, ps, pc, gb, gc = [], [], [], [], []
    for _ in range(12):
        n_gt = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (n_gt, 2))
        g = np.concatenate([xy, xy + rng.uniform(5, 30, (n_gt, 2))], 1).astype(np.float32)
        gcls = rng.integers(0, k - 1, n_gt)  # class k-1 never has ground truth
        # detections: jittered copies of some GT (a few with the wrong class) plus random boxes
        keep = rng.random(n_gt) < 0.8
        d = g[keep] + rng.normal(0, 3, (int(keep.sum()), 4)).astype(np.float32)
        dcls = np.where(rng.random(int(keep.sum())) < 0.85, gcls[keep], rng.integers(0, k, int(keep.sum())))
        n_fp = int(rng.integers(0, 4))
        xy = rng.uniform(0, 80, (n_fp, 2))
        d = np.concatenate([d, np.concatenate([xy, xy + rng.uniform(5, 30, (n_fp, 2))], 1)]).astype(np.float32)
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        dcls = np.concatenate([dcls, rng.integers(0, k, n_fp)])
        pb.append(d), ps.append(rng.random(len(d))), pc.append(dcls), gb.append(g), gc.append(gcls)
    want50, want = _coco_reference(pb, ps, pc, gb, gc, k)
    r = evaluate_detections(pb, ps, pc, gb, gc, k)
    assert 0.05 < r.map50 < 0.99  # a non-trivial case
    assert r.map50 == pytest.approx(want50, abs=1e-9) and r.map == pytest.approx(want, abs=1e-9)
    assert math.isnan(r.per_class_ap50[str(k - 1)])
