"""trtbuild.vision decode/NMS against ultralytics' non_max_suppression + scale_boxes and torchvision.ops.nms.

Real outputs come from yolov8n.yaml exported to ONNX with seeded random weights. An untouched random head gives
near-constant scores (nothing passes conf 0.25), so before export the BatchNorm statistics are recomputed on the
photos and the class bias lowered: scores and boxes then depend on the image, as a trained model's do.
"""

from __future__ import annotations

import numpy as np
import pytest

from trtbuild.errors import UnsupportedModelError
from trtbuild.vision import nms as nms_mod
from trtbuild.vision.decode import Detections, postprocess, postprocess_end2end
from trtbuild.vision.draw import draw_detections
from trtbuild.vision.letterbox import letterbox, letterbox_info
from trtbuild.vision.nms import nms

from ..helpers import export_calibrated_model as _export_model
from ..helpers import photos as _photos

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")  # imported, so ultralytics uses torchvision NMS as in predict


@pytest.fixture(scope="module")
def model_outputs(tmp_path_factory):
    """{name: (image, raw output [1, 84, 8400], LetterboxInfo)} from the exported model on each photo."""
    import onnxruntime as ort

    photos = _photos()
    onnx_path = _export_model(tmp_path_factory.mktemp("yolo"), list(photos.values()))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = {}
    for name, img in photos.items():
        x, info = letterbox(img, 640)
        out[name] = (img, sess.run(None, {"images": x[None]})[0], info)
    return out


def _ultralytics(output, shapes, conf=0.25, iou=0.7, input_hw=(640, 640), **kw):
    """ultralytics' predictor path: non_max_suppression, then scale_boxes to each original shape."""
    from ultralytics.utils import ops
    from ultralytics.utils.nms import non_max_suppression

    preds = non_max_suppression(torch.from_numpy(np.ascontiguousarray(output)), conf, iou, **kw)
    res = []
    for p, shape in zip(preds, shapes):
        p = p.clone()
        p[:, :4] = ops.scale_boxes(input_hw, p[:, :4], shape)
        res.append(p.numpy())
    return res


def _assert_same(ours: list[Detections], ref: list[np.ndarray], what=""):
    assert len(ours) == len(ref)
    for d, r in zip(ours, ref):
        assert len(d) == len(r), f"{what}: {len(d)} vs {len(r)} detections"
        assert d.boxes.dtype == np.float32 and d.scores.dtype == np.float32 and d.class_ids.dtype == np.int64
        np.testing.assert_array_equal(d.class_ids, r[:, 5].astype(np.int64), err_msg=what)
        np.testing.assert_array_equal(d.scores, r[:, 4], err_msg=what)
        np.testing.assert_allclose(d.boxes, r[:, :4], rtol=0, atol=1e-4, err_msg=what)


@pytest.mark.parametrize("conf", [0.25, 0.05])
def test_real_outputs_match_ultralytics(model_outputs, conf):
    suppressed = with_dets = 0
    for name, (img, out, info) in model_outputs.items():
        ours = postprocess(out, [info], conf=conf, iou=0.7)
        _assert_same(ours, _ultralytics(out, [img.shape], conf, 0.7), f"{name} conf={conf}")
        n_cand = int((out[0, 4:].max(0) > conf).sum())
        with_dets += len(ours[0]) > 0
        suppressed += len(ours[0]) < min(n_cand, 300)
    assert with_dets >= 3 and suppressed >= 2  # the comparison exercised detections and real suppression


def test_real_outputs_options_and_batch(model_outputs):
    names = list(model_outputs)
    outs = np.concatenate([model_outputs[n][1] for n in names])
    infos = [model_outputs[n][2] for n in names]
    shapes = [model_outputs[n][0].shape for n in names]
    counts = np.bincount(outs[:, 4:].argmax(1)[outs[:, 4:].max(1) > 0.1], minlength=80)
    frequent = [int(c) for c in np.argsort(-counts)[:3]]
    cases = [
        dict(),
        dict(agnostic=True),
        dict(classes=frequent),
        dict(max_det=7),
        dict(max_nms=40),
        dict(agnostic=True, max_det=50, max_nms=200),
        dict(multi_label=True),
        dict(multi_label=True, classes=frequent, max_nms=300),
    ]
    for kw in cases:
        ours = postprocess(outs, infos, conf=0.1, iou=0.5, **kw)
        _assert_same(ours, _ultralytics(outs, shapes, 0.1, 0.5, **kw), str(kw))
        if "classes" in kw:
            assert all(set(d.class_ids.tolist()) <= set(frequent) for d in ours)
            assert sum(len(d) for d in ours) > 0


def _synthetic(rng, objects, nc=80, anchors=8400, noise=0.02, per_object=30):
    """Raw [1, 4+nc, A] output: background scores below ``noise`` plus, per object (cx, cy, w, h, cls, score),
    ``per_object`` anchors with jittered boxes and scores up to ``score``."""
    out = np.zeros((1, 4 + nc, anchors), np.float32)
    out[0, :2] = rng.uniform(0, 640, (2, anchors))
    out[0, 2:4] = rng.uniform(5, 60, (2, anchors))
    out[0, 4:] = rng.uniform(0, noise, (nc, anchors))
    slots = rng.permutation(anchors)
    for k, (cx, cy, w, h, cls, score) in enumerate(objects):
        idx = slots[k * per_object : (k + 1) * per_object]
        out[0, 0, idx] = cx + rng.normal(0, w * 0.02, per_object)
        out[0, 1, idx] = cy + rng.normal(0, h * 0.02, per_object)
        out[0, 2, idx] = w * rng.uniform(0.95, 1.05, per_object)
        out[0, 3, idx] = h * rng.uniform(0.95, 1.05, per_object)
        out[0, 4 + cls, idx] = score * rng.uniform(0.5, 1.0, per_object)
        out[0, 4 + cls, idx[0]] = score
    return out


def test_synthetic_clear_objects():
    rng = np.random.default_rng(0)
    objects = [
        (100, 100, 80, 120, 0, 0.9),
        (300, 320, 200, 150, 2, 0.8),
        (300, 320, 200, 150, 5, 0.7),  # same place, other class: kept unless agnostic
        (520, 500, 60, 60, 0, 0.6),
        (540, 510, 60, 60, 0, 0.55),  # overlaps the previous at IoU ~0.5: survives iou=0.7 only
    ]
    out = _synthetic(rng, objects)
    info = letterbox_info((480, 640), 640)  # a 640x480 photo letterboxed to 640
    shape = (480, 640, 3)
    for kw, expected in [
        (dict(iou=0.7), 5),
        (dict(iou=0.7, agnostic=True), 4),
        (dict(iou=0.3), 4),
        (dict(iou=0.7, classes=[0]), 3),
        (dict(iou=0.7, max_det=2), 2),
    ]:
        ours = postprocess(out, [info], conf=0.25, **kw)
        _assert_same(ours, _ultralytics(out, [shape], 0.25, **kw), str(kw))
        d = ours[0]
        assert len(d) == expected, kw
        assert np.all(np.diff(d.scores) <= 0)
    d = postprocess(out, [info], conf=0.25)[0]
    np.testing.assert_allclose(d.scores[:3], [0.9, 0.8, 0.7], rtol=1e-6)
    assert d.class_ids.tolist()[:3] == [0, 2, 5]
    # object 0 is (60, 40, 140, 160) in input pixels; the image sits 80 px down, so y1 clips to 0
    np.testing.assert_allclose(d.boxes[0], [60, 0, 140, 80], atol=6)


def test_synthetic_many_candidates_and_max_nms():
    rng = np.random.default_rng(1)
    objects = [(*rng.uniform(50, 590, 2), *rng.uniform(20, 200, 2), int(rng.integers(0, 3)), rng.uniform(0.3, 1))
               for _ in range(200)]
    out = _synthetic(rng, objects, per_object=40)
    info = letterbox_info((640, 640), 640)
    for kw in (dict(), dict(max_nms=500), dict(agnostic=True), dict(max_det=1000), dict(multi_label=True)):
        ours = postprocess(out, [info], conf=0.25, iou=0.6, **kw)
        _assert_same(ours, _ultralytics(out, [(640, 640, 3)], 0.25, 0.6, **kw), str(kw))


def test_empty_and_validation():
    out = np.full((2, 84, 100), 0.01, np.float32)
    info = letterbox_info((100, 100), 640)
    dets = postprocess(out, [info, info])
    assert [len(d) for d in dets] == [0, 0]
    assert dets[0].boxes.shape == (0, 4) and dets[0].class_ids.dtype == np.int64
    out[:, 4, :10] = 0.9  # candidates, but max_det=0 keeps none of them
    assert [len(d) for d in postprocess(out, [info, info], max_det=0)] == [0, 0]
    assert len(postprocess(out, [info, info], max_det=1)[0]) == 1
    with pytest.raises(ValueError):  # fewer letterbox infos than images: a caller's bug
        postprocess(out, [info])
    with pytest.raises(UnsupportedModelError, match="detect output"):  # not a detect head: the user's model
        postprocess(out[0], [info])


def _random_boxes(rng, n, clusters=True):
    c = rng.uniform(0, 640, (n, 2))
    wh = np.exp(rng.uniform(np.log(1), np.log(500), (n, 2)))
    if clusters:  # a third of the boxes jitter around others: heavy overlap
        k = n // 3
        base = rng.integers(0, n, k)
        c[:k] = c[base] + rng.normal(0, 4, (k, 2))
        wh[:k] = wh[base] * rng.uniform(0.85, 1.15, (k, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32), rng.random(n).astype(np.float32)


def _tv(boxes, scores, thr):
    return torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()


@pytest.mark.parametrize("mode", ["auto", "sparse", "chunked"])
def test_nms_matches_torchvision(monkeypatch, mode):
    if mode == "sparse":
        monkeypatch.setattr(nms_mod, "SPARSE_PAIRS_PER_BOX", 10**9)
    if mode == "chunked":
        monkeypatch.setattr(nms_mod, "SPARSE_PAIRS_PER_BOX", -1)
    rng = np.random.default_rng(5)
    for n in (1, 2, 10, 97, 500, 3000):
        for thr in (0.1, 0.45, 0.7, 0.9):
            boxes, scores = _random_boxes(rng, n)
            ref = _tv(boxes, scores, thr)
            np.testing.assert_array_equal(nms(boxes, scores, thr), ref, err_msg=f"n={n} thr={thr}")
            np.testing.assert_array_equal(nms(boxes, scores, thr, max_keep=50), ref[:50])
    # many classes separated by a coordinate offset, as class-aware NMS does it
    boxes, scores = _random_boxes(rng, 4000)
    cls = rng.integers(0, 80, 4000).astype(np.float32)
    boxes = boxes + cls[:, None] * np.float32(7680)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), _tv(boxes, scores, 0.5))


def test_nms_long_suppression_chain_and_degenerate_boxes():
    # boxes in a row, each overlapping only its neighbours, scores decreasing: keep alternates along the chain
    n = 300
    x = np.arange(n, dtype=np.float32) * 4
    boxes = np.stack([x, np.zeros(n), x + 10, np.full(n, 10)], 1).astype(np.float32)
    scores = np.linspace(1, 0.5, n, dtype=np.float32)
    keep = nms(boxes, scores, 0.3)
    np.testing.assert_array_equal(keep, _tv(boxes, scores, 0.3))
    assert 0 < len(keep) < n
    for small in (boxes[:40], boxes[:200]):
        np.testing.assert_array_equal(nms(small, scores[: len(small)], 0.3), _tv(small, scores[: len(small)], 0.3))
    # identical boxes, zero-area boxes (0/0 IoU is not an overlap), thresholds at the float32 boundary
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 7]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    for thr in (0.0, 0.5, 0.7, 1.0):
        np.testing.assert_array_equal(nms(boxes, scores, thr), _tv(boxes, scores, thr), err_msg=str(thr))
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)


def test_end2end_decode():
    rng = np.random.default_rng(7)
    b, k = 2, 300
    xy = rng.uniform(0, 600, (b, k, 2))
    wh = rng.uniform(1, 200, (b, k, 2))
    out = np.concatenate(
        [xy, xy + wh, rng.uniform(0, 1, (b, k, 1)), rng.integers(0, 80, (b, k, 1))], axis=2
    ).astype(np.float32)
    infos = [letterbox_info((1080, 810), 640), letterbox_info((360, 640), 640)]
    shapes = [(1080, 810, 3), (360, 640, 3)]
    for kw in (dict(), dict(classes=[1, 2, 3]), dict(max_det=20)):
        ours = postprocess_end2end(out, infos, conf=0.4, **kw)
        _assert_same(ours, _ultralytics(out, shapes, 0.4, end2end=True, **kw), str(kw))
    d = postprocess_end2end(out, infos, conf=0.4)[0]
    rows = out[0][out[0, :, 4] > 0.4]
    np.testing.assert_array_equal(d.scores, rows[:, 4])  # kept in the model's order
    assert (d.boxes[:, [0, 2]] <= 810).all() and (d.boxes[:, [1, 3]] <= 1080).all()


def test_detections_to_list_and_draw():
    dets = Detections(
        np.array([[10, 20, 110, 220], [50, 60, 70, 80]], np.float32),
        np.array([0.9, 0.4], np.float32),
        np.array([0, 7], np.int64),
    )
    rows = dets.to_list({0: "person", 1: "bicycle"})
    assert len(dets) == 2
    assert rows[0] == {"box": [10.0, 20.0, 110.0, 220.0], "score": pytest.approx(0.9), "class_id": 0,
                       "class_name": "person"}
    assert rows[1]["class_name"] == "7" and dets.to_list(["a"] * 8)[1]["class_name"] == "a"
    img = np.zeros((240, 320, 3), np.uint8)
    drawn = draw_detections(img, dets, {0: "person"})
    assert drawn.shape == img.shape and not img.any()  # a copy; the input is untouched
    assert drawn[20:220, 10].any() and drawn[20:220, 110].any() and not drawn[150:200, 200:300].any()
    assert np.array_equal(draw_detections(img, Detections.empty()), img)
