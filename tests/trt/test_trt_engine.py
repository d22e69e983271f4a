"""Real TensorRT engines of the reference model (marker ``trt``: skipped with a reason where TensorRT or a GPU is
missing). `pytest -m trt` on a TensorRT host builds fp32/fp16/int8 engines through `trtbuild engine` and compares
them with the ONNX model in ONNX Runtime on real photos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.errors import InputError
from trtbuild.runtime.open import open_runner
from trtbuild.vision.decode import postprocess
from trtbuild.vision.letterbox import letterbox_batch

from ..conftest import SHAPES_MODEL
from ..helpers import photo_folder, photos

pytestmark = pytest.mark.trt


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`trtbuild engine --precision all` on the reference model: ONNX artifacts and the three engines."""
    root = tmp_path_factory.mktemp("trt")
    calib = photo_folder(root / "calib")
    out = root / "engines"
    args = ["engine", "--model", SHAPES_MODEL, "--precision", "all", "--calib", str(calib), "--calib-method",
            "percentile", "--out-dir", str(out), "--strict"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return out, args, res.output


def _frames():
    return list(photos().values())


def _detections(runner, frames):
    batch, infos = letterbox_batch(frames, runner.input_hw or (640, 640))
    outs = [runner.infer(batch[i : i + 1])[0] for i in range(len(frames))]
    return postprocess(np.concatenate(outs), infos, conf=0.25), np.concatenate(outs)


def _iou(a, b):
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def _matched(ref, got, iou=0.5):
    """Fraction of reference detections with a same-class detection at IoU ≥ ``iou``."""
    total = hits = 0
    for r, g in zip(ref, got):
        total += len(r)
        if len(r) and len(g):
            m = _iou(r.boxes, g.boxes) >= iou
            m &= r.class_ids[:, None] == g.class_ids[None, :]
            hits += int(m.any(axis=1).sum())
    return hits / max(total, 1)


@pytest.mark.parametrize("precision, box_px, score_tol, match", [("fp32", 1.0, 0.01, 0.99),
                                                                  ("fp16", None, 0.1, 0.95),
                                                                  ("int8", None, None, 0.80)])
def test_engine_matches_onnx_runtime(built, precision, box_px, score_tol, match):
    """FP32 (TF32 kernels allowed) close to ONNX Runtime; FP16/INT8 judged by the detections they give."""
    out, _, _ = built
    frames = _frames()
    with open_runner(out / "shapes-yolov8n.sim.onnx") as ref_runner:
        ref, ref_raw = _detections(ref_runner, frames)
    with open_runner(out / f"shapes-yolov8n.{precision}.engine") as runner:
        got, raw = _detections(runner, frames)
        times = runner.stage_times()
        assert runner.device_memory() > 0
    assert times and times["compute"] > 0 and times["h2d"] > 0
    if box_px is not None:
        assert np.abs(raw[:, :4] - ref_raw[:, :4]).max() <= box_px
    if score_tol is not None:
        assert np.abs(raw[:, 4:] - ref_raw[:, 4:]).max() <= score_tol
    assert sum(map(len, ref)) > 0
    assert _matched(ref, got) >= match


def test_second_run_is_a_no_op_and_sidecars_are_complete(built):
    out, args, _ = built
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and res.output.count(".engine is up to date") == 3, res.output
    meta = json.loads((out / "shapes-yolov8n.fp16.engine.json").read_text())
    assert meta["precision"] == "fp16" and meta["names"] and meta["imgsz"] == [640, 640]
    assert meta["gpu"]["name"] and meta["tensorrt_version"] and (out / meta["source_onnx"]).is_file()
    assert (out / "timing.cache").stat().st_size > 0


def test_inspect_reads_the_real_engine(built):
    out, _, _ = built
    res = CliRunner().invoke(cli, ["inspect", str(out / "shapes-yolov8n.int8.engine")])
    assert res.exit_code == 0, res.output
    assert "ONNX nodes →" in res.output and "engine layers" in res.output


def test_mismatched_sidecar_is_refused(built, tmp_path):
    from trtbuild.errors import EngineMismatchError

    out, _, _ = built
    engine = tmp_path / "m.fp16.engine"
    shutil.copy(out / "shapes-yolov8n.fp16.engine", engine)
    meta = json.loads((out / "shapes-yolov8n.fp16.engine.json").read_text())
    meta["tensorrt_version"] = "9.9.9"
    (tmp_path / "m.fp16.engine.json").write_text(json.dumps(meta))
    with pytest.raises(EngineMismatchError, match="rebuild it on this host"):
        open_runner(engine)


def test_dynamic_batch_engine_and_out_of_profile_shape(tmp_path):
    from trtbuild.config import BuildConfig, ExportConfig
    from trtbuild.stages.export import export
    from trtbuild.trt.builder import build

    onnx = export(SHAPES_MODEL, ExportConfig(imgsz=(320, 320), dynamic=True, out_dir=tmp_path)).output
    res = build(onnx, BuildConfig(precision="fp32", max_batch=2, opt_batch=2, out_dir=tmp_path), progress=False)
    frames = _frames()[:2]
    batch, _ = letterbox_batch(frames, (320, 320))
    with open_runner(res.output) as runner, open_runner(onnx) as ref:
        two = runner.infer(batch)[0]
        one = runner.infer(batch[:1])[0]  # shape shrink reuses the buffers
        np.testing.assert_allclose(two, ref.infer(batch)[0], atol=0.05)
        np.testing.assert_allclose(one, two[:1], atol=1e-3)
        with pytest.raises(InputError, match="max-batch"):
            runner.infer(np.concatenate([batch, batch]))


def test_end_to_end_nms_engine(built):
    from trtbuild.config import BuildConfig
    from trtbuild.trt.builder import build
    from trtbuild.trt.compat import tensorrt_info
    from trtbuild.vision.decode import postprocess_end2end

    out, _, _ = built
    variant = "onnx" if tensorrt_info().major >= 11 else "efficient"
    res = build(out / "shapes-yolov8n.sim.onnx", BuildConfig(precision="fp32", nms=variant, out_dir=out),
                progress=False)
    frames = _frames()
    with open_runner(out / "shapes-yolov8n.sim.onnx") as ref_runner:
        ref, _ = _detections(ref_runner, frames)
    with open_runner(res.output) as runner:
        batch, infos = letterbox_batch(frames, (640, 640))
        got = [postprocess_end2end(runner.infer(batch[i : i + 1])[0], infos[i : i + 1])[0] for i in range(len(frames))]
    assert _matched(ref, got) >= 0.95
