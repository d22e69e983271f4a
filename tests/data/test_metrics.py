"""trtbuild.data.metrics against ultralytics' own validator functions on random scenes, plus hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from trtbuild.data.metrics import IOU_THRESHOLDS, DetectionMetrics, ap_per_class, box_iou, match_predictions

torch = pytest.importorskip("torch")
umetrics = pytest.importorskip("ultralytics.utils.metrics")
from ultralytics.models.yolo.detect.val import DetectionValidator  # noqa: E402

NC = 4
THR32 = np.linspace(0.5, 0.95, 10, dtype=np.float32).astype(np.float64)


def _reference_matcher():
    """A DetectionValidator with only what match_predictions needs (no model, no dataloader)."""
    v = DetectionValidator.__new__(DetectionValidator)
    v.iouv = torch.linspace(0.5, 0.95, 10)
    return v


def _jitter(rng, box, scale):
    w, h = box[2] - box[0], box[3] - box[1]
    d = rng.normal(0, scale, 4) * np.array([w, h, w, h])
    out = box + d
    x1, y1, x2, y2 = out
    return np.array([min(x1, x2 - 1), min(y1, y2 - 1), max(x2, x1 + 1), max(y2, y1 + 1)])


def _scene(rng, kind):
    """One image: GT boxes/classes and predictions sorted by descending score (as NMS returns them)."""
    n_gt = 0 if kind == "no_gt" else int(rng.integers(1, 9))
    xy = rng.uniform(0, 560, (n_gt, 2))
    wh = rng.uniform(8, 160, (n_gt, 2))
    gt = np.concatenate([xy, xy + wh], 1)
    gt_cls = rng.integers(0, NC, n_gt)
    if n_gt > 1 and rng.random() < 0.3:  # an exact duplicate GT box (tie in IoU)
        gt = np.vstack([gt, gt[:1]])
        gt_cls = np.append(gt_cls, gt_cls[0])
    boxes, classes = [], []
    if kind != "no_pred":
        for b, c in zip(gt, gt_cls):
            for _ in range(int(rng.integers(0, 4))):  # 0-3 predictions per object, IoU spread over ~0.3-1
                boxes.append(_jitter(rng, b, rng.uniform(0.0, 0.12)))
                classes.append(c if rng.random() < 0.85 else int(rng.integers(0, NC)))
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            p = rng.uniform(0, 600, 2)
            boxes.append(np.concatenate([p, p + rng.uniform(5, 80, 2)]))
            classes.append(int(rng.integers(0, NC)))
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.array(classes, dtype=np.int64)
    scores = rng.random(len(boxes)).astype(np.float32)
    if len(boxes) > 1 and rng.random() < 0.3:  # exact duplicate prediction (same box, score, class)
        boxes, scores = np.vstack([boxes, boxes[:1]]), np.append(scores, scores[0])
        classes = np.append(classes, classes[0])
    if len(scores) and rng.random() < 0.2:
        scores = np.round(scores * 4) / 4  # quantized scores: many ties across images
    order = np.argsort(-scores, kind="stable")
    return gt, gt_cls, boxes[order], scores[order].astype(np.float32), classes[order]


def _safe_scene(rng, kind):
    """A scene with no IoU within 1e-5 of a threshold: there float32 (ultralytics) and float64 may round apart."""
    while True:
        s = _scene(rng, kind)
        iou = box_iou(s[0], s[2])
        if not (np.abs(iou[..., None] - np.concatenate([IOU_THRESHOLDS, THR32])) < 1e-5).any():
            return s


def _scenes(seed, n):
    rng = np.random.default_rng(seed)
    kinds = ["normal"] * 6 + ["no_gt", "no_pred"]
    return [_safe_scene(rng, kinds[int(rng.integers(0, len(kinds)))]) for _ in range(n)]


def test_box_iou_matches_ultralytics():
    rng = np.random.default_rng(0)
    a = np.concatenate([xy := rng.uniform(0, 500, (30, 2)), xy + rng.uniform(1, 200, (30, 2))], 1)
    b = np.concatenate([xy := rng.uniform(0, 500, (40, 2)), xy + rng.uniform(1, 200, (40, 2))], 1)
    ref = umetrics.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ours = box_iou(a, b)
    assert ours.shape == (30, 40)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert box_iou(a, np.zeros((0, 4))).shape == (30, 0)
    np.testing.assert_allclose(box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10]]), [[1 / 3, 1.0]], atol=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_match_predictions_matches_ultralytics(seed):
    ref = _reference_matcher()
    n_true_pos = 0
    for gt, gt_cls, boxes, _, cls in _scenes(seed, 150):
        if not len(gt) or not len(boxes):
            continue
        iou_t = umetrics.box_iou(torch.from_numpy(gt), torch.from_numpy(boxes))
        expected = ref.match_predictions(torch.from_numpy(cls).float(), torch.from_numpy(gt_cls).float(), iou_t).numpy()
        ours = match_predictions(cls, gt_cls, box_iou(gt, boxes))
        np.testing.assert_array_equal(ours, expected)
        n_true_pos += int(expected.sum())
    assert n_true_pos > 100  # the scenes really exercise matching


def test_match_predictions_greedy_order_and_ties():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)  # two identical targets
    preds = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    tp = match_predictions(np.zeros(3), np.zeros(2), box_iou(gt, preds))
    np.testing.assert_array_equal(tp.all(1), [True, True, False])  # third duplicate finds both targets taken
    tp = match_predictions(np.array([1, 0, 0]), np.zeros(2), box_iou(gt, preds))
    np.testing.assert_array_equal(tp.all(1), [False, True, True])  # wrong class never matches
    assert match_predictions(np.zeros(2), np.zeros(0), np.zeros((0, 2))).shape == (2, 10)
    # P1 has the same IoU (90/110) with targets A and B: it must take A (lowest index), leaving B (IoU 1) to P2
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], dtype=float)
    preds = np.array([[1, 0, 11, 10], [2, 0, 12, 10]], dtype=float)
    iou = box_iou(gt, preds)
    assert iou[0, 0] == iou[1, 0]
    tp = match_predictions(np.zeros(2), np.zeros(2), iou)
    np.testing.assert_array_equal(tp.sum(1), [7, 10])  # 0.818 reaches 0.5-0.8; P2 exact
    expected = _reference_matcher().match_predictions(torch.zeros(2), torch.zeros(2), torch.from_numpy(iou).float())
    np.testing.assert_array_equal(tp, expected.numpy())


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_ap_per_class_matches_ultralytics(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    tp = rng.random((n, 10)) < np.linspace(0.8, 0.2, 10)  # higher thresholds: fewer hits
    tp = np.logical_and.accumulate(tp, axis=1)  # correct at 0.95 ⇒ correct at 0.5
    conf = rng.random(n).astype(np.float32)
    if seed % 2:
        conf = (np.round(conf * 10) / 10).astype(np.float32)  # heavy ties
    pred_cls = rng.integers(0, 6, n)  # class 5 never has GT → must be ignored
    target_cls = np.concatenate([rng.integers(0, 5, int(rng.integers(20, 200))), [4]])
    target_cls = target_cls[target_cls != 3] if seed == 4 else target_cls
    if seed == 6:
        pred_cls[pred_cls == 2] = 5  # class 2 has GT but no prediction at all
    ref = umetrics.ap_per_class(tp, conf, pred_cls.astype(float), target_cls.astype(float))
    r_tp, r_fp, r_p, r_r, r_f1, r_ap, r_classes = ref[:7]
    ours = ap_per_class(tp, conf, pred_cls, target_cls)
    np.testing.assert_array_equal(ours.classes, r_classes)
    for got, want in [(ours.ap, r_ap), (ours.precision, r_p), (ours.recall, r_r), (ours.f1, r_f1),
                      (ours.tp, r_tp), (ours.fp, r_fp), (ours.p_curve, ref[7]), (ours.r_curve, ref[8])]:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert ours.ap.max() > 0.1


def _reference_metrics(scenes, names):
    v, dm = _reference_matcher(), umetrics.DetMetrics(names=names)
    for i, (gt, gt_cls, boxes, scores, cls) in enumerate(scenes):
        if len(gt) and len(boxes):
            iou = umetrics.box_iou(torch.from_numpy(gt), torch.from_numpy(boxes))
            tp = v.match_predictions(torch.from_numpy(cls).float(), torch.from_numpy(gt_cls).float(), iou).numpy()
        else:
            tp = np.zeros((len(boxes), 10), dtype=bool)
        dm.update_stats({"tp": tp, "conf": scores, "pred_cls": cls.astype(np.float32),
                         "target_cls": gt_cls.astype(np.float32), "target_img": np.unique(gt_cls.astype(np.float32)),
                         "im_name": f"{i}.jpg"})
    dm.process()
    return dm


@pytest.mark.parametrize("seed", [8, 9, 10])
def test_detection_metrics_matches_ultralytics(seed):
    names = {i: f"c{i}" for i in range(NC)}
    scenes = _scenes(seed, 120)
    ref = _reference_metrics(scenes, names)
    acc = DetectionMetrics()
    rng = np.random.default_rng(seed)
    for gt, gt_cls, boxes, scores, cls in scenes:
        if len(boxes) > 2 and rng.random() < 0.5:  # feed unsorted: update must sort by score itself
            perm = rng.permutation(len(boxes))
            srt = np.argsort(-scores[perm], kind="stable")
            if np.array_equal(perm[srt], np.argsort(-scores, kind="stable")):  # same tie order after re-sort
                boxes, scores, cls = boxes[perm], scores[perm], cls[perm]
        acc.update(boxes, scores, cls, gt, gt_cls)
    out = acc.compute(names)
    mp, mr, map50, map50_95 = ref.mean_results()
    assert out["n_images"] == len(scenes)
    assert out["n_instances"] == int(ref.nt_per_class.sum())
    for key, want in [("precision", mp), ("recall", mr), ("map50", map50), ("map50_95", map50_95),
                      ("map75", ref.box.map75)]:
        assert out[key] == pytest.approx(float(want), abs=1e-6), key
    assert [r["class_id"] for r in out["per_class"]] == list(ref.ap_class_index)
    for i, row in enumerate(out["per_class"]):
        c = row["class_id"]
        p, r, ap50, ap = ref.class_result(i)
        assert row["name"] == names[c]
        assert row["images"] == ref.nt_per_image[c] and row["instances"] == ref.nt_per_class[c]
        got = (row["precision"], row["recall"], row["map50"], row["map50_95"])
        assert got == pytest.approx((p, r, ap50, ap), abs=1e-6)
    assert 0.05 < out["map50_95"] < out["map50"] < 1  # a non-trivial case


def test_no_ground_truth_anywhere():
    acc = DetectionMetrics()
    acc.update([[0, 0, 10, 10]], [0.9], [0], np.zeros((0, 4)), [])
    acc.update([], [], [], [], [])
    out = acc.compute(["a"])
    assert out["map50_95"] == 0.0 and out["per_class"] == [] and out["n_images"] == 2 and out["n_instances"] == 0


def test_perfect_predictions_hand_computed():
    # ultralytics' 101-point AP appends a recall-1 sentinel with precision 0, so a perfect class scores
    # 1 - 0.5 * 0.01 = 0.995, not 1.0 (the familiar "mAP50 0.995" of a perfect fit)
    acc = DetectionMetrics()
    gt = np.array([[0, 0, 50, 50], [100, 100, 180, 160]], dtype=float)
    acc.update(gt, [0.9, 0.8], [0, 1], gt, [0, 1])
    acc.update(gt[:1] + 7, [0.7], [1], gt[:1] + 7, [1])
    out = acc.compute({0: "a", 1: "b"})
    assert out["map50"] == pytest.approx(0.995) and out["map50_95"] == pytest.approx(0.995)
    assert out["precision"] == pytest.approx(1.0) and out["recall"] == pytest.approx(1.0)
    assert [(r["name"], r["images"], r["instances"]) for r in out["per_class"]] == [("a", 1, 1), ("b", 2, 2)]


def test_false_positive_hand_computed():
    gt = np.array([[0, 0, 50, 50], [100, 100, 180, 160]], dtype=float)
    far = [300, 300, 340, 340]
    # two hits and one miss, all at the same score: at every confidence below it P = 2/3 and R = 1
    acc = DetectionMetrics()
    acc.update(np.vstack([gt, far]), [0.9, 0.9, 0.9], [0, 0, 0], gt, [0, 0])
    out = acc.compute()
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(1.0)
    # the miss ranked last does not lower AP; ranked first it halves precision at every recall:
    # envelope 0.5 on (0, 1], sentinel 0 at recall 1 → AP = 0.5 - 0.5 * 0.01 / 2 = 0.4975
    acc = DetectionMetrics()
    acc.update(np.vstack([gt[:1], far]), [0.8, 0.3], [0, 0], gt[:1], [0])
    assert acc.compute()["map50_95"] == pytest.approx(0.995)
    acc = DetectionMetrics()
    acc.update(np.vstack([gt[:1], far]), [0.3, 0.8], [0, 0], gt[:1], [0])
    assert acc.compute()["map50_95"] == pytest.approx(0.4975)
    # a box at IoU 2500 / 3000 = 0.833 counts at the 7 thresholds 0.5-0.8 only
    acc = DetectionMetrics()
    acc.update([[0, 0, 60, 50]], [0.5], [0], [[0, 0, 50, 50]], [0])
    out = acc.compute()
    assert out["map50"] == pytest.approx(0.995) and out["map50_95"] == pytest.approx(0.995 * 7 / 10)


def test_update_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        DetectionMetrics().update([[0, 0, 1, 1]], [0.5, 0.4], [0], [], [])
