"""``trtbuild doctor`` reports versions, TensorRT/pycuda/GPU status and the stages this host can run."""

from __future__ import annotations

import json
from importlib.util import find_spec

from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.cuda_probe import probe_cuda
from trtbuild.trt.compat import TensorRTInfo


def test_doctor_text_report():
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in ("Python:", "onnx:", "onnxruntime:", "ultralytics:", "TensorRT:", "pycuda:", "CUDA driver:"):
        assert needle in out
    if find_spec("tensorrt") is None:
        assert "TensorRT:     not installed" in out
        assert "[no ] build TensorRT engines" in out
    have = {m: find_spec(m) is not None for m in ("ultralytics", "onnxsim")}
    assert ("[yes] export (ultralytics → ONNX)" in out) == have["ultralytics"]
    assert ("[yes] simplify (onnxsim + parity)" in out) == have["onnxsim"]


def test_doctor_json_matches_probes():
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    info = json.loads(result.output)
    assert info["tensorrt"]["installed"] == (find_spec("tensorrt") is not None)
    assert info["pycuda"]["usable"] is False or find_spec("pycuda") is not None
    assert len(info["gpus"]) == len(probe_cuda().gpus)
    build = info["stages"]["build TensorRT engines"]
    assert build["available"] == (info["tensorrt"]["installed"] and bool(info["gpus"]))
    if not build["available"]:
        assert build["why_not"]


def test_typing_summary_by_major_version():
    assert "strongly typed only" in TensorRTInfo(True, "11.4.0.106").typing_summary()
    ten3 = TensorRTInfo(True, "10.3.0")
    assert ten3.weak_typing and not ten3.strong_typing_solid and "weak typing" in ten3.typing_summary()
    ten13 = TensorRTInfo(True, "10.13.3.9")
    assert ten13.weak_typing and ten13.strong_typing_solid
    assert not TensorRTInfo(True, "11.0.0").weak_typing
    assert TensorRTInfo(False, error="not installed").typing_summary() == "n/a"
