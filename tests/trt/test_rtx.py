"""Real TensorRT on every commit: TensorRT-RTX (``pip install tensorrt-rtx``) parses and builds trtbuild's own ONNX
files ahead of time on this CPU host, no GPU involved, no double.

Marker ``rtx``: skipped only where ``tensorrt_rtx`` is not installed (``make install`` and CI install it). What
these engines do on a GPU is not checked here (deserializing one needs an RTX GPU): see the ``gpu`` test at the end.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from trtbuild.cli import cli
from trtbuild.config import BuildConfig, CalibrateConfig, CheckConfig, FP16Config, Int8Config
from trtbuild.cuda.probe import CudaProbe
from trtbuild.errors import BuildError, InputError
from trtbuild.layout import layers_path, sidecar_path
from trtbuild.owned import NotOursError
from trtbuild.stages.precision.calibrate import calibrate
from trtbuild.stages.precision.fp16 import fp16
from trtbuild.stages.precision.int8 import int8, qdq_tensors
from trtbuild.stages.simplify import simplify
from trtbuild.trt.builder import build
from trtbuild.trt.check import check
from trtbuild.trt.compat import TensorRTInfo, tensorrt_info
from trtbuild.trt.host import Host

from ..helpers import photo_folder

pytestmark = pytest.mark.rtx
RTX_PLAN_MAGIC = b"vtrt"  # the first bytes of a serialized TensorRT-RTX engine


@pytest.fixture(scope="module")
def host() -> Host:
    """This CPU host as a build sees it: no standard TensorRT, no GPU, the real TensorRT-RTX."""
    return Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"),
                rtx=tensorrt_info("rtx"))


@pytest.fixture(scope="module")
def reference(shapes_onnx, tmp_path_factory) -> Path:
    """The reference model's simplified ONNX (640) with the FP16 and Q/DQ INT8 ONNX the real precision stages make."""
    root = tmp_path_factory.mktemp("rtx-reference")
    shutil.copy(shapes_onnx, root / "shapes.onnx")
    src = simplify(root / "shapes.onnx").output
    photos = photo_folder(root / "calib")
    fp16(src, FP16Config(images=tuple(sorted(photos.iterdir()))))
    ranges = calibrate(src, CalibrateConfig(images=photos, method="minmax", tensors=tuple(qdq_tensors(src))))
    int8(src, ranges.output)
    return src


def run_cli(args, host):
    return CliRunner().invoke(cli, [str(a) for a in args], obj=host)


@pytest.mark.parametrize("precision, source, layers", [
    ("fp32", "shapes.sim.onnx", 298), ("fp16", "shapes.fp16.onnx", 301), ("int8", "shapes.int8.onnx", 930)])
def test_reference_model_builds_a_real_rtx_engine_per_precision(reference, host, tmp_path, precision, source, layers):
    res = build(reference, BuildConfig(precision=precision, flavor="rtx", out_dir=tmp_path), host=host, progress=False)
    engine = res.output
    assert engine == tmp_path / f"shapes.{precision}.rtx.engine" and not res.skipped
    data = engine.read_bytes()
    assert data[:4] == RTX_PLAN_MAGIC and len(data) > 5 << 20  # a real plan with the weights inside
    meta = json.loads(sidecar_path(engine).read_text())
    assert meta == res.report and meta["engine_bytes"] == len(data)
    assert meta["flavor"] == "rtx" and meta["tensorrt_version"] == tensorrt_info("rtx").version
    assert meta["target_compute_capabilities"] == ["8.6", "8.9", "12.0"] and meta["gpu"] is None
    assert Path(meta["source_onnx"]).name == source and meta["typing"] == "strong" and meta["build_flags"] == []
    assert meta["io"] == [{"name": "images", "mode": "input", "shape": [1, 3, 640, 640], "dtype": "float32"},
                          {"name": "output0", "mode": "output", "shape": [1, 12, 8400], "dtype": "float32"}]
    assert set(meta["outputs"]) == {engine.name} and not layers_path(engine).exists()  # no GPU: no inspector
    assert meta["build_seconds"] > 0 and "ahead of time" in meta["notes"][-1]
    checked = check(reference.with_name(source), CheckConfig("rtx"), host=host)
    assert checked.report["ok"] and checked.report["layers"] == layers


def test_check_accepts_every_qdq_pair_and_flags_nms(reference, host):
    from trtbuild.config import NmsConfig
    from trtbuild.stages.nms import nms_stage

    q = check(reference.with_name("shapes.int8.onnx"), CheckConfig("rtx"), host=host).report
    assert q["ok"] and q["qdq"]["quantize_layers"] == q["qdq"]["onnx_quantize"] == 84
    assert q["qdq"]["dequantize_layers"] == q["qdq"]["onnx_dequantize"]
    e2e = nms_stage(reference, NmsConfig()).output
    res = run_cli(["check", e2e], host)
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1].startswith(f"error: {e2e}: TensorRT-RTX ")
    assert "NMS layer(s): no runner for NonMaxSuppression" in res.output


def test_budget_fallback_model_is_the_int8_source(reference, host, tmp_path):
    src = tmp_path / "fb.sim.onnx"
    shutil.copy(reference, src)
    ranges = reference.with_name("shapes.ranges.json")
    full = int8(src, ranges)
    first_conv = full.report["qdq"]["quantized_convs"][0]
    int8(src, ranges, Int8Config(exclude=(first_conv,), tag="int8fb"))
    res = build(src, BuildConfig(precision="int8", flavor="rtx", out_dir=tmp_path), host=host, progress=False)
    assert Path(res.report["source_onnx"]).name == "fb.int8fb.onnx" and res.report["int8_source"] == "qdq"


def test_dynamic_batch_export_gets_its_profile(host, tmp_path, exported_yolov8n_dynamic, exported_yolov8n):
    onnx_path = exported_yolov8n_dynamic
    res = build(onnx_path, BuildConfig(precision="fp32", flavor="rtx", min_batch=1, opt_batch=4, max_batch=8,
                                       target_cc=("8.9",), out_dir=tmp_path), host=host, progress=False)
    meta = res.report
    assert meta["profiles"] == {"images": [[1, 3, 320, 320], [4, 3, 320, 320], [8, 3, 320, 320]]}
    assert meta["io"][0]["shape"] == [-1, 3, 320, 320] and meta["target_compute_capabilities"] == ["8.9"]
    static = exported_yolov8n  # 320, batch 1
    with pytest.raises(InputError, match="fixed at 1"):  # a static export refuses a batch profile, before building
        build(static, BuildConfig(precision="fp32", flavor="rtx", max_batch=4, out_dir=tmp_path), host=host)


def test_second_build_is_a_noop_and_an_edited_engine_is_rebuilt(reference, host, tmp_path):
    config = BuildConfig(precision="fp16", flavor="rtx", out_dir=tmp_path)
    first = build(reference, config, host=host, progress=False)
    again = build(reference, config, host=host, progress=False)
    assert again.skipped and again.report["key"] == first.report["key"]
    data = bytearray(first.output.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: the hash rule, not the size rule
    first.output.write_bytes(bytes(data))
    with pytest.raises(NotOursError, match="changed since trtbuild wrote it"):  # not up to date, and not its own
        build(reference, config, host=host, progress=False)
    assert first.output.read_bytes() == bytes(data)
    rebuilt = build(reference, replace(config, overwrite=True), host=host, progress=False)
    assert not rebuilt.skipped and rebuilt.output.read_bytes() != bytes(data)
    other = build(reference, BuildConfig(precision="fp16", flavor="rtx", target_cc="8.6", out_dir=tmp_path),
                  host=host, progress=False)
    assert not other.skipped and other.report["key"] != first.report["key"]  # targets are part of the key


def test_inspect_of_an_rtx_engine_on_a_cpu_host_says_where_it_can_be_read(reference, host, tmp_path):
    engine = build(reference, BuildConfig(precision="fp32", flavor="rtx", out_dir=tmp_path), host=host,
                   progress=False).output
    res = run_cli(["inspect", engine], host)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "a TensorRT-RTX engine, built ahead of time with no GPU" in lines[0] and "on an RTX GPU" in lines[0]
    assert f"trtbuild check {reference}" in lines[0] and "--force" not in lines[0]  # a rebuild would not help


@pytest.mark.parametrize("args, needle", [
    (["--nms", "onnx"], "--nms onnx: TensorRT-RTX"),
    (["--precision", "int8", "--int8-mode", "table"], "--int8-mode table: TensorRT-RTX"),
    (["--dla-core", "0"], "--dla-core 0: TensorRT-RTX"),
    (["--target-cc", "9.0"], "--target-cc 9.0: TensorRT-RTX builds for RTX GPUs only"),
    (["--target-cc", "current"], "--target-cc current needs a GPU"),
    (["--typing", "weak"], "builds strongly typed networks only"),
], ids=["nms", "int8-table", "dla", "hopper", "current", "weak"])
def test_refusals_are_one_line_and_leave_nothing(reference, host, tmp_path, args, needle):
    out = tmp_path / "engines"
    before = sorted(reference.parent.iterdir())
    res = run_cli(["build", reference, "--flavor", "rtx", "--out-dir", out, "--no-progress", *args], host)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.output
    assert not out.exists() or not any(out.iterdir())
    assert sorted(reference.parent.iterdir()) == before  # refused before anything (an NMS graph) is written


def test_real_parser_errors_name_the_node_and_operator(host, tmp_path):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    node = helper.make_node("FancyBlur", ["images"], ["out"], name="/model.0/fancy", domain="com.example")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BuildError) as err:
        build(path, BuildConfig(precision="fp32", flavor="rtx", out_dir=tmp_path / "e"), host=host, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{path}: TensorRT-RTX's ONNX parser failed on 1 node(s): /model.0/fancy (FancyBlur)")
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())
    res = run_cli(["check", path], host)
    assert res.exit_code == 2 and "/model.0/fancy (FancyBlur)" in res.output.strip().splitlines()[-1]
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[:40])
    res = run_cli(["build", truncated, "--flavor", "rtx", "--out-dir", tmp_path / "t"], host)
    assert res.exit_code == 2 and "not a readable ONNX model" in res.output and not (tmp_path / "t").exists()


def test_engine_pipeline_builds_every_precision_without_a_gpu(host, tmp_path):
    """`make engine PRECISION=all` on a CPU host with TensorRT-RTX: real engines, then a no-op."""
    calib = photo_folder(tmp_path / "calib")
    out = tmp_path / "engines"
    args = ["engine", "--model", "yolov8n.yaml", "--imgsz", "320", "--precision", "all", "--calib", calib,
            "--calib-method", "minmax", "--out-dir", out]
    first = run_cli(args, host)
    assert first.exit_code == 0, first.output
    for p in ("fp32", "fp16", "int8"):
        engine = out / f"yolov8n.{p}.rtx.engine"
        assert engine.read_bytes()[:4] == RTX_PLAN_MAGIC, p
        assert f"→ {engine} (" in first.output and "no GPU needed" in first.output
    assert first.output.count("check     ") == 3 and "84/84 Q/DQ pairs accepted" in first.output
    assert "learned INT8 weights are off: --reconstruct adaquant (make: RECONSTRUCT=adaquant" in first.output
    assert "build skipped" not in first.output
    again = run_cli(args, host)  # export, simplify, fp16, calibrate, int8, 3 checks, 3 engines: nothing redone
    assert again.exit_code == 0 and again.output.count("is up to date") == 11, again.output


@pytest.mark.parametrize("config, convs, pairs", [
    ("yolo11n.yaml", "87/88", 114), ("yolo26n.yaml", "102/102", 132), ("yolov10n.yaml", "82/83", 106)])
def test_yolo11_yolo26_yolov10_int8_every_conv_and_a_real_rtx_engine(host, tmp_path, config, convs, pairs):
    """`trtbuild engine --model yolo11n.yaml --precision int8`: every conv INT8 but the DFL's (YOLO26 has none), the
    attention's MatMul/Softmax float and said so, every Q/DQ pair accepted by TensorRT-RTX, a real engine."""
    calib = photo_folder(tmp_path / "calib")
    out = tmp_path / "engines"
    res = run_cli(["engine", "--model", config, "--imgsz", "320", "--precision", "int8", "--calib", calib,
                   "--calib-method", "minmax", "--flavor", "rtx", "--out-dir", out], host)
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("int8 "))
    assert f"({convs} convs INT8, {pairs} Q/DQ pairs; float: " in line, line
    assert "MatMul + " in line and "Softmax (attention)" in line, line
    assert ("1 Conv + 1 Softmax (box decode)" in line) != config.startswith("yolo26"), line
    assert f"{pairs}/{pairs} Q/DQ pairs accepted" in res.output
    name = config.split(".")[0]
    engine = out / f"{name}.int8.rtx.engine"
    assert engine.read_bytes()[:4] == RTX_PLAN_MAGIC and f"→ {engine} (" in res.output
    assert json.loads(sidecar_path(engine).read_text())["source_onnx"].endswith(f"{name}.int8.onnx")


@pytest.mark.gpu
def test_rtx_engine_runs_and_keeps_its_runtime_cache(reference, tmp_path):
    """On an RTX GPU only: the engine's outputs match ONNX Runtime and the JIT's runtime cache is saved, then
    reused by the next runner. Unverified until run on one (this project has had no RTX GPU)."""
    import numpy as np

    from trtbuild.runtime.onnx import OnnxRunner
    from trtbuild.runtime.open import open_runner
    from trtbuild.trt.host import probe_host

    gpu_host = probe_host()
    res = build(reference, BuildConfig(precision="fp32", flavor="rtx", target_cc="current", out_dir=tmp_path),
                host=gpu_host, progress=False)
    x = np.random.default_rng(0).random((1, 3, 640, 640), np.float32)
    with open_runner(res.output, host=gpu_host) as runner:
        got = runner.infer(x)[0]
        assert runner.runtime_cache is not None and not runner.runtime_cache.loaded
    cache = res.output.with_name(res.output.name + ".runtime.cache")
    assert cache.is_file() and cache.stat().st_size > 0
    with open_runner(res.output, host=gpu_host) as runner:
        assert runner.runtime_cache.loaded
    ref = OnnxRunner(reference).infer(x)[0]
    assert np.abs(got[:, :4] - ref[:, :4]).max() < 1.0 and np.abs(got[:, 4:] - ref[:, 4:]).max() < 0.01
