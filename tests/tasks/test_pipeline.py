"""``trtbuild engine`` (what ``make engine`` runs): every CPU stage, the one-line engine skip, no-op rerun.

The CLI runs on a host value passed as click's ``obj`` (a machine without TensorRT), so these tests say the same
thing on every host, a TensorRT host included.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.cuda.probe import CudaProbe
from trtbuild.trt.compat import TensorRTInfo
from trtbuild.trt.host import Host

NO_TENSORRT = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"))


def run(args):
    """``trtbuild ARGS`` on a host without TensorRT; ``engine`` gets yolov8n.yaml (these tests' model) unless
    ``--model`` is given (its own default is the reference model)."""
    if args[:1] == ["engine"] and "--model" not in args:
        args = [*args, "--model", "yolov8n.yaml"]
    return CliRunner().invoke(cli, args, obj=NO_TENSORRT)


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_engine_runs_cpu_stages_then_skips_build_in_one_line(tmp_path):
    args = ["engine", "--imgsz", "320", "--out-dir", str(tmp_path)]
    first = run(args)
    assert first.exit_code == 0, first.output
    assert {"yolov8n.onnx", "yolov8n.sim.onnx", "yolov8n.export.json", "yolov8n.simplify.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    skip_lines = [line for line in first.output.splitlines() if "build skipped" in line]
    assert len(skip_lines) == 1 and "neither TensorRT nor TensorRT-RTX is installed" in skip_lines[0]
    assert skip_lines[0].startswith("engine    build skipped (fp16)")
    before = mtimes(tmp_path)
    second = run(args)
    assert second.exit_code == 0
    assert "yolov8n.onnx is up to date" in second.output and "yolov8n.sim.onnx is up to date" in second.output
    assert mtimes(tmp_path) == before  # the no-op rerun rewrote nothing


def test_strict_turns_the_skip_into_an_error(tmp_path):
    result = run(["engine", "--imgsz", "320", "--out-dir", str(tmp_path), "--strict"])
    assert result.exit_code == 3
    assert result.output.strip().splitlines()[-1].startswith("error: engine build skipped")


def test_bad_precision_is_a_usage_error(tmp_path):
    result = run(["engine", "--precision", "int4", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "fp32, fp16, int8" in result.output


def test_dynamic_hw_fp16_with_calibration_images_runs_end_to_end(tmp_path):
    """Was a traceback (``int('height')``): the FP16 stage measured ranges at the ONNX's symbolic H, W."""
    from ..helpers import photo_folder

    calib = photo_folder(tmp_path / "calib")
    out = tmp_path / "engines"
    args = ["engine", "--imgsz", "320,384", "--dynamic-hw", "--precision", "fp16", "--calib", str(calib),
            "--out-dir", str(out)]
    result = run(args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "yolov8n.fp16.json").read_text())
    assert report["range_images"] == len(list(calib.iterdir()))  # ranges measured on the photos, not skipped
    fp32, half = (ort.InferenceSession(str(out / f"yolov8n.{tag}.onnx")) for tag in ("sim", "fp16"))
    for h, w in ((320, 384), (256, 320)):  # still dynamic in H and W, and computing what the FP32 model does
        x = np.random.default_rng(h).random((1, 3, h, w), np.float32)
        ref, got = (s.run(None, {"images": x})[0] for s in (fp32, half))
        assert got.shape == ref.shape == (1, 84, sum((h // s) * (w // s) for s in (8, 16, 32)))
        assert np.abs(got[:, :4] - ref[:, :4]).max() < 1.0 and np.abs(got[:, 4:] - ref[:, 4:]).max() < 0.01
    key = json.loads((out / "yolov8n.export.json").read_text())["metadata"]
    assert key["dynamic_hw"] == "True" and key["imgsz"] == "[320, 384]"
    assert [line for line in result.output.splitlines() if line.startswith("engine    build skipped (fp16)")]
    again = run(args)
    assert again.output.count("is up to date") == 3, again.output  # export, simplify, fp16


def test_engine_precision_all_writes_fp16_int8_and_table(tmp_path):
    """`make engine PRECISION=all` on a CPU host: every precision artifact, then the one-line skip."""
    import onnx

    from trtbuild.stages.precision.table import parse_table

    from ..helpers import photo_folder

    calib = photo_folder(tmp_path / "calib")
    out = tmp_path / "engines"
    args = ["engine", "--imgsz", "320", "--precision", "all", "--calib", str(calib), "--calib-method", "minmax",
            "--out-dir", str(out)]
    result = run(args)
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    for suffix in ("onnx", "sim.onnx", "fp16.onnx", "int8.onnx", "calib.cache", "ranges.json"):
        assert f"yolov8n.{suffix}" in names, (suffix, names)
    int8 = onnx.load(str(out / "yolov8n.int8.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in int8.graph.node) > 0
    fp16 = onnx.load(str(out / "yolov8n.fp16.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)
    header, scales = parse_table(out / "yolov8n.calib.cache")
    assert header.startswith("TRT-") and "images" in scales
    assert "calibrate warning: only" in result.output  # 12 images: the tool says why that is too few
    skip = [line for line in result.output.splitlines() if "build skipped" in line]
    assert len(skip) == 1 and "(fp32,fp16,int8)" in skip[0]
    again = run(args)
    assert again.output.count("is up to date") >= 5, again.output
