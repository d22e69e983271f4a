"""End-to-end NMS graphs: the "onnx" variant run in ONNX Runtime against the host ``postprocess`` on real photos
(single image, batch 2 and 3 on a dynamic-batch export, truncation, empty results, an FP16-typed graph), the
``Predictor`` auto-detecting the result, the ``EfficientNMS_TRT`` node's exact structure, and ``nms_stage``'s cache.

Boxes are compared exactly: the graph computes the corners with the host's float32 operations, ONNX Runtime's
NonMaxSuppression computes IoU in the host's float32 order, and both results go through the same ``scale_boxes``.
The reference is the host's NMS run class by class (``exact_host``): ``postprocess`` keeps classes apart as
ultralytics does, by offsetting class c's boxes by c × 7680 px, and at class 79's offset (606,720) float32 steps
are 1/16 px, so a pair whose IoU lies within rounding of the threshold can go either way there, while the graph's
NonMaxSuppression compares each class's boxes at their own coordinates.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from trtbuild.artifacts import StageResult
from trtbuild.cli import cli
from trtbuild.config import NmsConfig
from trtbuild.errors import InputError, UnsupportedModelError
from trtbuild.owned import NotOursError
from trtbuild.runtime.onnx import OnnxRunner
from trtbuild.stages.nms import EFFICIENT_NMS, MAX_TOPK, PLUGIN_DOMAIN, append_nms, nms_stage
from trtbuild.trt.compat import TensorRTInfo
from trtbuild.trt.host import Host
from trtbuild.vision.decode import Detections, postprocess, postprocess_end2end
from trtbuild.vision.letterbox import letterbox_batch

from ..helpers import photos

LOW_CONF = 0.05  # the shapes model on photos: ~10-30 detections per image at this threshold


@pytest.fixture(scope="module")
def images():
    return list(photos().values())


@pytest.fixture(scope="module")
def calibrated(calibrated_onnx, images):
    """(model, per-image letterboxed inputs, LetterboxInfos, raw outputs) of the 640 batch-1 model."""
    model = onnx.load(str(calibrated_onnx))
    runner = OnnxRunner(model)
    batches, infos, raws = [], [], []
    for img in images:
        batch, (info,) = letterbox_batch([img], 640)
        batches.append(batch.copy())
        infos.append(info)
        raws.append(runner.infer(batch)[0])
    return model, batches, infos, raws


@pytest.fixture(scope="module")
def dynamic_onnx(shapes_dynamic_onnx):
    """The trained reference model exported at 320×320 with a dynamic batch axis (real detections on photos)."""
    return shapes_dynamic_onnx


def exact_host(raw: np.ndarray, infos, conf: float = 0.25, iou: float = 0.7, max_det: int = 300) -> list[Detections]:
    """The host's decode with class-aware NMS done per class at the boxes' own coordinates (no class offset),
    merged by score (highest first) and cut at ``max_det``: the semantics of ONNX NonMaxSuppression."""
    out = []
    for i, info in enumerate(infos):
        per_class = [postprocess(raw[i : i + 1], [info], conf=conf, iou=iou, max_det=max_det, agnostic=True,
                                 classes=[c])[0] for c in range(raw.shape[1] - 4)]
        scores = np.concatenate([d.scores for d in per_class])
        order = np.argsort(-scores, kind="stable")[:max_det]
        out.append(Detections(np.concatenate([d.boxes for d in per_class])[order], scores[order],
                              np.concatenate([d.class_ids for d in per_class])[order]))
    return out


def run_each(model, batches) -> list[np.ndarray]:
    runner = OnnxRunner(model)
    return [runner.infer(b)[0] for b in batches]


def assert_same(end2end, host, what=""):
    """Per image: the same detections in the same order, bit for bit."""
    assert len(end2end) == len(host)
    for i, (got, want) in enumerate(zip(end2end, host)):
        assert len(got) == len(want), f"{what} image {i}: {len(got)} detections, host {len(want)}"
        np.testing.assert_array_equal(got.class_ids, want.class_ids, err_msg=f"{what} image {i}")
        np.testing.assert_array_equal(got.scores, want.scores, err_msg=f"{what} image {i}")
        np.testing.assert_allclose(got.boxes, want.boxes, rtol=0, atol=0, err_msg=f"{what} image {i}")


def assert_layout(out: np.ndarray, max_det: int):
    """[B, max_det, 6] float32, scores descending, every row after the last detection all zero."""
    assert out.dtype == np.float32 and out.shape[1:] == (max_det, 6)
    for rows in out:
        n = int((rows[:, 4] > 0).sum())
        assert np.all(rows[:n, 4] > 0) and np.all(np.diff(rows[:n, 4]) <= 0)
        assert not rows[n:].any()


def best_scores(raw: np.ndarray) -> np.ndarray:
    return raw[:, 4:].max(1)


@pytest.mark.parametrize("conf,iou", [(0.25, 0.7), (0.1, 0.45)])
def test_onnx_variant_matches_host_on_photos(calibrated, conf, iou):
    model, batches, infos, raws = calibrated
    nms_model = append_nms(model, "onnx", conf=conf, iou=iou)
    onnx.checker.check_model(nms_model, full_check=True)
    outs = run_each(nms_model, batches)
    assert_layout(np.concatenate(outs), 300)
    host = [exact_host(r, [info], conf=conf, iou=iou)[0] for r, info in zip(raws, infos)]
    ours = [postprocess_end2end(o, [info], conf=conf)[0] for o, info in zip(outs, infos)]
    assert_same(ours, host)
    candidates = sum(int((best_scores(r) > conf).sum()) for r in raws)
    kept = sum(len(h) for h in host)
    assert kept >= 30 and candidates - kept >= 100  # many detections, and NMS really suppressed boxes
    assert len({int(c) for h in host for c in h.class_ids}) >= 5


def test_max_det_keeps_the_top_scores(calibrated):
    model, batches, infos, raws = calibrated
    full = [postprocess(r, [info])[0] for r, info in zip(raws, infos)]
    richest = max(range(len(full)), key=lambda i: len(full[i]))
    max_det = len(full[richest]) // 3
    assert max_det >= 5
    out = run_each(append_nms(model, max_det=max_det), [batches[richest]])[0]
    assert_layout(out, max_det)
    assert (out[0, :, 4] > 0).all()  # truncated: every row is a detection
    ours = postprocess_end2end(out, [infos[richest]], max_det=max_det)
    assert_same(ours, exact_host(raws[richest], [infos[richest]], max_det=max_det))
    np.testing.assert_array_equal(ours[0].scores, full[richest].scores[:max_det])


def test_conf_equal_to_a_score_excludes_it(calibrated):
    """The host keeps score > conf: a detection whose score is exactly conf (in float32) is dropped, as here."""
    model, batches, infos, raws = calibrated
    full = [postprocess(r, [info])[0] for r, info in zip(raws, infos)]
    i = max(range(len(full)), key=lambda k: len(full[k]))
    conf = float(full[i].scores[len(full[i]) // 2])  # exactly a kept detection's float32 score
    out = run_each(append_nms(model, conf=conf), [batches[i]])[0]
    host = exact_host(raws[i], [infos[i]], conf=conf)
    assert_same(postprocess_end2end(out, [infos[i]], conf=conf), host)
    assert np.float32(conf) not in out[0, :, 4] and 0 < len(host[0]) <= len(full[i]) // 2


def test_conf_above_every_score_gives_all_zero_output(calibrated):
    model, batches, _, raws = calibrated
    conf = float(max(best_scores(r).max() for r in raws))  # host keeps score > conf: nothing passes
    outs = run_each(append_nms(model, conf=conf), batches)
    assert all(o.shape == (1, 300, 6) and not o.any() for o in outs)


def test_batches_on_dynamic_model(dynamic_onnx, images):
    model = onnx.load(str(dynamic_onnx))
    dims = append_nms(model).graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [300, 6]
    raw_runner = OnnxRunner(model)
    for batch_images in (images[:2], images[4:7]):
        batch, infos = letterbox_batch(batch_images, 320)
        raw = raw_runner.infer(batch)[0]
        for max_det in (300, 2500):  # 2500 > 2100 anchors at 320: the padded TopK path
            out = OnnxRunner(append_nms(model, conf=LOW_CONF, iou=0.5, max_det=max_det)).infer(batch)[0]
            assert out.shape == (len(batch_images), max_det, 6)
            assert_layout(out, max_det)
            host = exact_host(raw, infos, conf=LOW_CONF, iou=0.5, max_det=max_det)
            assert_same(postprocess_end2end(out, infos, conf=LOW_CONF, max_det=max_det), host, f"max_det {max_det}")
            assert all(len(h) >= 5 for h in host) and len({len(h) for h in host}) > 1


def test_fp16_typed_model(dynamic_onnx, images):
    """float16 graph input and output: the output is cast to float32 before NMS, the detections stay float32."""
    from trtbuild.stages.precision.fp16 import convert_fp16

    fp16, _ = convert_fp16(onnx.load(str(dynamic_onnx)), keep_io_types=False)
    assert fp16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    batch, infos = letterbox_batch(images[:2], 320)
    raw = OnnxRunner(fp16).infer(batch)[0]
    conf = LOW_CONF
    nms_model = append_nms(fp16, conf=conf)
    assert nms_model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    out = OnnxRunner(nms_model).infer(batch)[0]
    assert out.dtype == np.float32
    host = exact_host(raw, infos, conf=conf)
    assert min(len(h) for h in host) >= 5
    assert_same(postprocess_end2end(out, infos, conf=conf), host)


def test_predictor_treats_nms_model_as_end2end(calibrated, images):
    from trtbuild.tasks.predictor import Predictor

    model = calibrated[0]
    nms_model = append_nms(model)
    e2e = Predictor(OnnxRunner(nms_model))
    plain = Predictor(OnnxRunner(model))
    assert e2e.end2end and not plain.end2end
    assert e2e.imgsz == plain.imgsz == (640, 640) and e2e.names == plain.names
    assert_same(e2e.predict(images), plain.predict(images))
    meta = {p.key: p.value for p in nms_model.metadata_props}
    original = {p.key: p.value for p in model.metadata_props}
    assert {k: meta[k] for k in original if k != "end2end"} == {k: v for k, v in original.items() if k != "end2end"}
    assert (meta["end2end"], meta["nms"], meta["max_det"], meta["conf"], meta["iou"]) == (
        "True", "onnx", "300", "0.25", "0.7")


def _plugin_inputs(model: onnx.ModelProto, node: onnx.NodeProto) -> onnx.ModelProto:
    """The graph up to the plugin node, with the plugin's two inputs as outputs (runnable in ONNX Runtime)."""
    sub = onnx.ModelProto()
    sub.CopyFrom(model)
    keep = []
    for n in sub.graph.node:
        if n.name == node.name:
            break
        keep.append(n)
    del sub.graph.node[:]
    sub.graph.node.extend(keep)
    del sub.graph.output[:]
    sub.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in node.input)
    del sub.opset_import[:]
    sub.opset_import.extend(o for o in model.opset_import if o.domain != PLUGIN_DOMAIN)
    return sub


def test_efficient_variant_structure(dynamic_onnx, images):
    model = onnx.load(str(dynamic_onnx))
    nc = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value - 4
    eff = append_nms(model, "efficient", conf=0.3, iou=0.6, max_det=100)
    onnx.checker.check_model(eff, full_check=True)  # the custom domain is declared in opset_import
    assert {(o.domain, o.version) for o in eff.opset_import} >= {(PLUGIN_DOMAIN, 1), ("", 17)}
    plugins = [n for n in eff.graph.node if n.op_type == EFFICIENT_NMS]
    assert len(plugins) == 1 and plugins[0].domain == PLUGIN_DOMAIN
    node = plugins[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    f32 = np.float32
    assert attrs == {
        "plugin_version": b"1", "plugin_namespace": b"", "max_output_boxes": 100, "background_class": -1,
        "score_activation": 0, "class_agnostic": 0, "box_coding": 0,
        "score_threshold": attrs["score_threshold"], "iou_threshold": attrs["iou_threshold"],
    }
    # the plugin keeps score >= t and suppresses at IoU >= t. The host keeps float32 score > float32(conf): t is
    # the next float32 above float32(0.3); it suppresses when the float32 IoU exceeds the double 0.6: t is the
    # smallest float32 above 0.6
    assert attrs["score_threshold"] == float(np.nextafter(f32(0.3), f32(1)))
    iou_t = f32(attrs["iou_threshold"])
    assert float(iou_t) > 0.6 and float(np.nextafter(iou_t, f32(0))) <= 0.6
    assert len(node.input) == 2 and len(node.output) == 4
    types = {v.name: v for v in eff.graph.value_info}
    want = [(TensorProto.INT32, ["batch", 1]), (TensorProto.FLOAT, ["batch", 100, 4]),
            (TensorProto.FLOAT, ["batch", 100]), (TensorProto.INT32, ["batch", 100])]
    for name, (elem, dims) in zip(node.output, want):
        tt = types[name].type.tensor_type
        assert tt.elem_type == elem and [d.dim_value or d.dim_param for d in tt.shape.dim] == dims
    # num_detections is not needed: the plugin zero-fills rows past it; the other three are concatenated
    consumers = {i for n in eff.graph.node for i in n.input}
    assert node.output[0] not in consumers and all(o in consumers for o in node.output[1:])
    concat = next(n for n in eff.graph.node if "detections" in n.output)
    assert concat.op_type == "Concat" and helper.get_attribute_value(concat.attribute[0]) == 2
    assert concat.input[0] == node.output[1]
    out = eff.graph.output[0]
    assert out.name == "detections" and out.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim] == ["batch", 100, 6]
    assert {p.key: p.value for p in eff.metadata_props}["nms"] == "efficient"

    # what the plugin receives, computed by ONNX Runtime: xyxy boxes [B,A,4] and best-class-only scores [B,A,nc]
    batch, _ = letterbox_batch(images[:2], 320)
    raw = OnnxRunner(model).infer(batch)[0]
    boxes, scores = OnnxRunner(_plugin_inputs(eff, node)).infer(batch)
    cx, cy, w, h = raw[:, 0], raw[:, 1], raw[:, 2] / np.float32(2), raw[:, 3] / np.float32(2)
    np.testing.assert_array_equal(boxes, np.stack([cx - w, cy - h, cx + w, cy + h], -1))
    cls = raw[:, 4:].transpose(0, 2, 1)
    assert scores.shape == cls.shape == (2, raw.shape[2], nc)
    best = cls.argmax(-1)
    np.testing.assert_array_equal(np.take_along_axis(scores, best[..., None], -1), cls.max(-1, keepdims=True))
    assert (scores > 0).sum(-1).max() == 1  # one class per anchor


def test_efficient_variant_is_not_runnable_in_onnxruntime(dynamic_onnx):
    with pytest.raises(InputError, match="ONNX Runtime cannot load"):
        OnnxRunner(append_nms(onnx.load(str(dynamic_onnx)), "efficient"))


def test_nms_stage_caches_and_rebuilds(dynamic_onnx, tmp_path):
    src = tmp_path / "dyn.sim.onnx"
    shutil.copy(dynamic_onnx, src)
    first = nms_stage(src)
    assert not first.skipped and first.output == tmp_path / "dyn.sim.nms.onnx"
    assert first.report_path == tmp_path / "dyn.sim.nms.json"
    report = json.loads(first.report_path.read_text())
    assert report["variant"] == "onnx" and report["max_det"] == 300 and report["output_shape"] == ["batch", 300, 6]
    assert report["ops_added"]["NonMaxSuppression"] == 1 and report["outputs"]["dyn.sim.nms.onnx"]
    mtime = first.output.stat().st_mtime_ns
    second = nms_stage(src)
    assert second.skipped and second.output.stat().st_mtime_ns == mtime
    assert nms_stage(src, NmsConfig(force=True)).skipped is False
    assert not nms_stage(src, NmsConfig(conf=0.5)).skipped  # other options: other key
    assert json.loads(first.report_path.read_text())["conf"] == 0.5
    first.output.write_bytes(b"tampered")  # a damaged output is rebuilt (when the user says so: not trtbuild's now)
    with pytest.raises(NotOursError, match="changed since trtbuild wrote it"):
        nms_stage(src, NmsConfig(conf=0.5))
    assert not nms_stage(src, NmsConfig(conf=0.5, overwrite=True)).skipped
    eff = nms_stage(src, NmsConfig(variant="efficient", max_det=50))
    assert eff.output == tmp_path / "dyn.sim.nms-efficient.onnx" and not eff.skipped
    assert nms_stage(src, NmsConfig(variant="efficient", max_det=50)).skipped
    loaded = onnx.load(str(eff.output))
    assert any(n.op_type == EFFICIENT_NMS for n in loaded.graph.node)
    custom = nms_stage(src, NmsConfig(out=tmp_path / "out" / "e2e.onnx"))
    assert custom.output.is_file() and custom.report_path == tmp_path / "out" / "e2e.json"
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".*.onnx"))


def test_export_nms_efficient_warns_for_the_hosts_tensorrt(dynamic_onnx, tmp_path, monkeypatch):
    """``trtbuild export --nms efficient`` (the export itself stubbed: it is not what is tested) writes the plugin
    model and warns on stderr, in flags, for this host's TensorRT (none: for whichever builds it); ``--nms onnx``
    never warns."""
    src = tmp_path / "m.onnx"
    shutil.copy(dynamic_onnx, src)
    monkeypatch.setattr("trtbuild.cli.model.export", lambda model, cfg: StageResult(src, tmp_path / "m.export.json",
                                                                                   {"stage": "export"}, True))
    head = "warning: --nms efficient: the EfficientNMS_TRT plugin is deprecated since TensorRT 10.12"
    for tensorrt, expect in [
        (TensorRTInfo(False, error="not installed"), " (no TensorRT on this host to say more): for an engine built "
                                                     "with TensorRT 11.x use --nms onnx instead (ONNX "
                                                     "NonMaxSuppression, built as TensorRT's INMSLayer"),
        (TensorRTInfo(True, "10.3.0"), None),
        (TensorRTInfo(True, "10.13.3.9"), "; TensorRT 10.13.3.9 still loads it, but a later release may remove it"),
        (TensorRTInfo(True, "11.4.0.106"), ", with no replacement plugin; TensorRT 11.4.0.106 still loads it, but "
                                           "use --nms onnx instead"),
    ]:
        res = CliRunner().invoke(cli, ["export", "m.pt", "--nms", "efficient", "--max-det", "50"], obj=Host(tensorrt))
        assert res.exit_code == 0 and (tmp_path / "m.nms-efficient.onnx").is_file(), res.output
        warned = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
        assert len(warned) == (expect is not None) and all(w.startswith(head + expect) for w in warned), warned
    res = CliRunner().invoke(cli, ["export", "m.pt", "--nms", "onnx", "--max-det", "50"], obj=Host(tensorrt))
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_nms_stage_bad_inputs(dynamic_onnx, tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(InputError, match="missing.onnx"):
        nms_stage(missing)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.onnx"):
        nms_stage(junk)
    assert not (tmp_path / "junk.nms.onnx").exists()

    # a readable model whose output is not [B, 4+nc, A]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3 * 32 * 32])
    graph = helper.make_graph([helper.make_node("Flatten", ["images"], ["logits"])], "cls", [x], [y])
    classifier = tmp_path / "classifier.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(classifier))
    with pytest.raises(UnsupportedModelError, match=r"classifier\.onnx.*4\+nc"):
        nms_stage(classifier)

    # NMS cannot be appended twice
    src = tmp_path / "dyn.onnx"
    shutil.copy(dynamic_onnx, src)
    once = nms_stage(src).output
    with pytest.raises(UnsupportedModelError, match="already ends in NMS"):
        nms_stage(once)

    for kwargs in ({"variant": "batched"}, {"conf": 1.5}, {"iou": -0.1}, {"max_det": 0},
                   {"max_det": MAX_TOPK + 1}):
        with pytest.raises(InputError):
            nms_stage(src, NmsConfig(**kwargs))


def test_export_nms_option_writes_the_end_to_end_model(tmp_path):
    from click.testing import CliRunner

    from trtbuild.cli import cli

    args = ["export", "yolov8n.yaml", "--imgsz", "320", "--out-dir", str(tmp_path), "--nms", "onnx", "--max-det", "50"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert f"nms       {tmp_path / 'yolov8n.nms.onnx'} written" in res.output and "[1, 50, 6]" in res.output
    again = CliRunner().invoke(cli, args)
    assert "yolov8n.nms.onnx is up to date" in again.output
