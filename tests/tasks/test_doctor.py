"""``trtbuild doctor`` reports versions, TensorRT/pycuda/GPU status and the stages a host can run.

The host is a value (``trtbuild.trt.host.Host``): each test states the host it describes, so the verdicts are
checked against what they must be, not against a second run of the same probes.
"""

from __future__ import annotations

import json
from importlib.util import find_spec

from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.cuda.probe import GPU, CudaProbe, PycudaStatus
from trtbuild.errors import INSTALL_HINT
from trtbuild.tasks.doctor import doctor, format_doctor
from trtbuild.trt.compat import TensorRTInfo
from trtbuild.trt.host import Host

BARE = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver (libcuda.so.1 not found)"),
            PycudaStatus(False, "not installed"))
ORIN = GPU(0, "Orin", "8.7", 32 << 30, True)
JETSON = Host(TensorRTInfo(True, "10.3.0"), CudaProbe("12.6", [ORIN]), PycudaStatus(True, "2026.1"))
H200 = GPU(0, "NVIDIA H200", "9.0", 141 << 30, False)
GPU_NO_PYCUDA = Host(TensorRTInfo(True, "11.4.0.106"), CudaProbe("13.0", [H200]), PycudaStatus(False, "not installed"))


def test_doctor_text_on_a_bare_host_names_what_is_missing():
    result = CliRunner().invoke(cli, ["doctor"], obj=BARE)
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in ("Python:", "onnx:", "onnxruntime:", "ultralytics:", "pycuda:       not installed",
                   "CUDA driver:  no CUDA driver"):
        assert needle in out
    assert f"TensorRT:     not installed ({INSTALL_HINT})" in out
    assert "[no ] build TensorRT engines" in out and "[no ] run TensorRT engines" in out
    assert ("[yes] export (ultralytics → ONNX)" in out) == (find_spec("ultralytics") is not None)
    assert ("[yes] simplify (onnxsim + parity)" in out) == (find_spec("onnxsim") is not None)


def test_doctor_on_a_jetson_can_build_and_run():
    info = doctor(JETSON)
    assert info["tensorrt"]["installed"] and info["tensorrt"]["version"] == "10.3.0"
    assert "weak typing" in info["tensorrt"]["typing"]
    assert info["stages"]["build TensorRT engines"] == {"available": True, "why_not": None}
    assert info["stages"]["run TensorRT engines (pycuda runtime)"] == {"available": True, "why_not": None}
    text = format_doctor(info)
    assert "GPU 0:        Orin (compute capability 8.7, 32.0 GB, integrated)" in text


def test_doctor_json_without_pycuda_builds_but_does_not_run():
    result = CliRunner().invoke(cli, ["doctor", "--json"], obj=GPU_NO_PYCUDA)
    info = json.loads(result.output)
    assert [g["name"] for g in info["gpus"]] == ["NVIDIA H200"]
    assert info["stages"]["build TensorRT engines"]["available"] is True
    run = info["stages"]["run TensorRT engines (pycuda runtime)"]
    assert run["available"] is False and run["why_not"] == "pycuda not installed"
    assert info["tensorrt"]["typing"].startswith("strongly typed only")


def test_typing_summary_by_major_version():
    assert "strongly typed only" in TensorRTInfo(True, "11.4.0.106").typing_summary()
    ten3 = TensorRTInfo(True, "10.3.0")
    assert ten3.weak_typing and not ten3.strong_typing_solid and "weak typing" in ten3.typing_summary()
    ten13 = TensorRTInfo(True, "10.13.3.9")
    assert ten13.weak_typing and ten13.strong_typing_solid
    assert not TensorRTInfo(True, "11.0.0").weak_typing
    assert TensorRTInfo(False, error="not installed").typing_summary() == "n/a"
