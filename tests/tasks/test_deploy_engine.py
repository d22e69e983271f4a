"""``trtbuild deploy`` of engines: a real dynamic-batch engine built by TensorRT-RTX on this CPU host, its sidecar,
the Triton repository (``tensorrt_plan``) and the ultralytics header written from them.

Triton's TensorRT backend and ultralytics load standard TensorRT engines only, which cannot be built here; so the
RTX engine is refused as it should be, and the repository / header paths are checked on a copy whose sidecar says
``flavor: tensorrt``: what these tests check is what trtbuild writes from an engine and its sidecar (configs
against Triton's schema, the plan's bytes, the header read back by ultralytics' own reader), not TensorRT. Serving
the ``tensorrt_plan`` variant needs a GPU host with Triton's TensorRT backend and is unverified here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.config import BuildConfig, DeployConfig, UltralyticsConfig
from trtbuild.cuda.probe import CudaProbe
from trtbuild.errors import InputError
from trtbuild.layout import sidecar_path
from trtbuild.tasks.deploy import deploy_triton, deploy_ultralytics
from trtbuild.trt.builder import build
from trtbuild.trt.compat import TensorRTInfo, tensorrt_info
from trtbuild.trt.host import Host

pytestmark = pytest.mark.rtx
pytest.importorskip("tritonclient", reason="tritonclient is not installed (the 'triton' extra)")


@pytest.fixture(scope="module")
def engine(tmp_path_factory, exported_yolov8n_dynamic) -> Path:
    """A real FP32 TensorRT-RTX engine of a dynamic-batch yolov8n export at 320, profile batch 1 / 4 / 8."""
    out = tmp_path_factory.mktemp("deploy-engine")
    onnx_path = out / "yolov8n.onnx"
    shutil.copyfile(exported_yolov8n_dynamic, onnx_path)
    host = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"), rtx=tensorrt_info("rtx"))
    res = build(onnx_path, BuildConfig(precision="fp32", flavor="rtx", min_batch=1, opt_batch=4, max_batch=8,
                                       target_cc=("8.9",), out_dir=out), host=host, progress=False)
    return res.output


@pytest.fixture
def standard(engine, tmp_path) -> Path:
    """A copy of ``engine`` whose sidecar says standard TensorRT (see the module docstring)."""
    copy = tmp_path / engine.name
    shutil.copy(engine, copy)
    meta = json.loads(sidecar_path(engine).read_text())
    meta.update(flavor="tensorrt", tensorrt_version="10.13.0", gpu="NVIDIA L4")
    sidecar_path(copy).write_text(json.dumps(meta))
    return copy


def test_rtx_engines_are_refused_with_the_way_out(engine, tmp_path):
    with pytest.raises(InputError, match="TensorRT-RTX engine; Triton's TensorRT backend loads .* or deploy the ONNX"):
        deploy_triton(engine, DeployConfig(out=tmp_path / "repo"))
    with pytest.raises(InputError, match="TensorRT-RTX engine; ultralytics .*standard TensorRT engines only"):
        deploy_ultralytics(engine, UltralyticsConfig(out=tmp_path / "u.engine"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_engine_repository_takes_batching_from_the_profile(standard, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    out = tmp_path / "repo"
    res = CliRunner().invoke(cli, ["deploy", "triton", str(standard), "--out", str(out), "--name", "yolo",
                                   "--instances", "2", "--gpus", "0,1", "--cuda-graphs", "--warmup", "1"])
    assert res.exit_code == 0, res.output
    config = text_format.Parse((out / "yolo" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]  # the profile's opt and max
    group = config.instance_group[0]
    assert (group.kind, group.count, list(group.gpus)) == (model_config_pb2.ModelInstanceGroup.KIND_GPU, 2, [0, 1])
    assert config.optimization.cuda.graphs and list(config.model_warmup[0].inputs["images"].dims) == [3, 320, 320]
    assert list(config.input[0].dims) == [3, 320, 320] and list(config.output[0].dims) == [84, 2100]
    assert (out / "yolo" / "1" / "model.plan").read_bytes() == standard.read_bytes()
    names = json.loads(sidecar_path(standard).read_text())["names"]
    assert (out / "yolo" / "labels.txt").read_text().splitlines() == [names[str(i)] for i in range(len(names))]
    post = text_format.Parse((out / "yolo_postprocess" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert post.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


@pytest.mark.parametrize("args, needle", [
    (["--max-batch", "16"], "--max-batch 16: the engine's profile ends at batch 8"),
    (["--preferred-batch", "4,12"], "--preferred-batch 4,12: 12 exceeds"),
    (["--backend", "python"], "is an engine, served by Triton's TensorRT backend only"),
])
def test_engine_deploy_refusals(standard, tmp_path, args, needle):
    res = CliRunner().invoke(cli, ["deploy", "triton", str(standard), "--out", str(tmp_path / "repo"), *args])
    assert res.exit_code == 2 and res.output.strip().splitlines() == [res.output.strip()], res.output
    assert needle in res.output and not (tmp_path / "repo").exists()


def test_truncated_engine_is_refused(standard, tmp_path):
    standard.write_bytes(standard.read_bytes()[:1000])
    res = CliRunner().invoke(cli, ["deploy", "triton", str(standard), "--out", str(tmp_path / "repo")])
    assert res.exit_code == 2 and "truncated or replaced" in res.output and not (tmp_path / "repo").exists()


def test_a_same_size_corrupted_engine_is_refused_by_its_sha256(standard, tmp_path):
    data = bytearray(standard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the sha256 the sidecar records can tell
    standard.write_bytes(bytes(data))
    for args in (["triton", standard, "--out", tmp_path / "repo"], ["ultralytics", standard]):
        res = CliRunner().invoke(cli, ["deploy", *map(str, args)])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1, res.output
        assert "its sha256 is not the one its sidecar" in lines[0] and "the file was changed or replaced" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [standard.name, standard.name + ".json"]


def test_ultralytics_header_reads_back_with_ultralytics_own_reader(standard, tmp_path):
    from ultralytics.nn.backends.base import BaseBackend

    res = CliRunner().invoke(cli, ["deploy", "ultralytics", str(standard)])
    assert res.exit_code == 0, res.output
    out = standard.with_name(standard.stem + ".ultralytics.engine")
    offset, meta = BaseBackend.engine_header(out)
    assert out.read_bytes()[offset:] == standard.read_bytes()  # the engine, unchanged, after the header
    sidecar = json.loads(sidecar_path(standard).read_text())
    assert meta["names"] == sidecar["names"] and len(meta["names"]) == 80
    assert (meta["stride"], meta["imgsz"], meta["task"], meta["end2end"]) == (32, [320, 320], "detect", False)
    assert isinstance(meta["args"], dict) and meta["args"]["dynamic"] is True
    assert BaseBackend.engine_header(standard) == (0, {})  # trtbuild's own engine stays plain
    again = CliRunner().invoke(cli, ["deploy", "ultralytics", str(standard)])
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    twice = CliRunner().invoke(cli, ["deploy", "ultralytics", str(out), "--out", str(tmp_path / "x.engine")])
    assert twice.exit_code == 2 and "already starts with a metadata header" in twice.output
