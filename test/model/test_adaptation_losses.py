"""Each adaptation loss against values worked out by hand on a tiny batch."""

from __future__ import annotations

import math

import pytest
import torch

from dann_ros.model.adaptation import (ConditionalDomainAdversarialLoss, DomainAdversarialLoss, EntropyLoss,
                                       MinimumClassConfusionLoss)
from dann_ros.model.adaptation.cdan import multilinear_map
from dann_ros.model.adaptation.pseudo_label import PseudoLabelLoss


def _logits(*rows: list[float]) -> torch.Tensor:
    """Logits whose softmax is exactly the given probability rows."""
    return torch.tensor(rows, dtype=torch.float64).log()


def test_entropy_loss_is_mean_prediction_entropy():
    # rows: uniform over 2 classes (H = ln 2) and (0.75, 0.25) (H = -(0.75 ln .75 + .25 ln .25) = 0.562335)
    loss = EntropyLoss()(_logits([0.5, 0.5], [0.75, 0.25]))
    assert float(loss) == pytest.approx((math.log(2) + 0.5623351446188083) / 2, abs=1e-6)


def test_mcc_matches_a_hand_computed_confusion_matrix():
    # temperature 1 so softmax(logits) = the rows themselves
    y1, y2 = (0.5, 0.5), (0.75, 0.25)
    h1, h2 = math.log(2), 0.5623351446188083
    w1, w2 = 1 + math.exp(-h1), 1 + math.exp(-h2)  # 1.5 and 1.569893
    w1, w2 = 2 * w1 / (w1 + w2), 2 * w2 / (w1 + w2)  # normalised to mean 1
    c = [[w1 * y1[i] * y1[j] + w2 * y2[i] * y2[j] for j in range(2)] for i in range(2)]
    col = [c[0][j] + c[1][j] for j in range(2)]
    c = [[c[i][j] / col[j] for j in range(2)] for i in range(2)]
    expected = (c[0][1] + c[1][0]) / 2  # off-diagonal mass / number of classes
    loss = MinimumClassConfusionLoss(temperature=1.0)(_logits(y1, y2))
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert 0.3 < expected < 0.5  # (sanity of the hand computation itself: heavily confused rows)


def test_mcc_is_zero_for_confident_distinct_predictions_and_tempered():
    confident = torch.tensor([[20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]])
    assert float(MinimumClassConfusionLoss(temperature=1.0)(confident)) < 1e-6
    # a higher temperature softens the predictions: more confusion for the same logits
    mild = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert float(MinimumClassConfusionLoss(5.0)(mild)) > float(MinimumClassConfusionLoss(1.0)(mild))


def _linear_disc(in_features: int, weight: list[float], bias: float = 0.0) -> torch.nn.Linear:
    d = torch.nn.Linear(in_features, 1).double()
    with torch.no_grad():
        d.weight.copy_(torch.tensor([weight]))
        d.bias.fill_(bias)
    return d


def test_dann_loss_is_half_the_two_bces():
    adv = DomainAdversarialLoss(_linear_disc(2, [1.0, -1.0]))
    f_s = torch.tensor([[2.0, 0.0]], dtype=torch.float64)  # logit 2: source-like (label 1)
    f_t = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # logit -1: target-like (label 0)
    expected = 0.5 * (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0)))
    assert float(adv(f_s, f_t).detach()) == pytest.approx(expected, abs=1e-6)  # (BCE in float32)
    assert adv.domain_accuracy == 1.0


def test_cdan_multilinear_map_is_the_flattened_outer_product():
    f = torch.tensor([[1.0, 2.0]])
    g = torch.tensor([[0.25, 0.75]])
    assert multilinear_map(f, g).tolist() == [[0.25, 0.5, 0.75, 1.5]]


def test_cdan_loss_by_hand_and_its_gradient_reaches_features_only():
    # features (F=2) x predictions (C=2) -> 4 discriminator inputs; weights pick g_0 * f_0 - g_1 * f_1
    adv = ConditionalDomainAdversarialLoss(_linear_disc(4, [1.0, 0.0, 0.0, -1.0]))
    adv.coeff = 1.0
    f_s = torch.tensor([[2.0, 1.0]], dtype=torch.float64, requires_grad=True)
    f_t = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    l_s = _logits([0.5, 0.5]).requires_grad_()
    l_t = _logits([0.25, 0.75]).requires_grad_()
    d_s = 0.5 * 2.0 - 0.5 * 1.0  # 0.5
    d_t = 0.25 * 1.0 - 0.75 * 2.0  # -1.25
    expected = 0.5 * (math.log(1 + math.exp(-d_s)) + math.log(1 + math.exp(d_t)))
    loss = adv(f_s, f_t, l_s, l_t)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert l_s.grad is None and l_t.grad is None  # predictions are detached (CDAN, tllib)
    # reversed gradient on f_s: -(dL/dd_s) * (g_0, -g_1) with dL/dd_s = 0.5 (sigmoid(d_s) - 1)
    dd = 0.5 * (1 / (1 + math.exp(-d_s)) - 1)
    assert f_s.grad.tolist()[0] == pytest.approx([-dd * 0.5, dd * 0.5], abs=1e-6)


def test_cdan_entropy_conditioning_weights_confident_samples_more():
    adv = ConditionalDomainAdversarialLoss(_linear_disc(4, [1.0, 0.0, 0.0, -1.0]), entropy_conditioning=True)
    f = torch.tensor([[2.0, 1.0], [1.0, 0.5]], dtype=torch.float64)
    g = _logits([0.5, 0.5], [0.99, 0.01])
    loss = adv(f, f.flip(1), g, g)
    plain = ConditionalDomainAdversarialLoss(adv.discriminator)(f, f.flip(1), g, g)
    assert torch.isfinite(loss) and float(loss) != pytest.approx(float(plain))
    with pytest.raises(ValueError, match="logits"):
        adv(f, f)


def _linear_model(weight: list[list[float]]) -> torch.nn.Linear:
    model = torch.nn.Linear(len(weight[0]), len(weight), bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weight, dtype=torch.float64))
    return model


def test_pseudo_label_loss_is_ce_on_the_teachers_confident_labels_over_the_batch():
    # teacher = identity on 2 classes scaled by 5: inputs (1, 0) -> p = sigmoid(5) = 0.9933 for class 0 (kept at
    # threshold 0.95), (0.2, 0) -> p = sigmoid(1) = 0.7311 (masked out)
    model = _linear_model([[5.0, 0.0], [0.0, 5.0]])
    loss = PseudoLabelLoss(model, threshold=0.95, ema_decay=0.5)
    loss.active = True
    images = torch.tensor([[1.0, 0.0], [0.2, 0.0]], dtype=torch.float64)
    student_logits = _logits([0.6, 0.4], [0.1, 0.9])
    # only row 0 counts, with label 0: CE = -ln 0.6, divided by the batch size 2 (FixMatch)
    assert float(loss(student_logits, images)) == pytest.approx(-math.log(0.6) / 2, abs=1e-6)
    assert float(loss.last_mask_rate) == pytest.approx(0.5)


def test_pseudo_label_teacher_is_an_ema_of_the_model_and_takes_no_gradient():
    model = _linear_model([[1.0, 0.0], [0.0, 1.0]])
    loss = PseudoLabelLoss(model, threshold=0.5, ema_decay=0.75)
    assert not any(p.requires_grad for p in loss.teacher.parameters())
    with torch.no_grad():
        model.weight.fill_(3.0)
    logits = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    out = loss(logits, torch.ones(1, 2, dtype=torch.float64))  # inactive: zero loss, but the teacher moves
    assert float(out) == 0.0
    # 0.75 * old + 0.25 * new: diagonal 0.75 + 0.75 = 1.5, off-diagonal 0.75
    assert torch.allclose(loss.teacher.weight, torch.tensor([[1.5, 0.75], [0.75, 1.5]], dtype=torch.float64))
    loss.eval()
    loss(logits, torch.ones(1, 2, dtype=torch.float64))  # evaluation does not move the teacher
    assert torch.allclose(loss.teacher.weight, torch.tensor([[1.5, 0.75], [0.75, 1.5]], dtype=torch.float64))
    assert "teacher.weight" in loss.state_dict()  # saved with the run, so a resume continues exactly


def _constant_detector(class_logits: list[float], size_cells: float = 2.0):
    """A CenterNet whose heads ignore the image: every cell scores ``class_logits`` (so every cell is a
    3x3 peak), boxes ``size_cells`` wide, centred in their cell."""
    from dann_ros.model.backbones import build_backbone
    from dann_ros.model.detector import CenterNetDetector

    det = CenterNetDetector(build_backbone("lenet", 1, dense=True), len(class_logits), (1, 16, 16), (0.5,), (0.5,),
                            head_channels=4, max_detections=8)
    with torch.no_grad():
        for head, bias in ((det.heatmap, class_logits), (det.size, [size_cells] * 2), (det.offset, [0.5, 0.5])):
            head[-1].weight.zero_()
            head[-1].bias.copy_(torch.tensor(bias))
    return det.eval()


def _student_outputs(det, logit: float) -> dict[str, torch.Tensor]:
    h, w = det.output_hw
    return {"heatmap": torch.full((1, det.num_classes, h, w), logit, requires_grad=True),
            "size": torch.zeros(1, 2, h, w, requires_grad=True), "offset": torch.zeros(1, 2, h, w)}


def test_detection_pseudo_labels_are_the_teachers_confident_boxes():
    from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss
    from dann_ros.model.detector import centernet_loss

    det = _constant_detector([5.0, -10.0])  # class 0 scores sigmoid(5) = 0.9933 at every cell, class 1 ~0
    loss = DetectionPseudoLabelLoss(det, threshold=0.9, ema_decay=0.5).eval()
    assert loss.threshold == 0.9 and DetectionPseudoLabelLoss(det).threshold == 0.5  # CenterNet's default
    images = torch.zeros(1, 1, 16, 16)
    out = _student_outputs(det, -2.0)
    assert float(loss(out, images)) == 0.0  # inactive
    loss.active = True
    value = loss(out, images)
    assert float(loss.last_mask_rate) == 8.0  # max_detections confident class-0 boxes, all taken
    with torch.no_grad():  # the teacher is still the model (eval mode: no EMA step)
        boxes, scores, classes = det(images)
        soft = torch.sigmoid(det.heads(det.features(images))["heatmap"])
    expected = det.encode_targets([boxes[0].numpy()], [classes[0].numpy()])
    assert bool((classes == 0).all()) and expected["mask"].sum() == 8
    expected["heatmap"] = torch.maximum(expected["heatmap"], soft)
    assert float(value) == pytest.approx(float(centernet_loss(out, expected, det.size_weight, det.offset_weight)[0]),
                                         rel=1e-5)
    value.backward()
    same = {k: v.detach().clone().requires_grad_(True) for k, v in out.items()}
    centernet_loss(same, expected, det.size_weight, det.offset_weight)[0].backward()
    for k in ("heatmap", "size"):  # the student learns from those boxes, sizes included, as from source targets
        assert same[k].grad.abs().sum() > 0 and torch.allclose(out[k].grad, same[k].grad, rtol=1e-5, atol=1e-8), k
    assert not any(p.grad is not None for p in loss.teacher.parameters())


def test_detection_pseudo_labels_leave_what_the_teacher_half_believes_out_of_the_background():
    """No box passes the threshold; the background term of each cell is weighted by (1 - teacher score)^4."""
    from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss

    images = torch.zeros(1, 1, 16, 16)
    values = {}
    for teacher_logit in (-20.0, math.log(0.6 / 0.4)):  # teacher scores ~0 and 0.6 on class 0
        det = _constant_detector([teacher_logit])
        loss = DetectionPseudoLabelLoss(det, threshold=0.9).eval()
        loss.active = True
        values[teacher_logit] = float(loss(_student_outputs(det, 0.0), images))
        assert float(loss.last_mask_rate) == 0.0
    h, w = _constant_detector([0.0]).output_hw
    # student p = 0.5 everywhere: background loss per cell = -ln(0.5) * 0.5^2 * (1 - t)^4, no positives (/1)
    assert values[-20.0] == pytest.approx(h * w * math.log(2) * 0.25, rel=1e-5)
    assert values[math.log(0.6 / 0.4)] == pytest.approx(h * w * math.log(2) * 0.25 * 0.4 ** 4, rel=1e-4)


def _two_class_teacher(scores: tuple[float, float]):
    """A 2-class CenterNet whose heads ignore the image: every cell scores ``scores`` (so every cell is a
    3x3 peak of both classes), all of them decoded."""
    from dann_ros.model.backbones import build_backbone
    from dann_ros.model.detector import CenterNetDetector

    det = CenterNetDetector(build_backbone("lenet", 1, dense=True), 2, (1, 16, 16), (0.5,), (0.5,),
                            head_channels=4, max_detections=10_000)
    with torch.no_grad():
        for head, bias in ((det.heatmap, [math.log(p / (1 - p)) for p in scores]), (det.size, [2.0, 2.0]),
                           (det.offset, [0.5, 0.5])):
            head[-1].weight.zero_()
            head[-1].bias.copy_(torch.tensor(bias))
    return det.eval()


def test_class_balanced_thresholds_move_each_class_toward_its_portion_of_the_source_objects():
    """Teacher scores 0.9 (class 0) and 0.35 (class 1) at every cell, 4 source objects of each class per step,
    portion 0.5 (2 wanted per class): class 0 passes every cell, far above its 2, so its threshold rises by
    CLASS_STEP * (cells - 2) / 4 per step; class 1 passes none, so its threshold falls by CLASS_STEP * 2 / 4. Each
    settles at its own score, where its boxes pass on some steps and not on others (its portion on average);
    a class scored below the floor stays unlabelled at the floor."""
    from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss

    images = torch.zeros(1, 1, 16, 16)
    step = DetectionPseudoLabelLoss.CLASS_STEP
    for scores in ((0.9, 0.35), (0.9, 0.2)):
        det = _two_class_teacher(scores)
        cells = det.output_hw[0] * det.output_hw[1]
        loss = DetectionPseudoLabelLoss(det, threshold=0.5, class_portion=0.5, threshold_floor=0.3).train()
        loss.active, loss.source_classes = True, torch.tensor([4, 4])
        loss(_student_outputs(det, 0.0), images)
        assert float(loss.last_mask_rate) == cells  # the first step: class 0's boxes alone pass 0.5
        assert loss.class_threshold.tolist() == pytest.approx([0.5 + step * (cells - 2) / 4, 0.5 - step * 2 / 4])
        for _ in range(200):
            loss(_student_outputs(det, 0.0), images)
        jump = step * (cells - 2) / 4  # the largest move in one step
        assert float(loss.class_threshold[0]) == pytest.approx(0.9, abs=jump)
        if scores[1] > 0.3:
            assert float(loss.class_threshold[1]) == pytest.approx(scores[1], abs=jump)
        else:
            assert float(loss.class_threshold[1]) == pytest.approx(0.3)  # the floor: never lower, never labelled
    fixed = DetectionPseudoLabelLoss(det, threshold=0.5).train()  # no portion: one threshold, never moved
    fixed.active, fixed.source_classes = True, torch.tensor([4, 4])
    fixed(_student_outputs(det, 0.0), images)
    assert fixed.class_threshold.tolist() == [0.5, 0.5]
    assert DetectionPseudoLabelLoss(det, threshold=0.2).threshold == 0.2  # the floor binds only with a portion
    with pytest.raises(ValueError, match="threshold_floor"):
        DetectionPseudoLabelLoss(det, threshold=0.5, class_portion=0.5, threshold_floor=0.6)


def test_pseudo_label_builder_picks_the_models_task():
    from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss
    from dann_ros.model.tasks import build_pseudo_label_loss

    assert isinstance(build_pseudo_label_loss(_constant_detector([0.0]), None, 0.9), DetectionPseudoLabelLoss)
    classifier = _linear_model([[1.0, 0.0], [0.0, 1.0]])
    classifier.task = "classification"
    made = build_pseudo_label_loss(classifier, None, 0.9)
    assert type(made) is PseudoLabelLoss and made.threshold == 0.95
    with pytest.raises(ValueError, match="pseudo-label self-training supports classification, detection"):
        build_pseudo_label_loss(torch.nn.Linear(2, 2), None, 0.9)


def test_pseudo_label_mask_hides_whole_blocks_with_the_normalisation_mean():
    from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss

    det = _constant_detector([0.0])  # mean 0.5 -> hidden pixels read 127.5, the network's zero input
    loss = DetectionPseudoLabelLoss(det, mask_ratio=0.5, mask_block=4)
    images = torch.full((64, 1, 16, 18), 200.0)  # 18 px: the last block column is cut to 2 px
    torch.manual_seed(0)
    view = loss.second_view(images)
    hidden = view == 127.5
    assert bool((hidden | (view == 200.0)).all())
    blocks = hidden[:, 0, ::4, ::4]  # one pixel per block: every block is hidden or kept as a whole
    assert torch.equal(hidden[:, 0], blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, :16, :18])
    assert 0.4 < float(blocks.float().mean()) < 0.6
    torch.manual_seed(0)
    assert torch.equal(loss.second_view(images), view)  # torch's generator, which a resumed run restores
    assert not DetectionPseudoLabelLoss(det).has_second_view
    darker = DetectionPseudoLabelLoss(det, mask_ratio=0.5, mask_block=4, view=lambda x, g: x - 100.0)
    torch.manual_seed(0)
    assert torch.equal(darker.second_view(images), torch.where(hidden, view, view - 100.0))  # the mask hides the view
    with pytest.raises(ValueError, match="mask_ratio"):
        DetectionPseudoLabelLoss(det, mask_ratio=1.0)


def test_masked_detection_pseudo_labels_add_the_same_targets_on_the_hidden_view():
    """The teacher labels the whole frame; the student takes the same CenterNet loss on its clean outputs
    and on its outputs for the masked view."""
    from dann_ros.model.adaptation.pseudo_label import DetectionPseudoLabelLoss

    det = _constant_detector([5.0, -10.0])
    images = torch.rand(1, 1, 16, 16) * 255
    out = _student_outputs(det, -2.0)
    plain = DetectionPseudoLabelLoss(det, threshold=0.9).eval()
    plain.active = True
    clean = float(plain(out, images).detach())
    masked = DetectionPseudoLabelLoss(det, threshold=0.9, mask_ratio=0.5).eval()
    masked.active = True
    # the constant detector's outputs ignore the image, so the hidden view's loss is the student's own
    # outputs' loss at logit 5 (where the teacher's boxes are): smaller than at -2, and positive
    with torch.no_grad():
        hidden = det.heads(det.features(images))
    expected_hidden = float(plain({k: v.detach() for k, v in hidden.items()}, images))
    assert float(masked(out, images)) == pytest.approx(clean + expected_hidden, rel=1e-5)
    assert 0 < expected_hidden < clean


class _FlatClassifier(torch.nn.Module):
    """A linear classifier over (N, 1, 1, F) images, with the normalisation a built model carries (mean 0)."""

    def __init__(self, weight: list[list[float]]) -> None:
        from dann_ros.model.layers import InputNormalize

        super().__init__()
        self.normalize = InputNormalize((0.0,), (1.0,))
        self.linear = _linear_model(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_masked_classification_pseudo_labels_count_the_hidden_view_too():
    model = _FlatClassifier([[5.0, 0.0], [0.0, 5.0]])
    images = torch.tensor([[1.0, 0.1], [0.2, 0.1]], dtype=torch.float64).view(2, 1, 1, 2)
    logits = _logits([0.6, 0.4], [0.1, 0.9])
    loss = PseudoLabelLoss(model, threshold=0.95, mask_ratio=0.5, mask_block=1).eval()
    loss.active = True

    def hidden_pixels(seed: int) -> int:
        torch.manual_seed(seed)
        return int((loss.second_view(images) == 0).sum())

    seed = next(s for s in range(100) if 0 < hidden_pixels(s) < 4)
    torch.manual_seed(seed)
    view = loss.second_view(images)
    assert bool(((view == 0) | (view == images)).all()) and 0 < int((view == 0).sum()) < 4  # a part hidden
    # row 0 is the only confident one (p = sigmoid(4.5) = 0.989, label 0), on the clean logits and the hidden view's
    hidden_ce = float(torch.nn.functional.cross_entropy(model(view)[:1], torch.tensor([0])))
    torch.manual_seed(seed)
    assert float(loss(logits, images)) == pytest.approx((-math.log(0.6) + hidden_ce) / 2, rel=1e-6)
