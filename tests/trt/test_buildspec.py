"""Build decisions without TensorRT: source/typing per version, profiles, cache key, sidecar, refusals, CLI errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtbuild.artifacts import run_stage
from trtbuild.cli import cli
from trtbuild.config import BuildConfig
from trtbuild.errors import DependencyMissingError, EngineMismatchError, InputError
from trtbuild.owned import NotOursError
from trtbuild.iospec import IOSpec
from trtbuild.layout import model_name
from trtbuild.onnx.graph import get_metadata, io_specs, load_onnx
from trtbuild.trt.buildspec import choose_source, make_profiles, parser_error_message, plan_build
from trtbuild.trt.compat import TensorRTInfo, hardware_compat_level, nms_plugin_notice
from trtbuild.trt.host import Target
from trtbuild.trt.sidecar import cache_key, check_engine_host, engine_mismatch, sidecar

TRT103, TRT1013, TRT114 = (TensorRTInfo(True, version=v) for v in ("10.3.0", "10.13.3.9", "11.4.0.106"))
H100 = Target("10.13.3.9", "NVIDIA H100 80GB HBM3", "9.0")
ORIN = Target("10.3.0", "Orin", "8.7", integrated=True)
STATIC = [IOSpec("images", (1, 3, 640, 640), "float32")]
DYN_B = [IOSpec("images", ("batch", 3, 640, 640), "float32")]
DYN_HW = [IOSpec("images", ("batch", 3, "height", "width"), "float32")]


def _made_from(sim: Path, artifact: Path, report: Path, content: bytes = b"x") -> None:
    """``artifact`` written through the stage contract with ``sim`` as its recorded input (its lineage)."""
    def make(outputs):
        outputs.path(artifact).write_bytes(content)
        return {"output": str(artifact)}

    run_stage("stand-in", "key", report, artifact, make, inputs={"model": sim})


@pytest.fixture
def artifacts(tmp_path):
    """Stand-ins for the stage artifacts of model `m` (only their names, presence and lineage matter here)."""
    sim = tmp_path / "m.sim.onnx"
    sim.write_bytes(b"x")
    for suffix, report in ((".fp16.onnx", ".fp16.json"), (".int8.onnx", ".int8.json"),
                           (".calib.cache", ".ranges.json")):
        _made_from(sim, tmp_path / f"m{suffix}", tmp_path / f"m{report}")
    return tmp_path


def test_model_name_strips_every_stage_suffix():
    assert model_name(Path("e/m.sim.onnx")) == "m"
    assert model_name(Path("e/m.fp16.nms.onnx")) == "m"
    assert model_name(Path("e/yolo.v8.int8fb.onnx")) == "yolo.v8"
    assert model_name(Path("e/m.onnx")) == "m"


@pytest.mark.parametrize("info, precision, expect", [
    (TRT114, "fp16", ("m.fp16.onnx", "strong", [], None)),
    (TRT1013, "fp16", ("m.fp16.onnx", "strong", [], None)),
    (TRT103, "fp16", ("m.sim.onnx", "weak", ["FP16"], None)),  # 10.3: weak typing, FP16 flag
    (TRT114, "int8", ("m.int8.onnx", "strong", [], "qdq")),
    (TRT103, "int8", ("m.int8.onnx", "weak", ["FP16", "INT8"], "qdq")),
    (TRT114, "fp32", ("m.sim.onnx", "strong", [], None)),
])
def test_source_and_typing_follow_the_tensorrt_version(artifacts, info, precision, expect):
    src, typing, flags, int8 = choose_source(artifacts / "m.sim.onnx", BuildConfig(precision=precision), info)
    assert (src.name, typing, flags, int8) == expect


def test_no_weak_typing_flag_can_reach_tensorrt_11(artifacts):
    for precision in ("fp32", "fp16", "int8"):
        _, typing, flags, _ = choose_source(artifacts / "m.sim.onnx", BuildConfig(precision=precision), TRT114)
        assert typing == "strong" and not {"FP16", "INT8"} & set(flags)
    with pytest.raises(InputError, match="strongly typed networks only"):
        choose_source(artifacts / "m.sim.onnx", BuildConfig(strongly_typed=False), TRT114)
    for mode in ("table", "calibrate"):
        with pytest.raises(InputError, match="needs TensorRT 10.x"):
            choose_source(artifacts / "m.sim.onnx", BuildConfig(precision="int8", int8_mode=mode), TRT114)


def test_int8_prefers_the_budget_fallback_model_and_table_mode_reads_the_table(artifacts):
    _made_from(artifacts / "m.sim.onnx", artifacts / "m.int8fb.onnx", artifacts / "m.int8fb.json")
    src, *_ = choose_source(artifacts / "m.sim.onnx", BuildConfig(precision="int8"), TRT114)
    assert src.name == "m.int8fb.onnx"
    plan = plan_build(artifacts / "m.sim.onnx", STATIC,
                      BuildConfig(precision="int8", int8_mode="table", out_dir=artifacts), TRT103, ORIN)
    assert (plan.source.name, plan.typing, plan.int8_source, plan.calib_table.name) == \
        ("m.sim.onnx", "weak", "table", "m.calib.cache")
    assert plan.workspace_bytes == 1024 << 20  # integrated GPU default


@pytest.mark.parametrize("precision, artifact", [("fp16", "m.fp16.onnx"), ("int8", "m.int8.onnx")])
def test_a_typed_onnx_made_from_another_model_is_never_picked(artifacts, precision, artifact):
    """Lineage: the model behind m.sim.onnx changed (another model of the same name), its typed ONNX did not."""
    (artifacts / "m.sim.onnx").write_bytes(b"a retrained model")
    with pytest.raises(InputError, match=rf"{artifact}: not made from .*m\.sim\.onnx as it is now .*says {artifact} "
                                         r"was made from another m\.sim\.onnx.*trtbuild engine"):
        choose_source(artifacts / "m.sim.onnx", BuildConfig(precision=precision), TRT114)


def test_a_typed_onnx_edited_after_its_stage_is_never_picked(artifacts):
    (artifacts / "m.fp16.onnx").write_bytes(b"edited by hand")
    with pytest.raises(InputError, match=r"m\.fp16\.onnx changed since m\.fp16\.json recorded it"):
        choose_source(artifacts / "m.sim.onnx", BuildConfig(precision="fp16"), TRT114)


def test_a_stale_budget_fallback_or_table_is_never_picked(artifacts):
    (artifacts / "other.sim.onnx").write_bytes(b"another model")
    _made_from(artifacts / "other.sim.onnx", artifacts / "m.int8fb.onnx", artifacts / "m.int8fb.json")
    with pytest.raises(InputError, match=r"m\.int8fb\.onnx: not made from"):
        choose_source(artifacts / "m.sim.onnx", BuildConfig(precision="int8"), TRT114)
    (artifacts / "m.sim.onnx").write_bytes(b"another model")
    with pytest.raises(InputError, match=r"m\.calib\.cache: not made from"):
        plan_build(artifacts / "m.sim.onnx", STATIC, BuildConfig(precision="int8", int8_mode="table",
                                                                 out_dir=artifacts), TRT103, ORIN)


def test_missing_typed_onnx_says_how_to_make_it(tmp_path):
    (tmp_path / "m.sim.onnx").write_bytes(b"x")
    with pytest.raises(InputError, match=r"m\.fp16\.onnx: missing.*make engine PRECISION=fp16"):
        choose_source(tmp_path / "m.sim.onnx", BuildConfig(precision="fp16"), TRT114)


def test_profiles_static_dynamic_and_refusals():
    assert make_profiles(STATIC, BuildConfig()) == {"images": ((1, 3, 640, 640),) * 3}
    assert make_profiles(DYN_B, BuildConfig(max_batch=16, opt_batch=4))["images"] == \
        ((1, 3, 640, 640), (4, 3, 640, 640), (16, 3, 640, 640))
    assert make_profiles(DYN_B, BuildConfig())["images"][2][0] == 8
    hw = make_profiles(DYN_HW, BuildConfig(min_hw=(320, 320), opt_hw=(640, 640), max_hw=(1280, 1280)))
    assert hw["images"] == ((1, 3, 320, 320), (8, 3, 640, 640), (8, 3, 1280, 1280))
    with pytest.raises(InputError, match=r"batch is fixed at 1.*\(dynamic=True\)"):
        make_profiles(STATIC, BuildConfig(max_batch=4))
    with pytest.raises(InputError, match="pass opt_hw=H,W"):  # a library call names the parameter, not the flag
        make_profiles(DYN_HW, BuildConfig())
    with pytest.raises(InputError, match=r"opt_hw=\(600, 640\).*multiples of 32"):  # BuildConfig refuses it now
        make_profiles(DYN_HW, BuildConfig(opt_hw=(600, 640)))
    with pytest.raises(InputError, match="min_batch ≤ opt_batch ≤ max_batch"):
        BuildConfig(min_batch=4, max_batch=2)


def test_dla_needs_an_integrated_gpu_and_adds_fallback(artifacts):
    with pytest.raises(InputError, match="has no DLA"):
        plan_build(artifacts / "m.sim.onnx", STATIC, BuildConfig(dla_core=0, out_dir=artifacts), TRT1013, H100)
    plan = plan_build(artifacts / "m.sim.onnx", STATIC, BuildConfig(dla_core=1, out_dir=artifacts), TRT103, ORIN)
    assert "GPU_FALLBACK" in plan.flags and plan.engine.name == "m.fp16.dla1.engine"


def test_hardware_compat_levels_by_version():
    assert hardware_compat_level("11.4.0", "same-cc") == "SAME_COMPUTE_CAPABILITY"
    assert hardware_compat_level("10.3.0", "ampere+") == "AMPERE_PLUS"
    with pytest.raises(InputError, match="absent from 10.3.0"):
        hardware_compat_level("10.3.0", "same-cc")


@pytest.mark.parametrize("version, expect", [
    ("10.3.0", None), ("10.11.0.33", None),  # JetPack 6 and the last release before the deprecation
    ("10.12.0.36", "10.x"), ("10.13.3.9", "10.x"), ("10.16.1.11", "10.x"),
    ("11.0.0.114", "11.x"), ("11.4.0.106", "11.x"), ("11.5.0", "11.x"),  # 11.5: no API list (not on PyPI)
])
def test_efficient_nms_notice_by_version(version, expect):
    notice = nms_plugin_notice(TensorRTInfo(True, version=version), "efficient")
    if expect is None:
        assert notice is None
        return
    assert notice.startswith("nms=efficient: the EfficientNMS_TRT plugin is deprecated since TensorRT 10.12")
    assert f"TensorRT {version} still loads it" in notice
    assert ("use nms=onnx instead" in notice and "INMSLayer" in notice) == (expect == "11.x")


def test_efficient_nms_notice_only_for_the_plugin_on_standard_tensorrt():
    assert nms_plugin_notice(TRT114, "onnx") is None and nms_plugin_notice(TRT114, None) is None
    assert nms_plugin_notice(TensorRTInfo(True, "1.7.1.116", flavor="rtx"), "efficient") is None  # refused there
    unknown = nms_plugin_notice(TensorRTInfo(False, error="not installed"), "efficient", param="variant")
    assert unknown.startswith("variant=efficient: the EfficientNMS_TRT plugin is deprecated since TensorRT 10.12 (no "
                              "TensorRT on this host") and "TensorRT 11.x use variant=onnx instead" in unknown
    plan = plan_build(Path("m.sim.onnx"), STATIC, BuildConfig(precision="fp32", nms="efficient"), TRT1013, H100)
    assert plan.notes == [nms_plugin_notice(TRT1013, "efficient")]


def test_cache_key_changes_with_every_input_that_changes_the_engine(artifacts):
    def key(options=BuildConfig(), target=H100, sha="a", info=TRT1013):
        plan = plan_build(artifacts / "m.sim.onnx", DYN_B, dataclasses.replace(options, out_dir=artifacts), info,
                          target)
        return cache_key(plan, target, sha)

    base = key()
    changed = [key(sha="b"), key(BuildConfig(precision="int8")), key(BuildConfig(max_batch=4)),
               key(target=Target("10.13.3.9", "NVIDIA A100", "8.0")),
               key(target=dataclasses.replace(H100, trt_version="10.14.1")),
               key(BuildConfig(opt_level=5)), key(BuildConfig(hardware_compat="ampere+")),
               key(BuildConfig(nms="onnx"))]
    assert len({base, *changed}) == len(changed) + 1
    assert key(BuildConfig(profiling_verbosity="layer_names_only")) == base  # inspector detail only


def test_sidecar_and_engine_cache(artifacts, exported_yolov8n):
    model = load_onnx(exported_yolov8n, check=False)
    inputs, outputs = io_specs(model)
    plan = plan_build(exported_yolov8n, inputs, BuildConfig(precision="fp32", out_dir=artifacts), TRT114,
                      Target("11.4.0", "NVIDIA H100", "9.0"))
    key = cache_key(plan, H100, "sha")
    meta = sidecar(plan, H100, source_sha="sha", metadata=get_metadata(model), engine_bytes=5,
                   io=[{"name": o.name, "mode": "output", "shape": list(o.shape), "dtype": o.dtype} for o in outputs],
                   seconds=1.234, table_sha=None)
    assert meta["imgsz"] == [320, 320] and meta["stride"] == 32 and len(meta["names"]) == 80
    assert meta["profiles"] == {"images": [[1, 3, 320, 320]] * 3}
    assert meta["gpu"]["compute_capability"] == "9.0" and meta["tensorrt_version"] == "10.13.3.9"
    assert (plan.engine.parent / meta["source_onnx"]).resolve() == Path(exported_yolov8n).resolve()

    # the build is cached the way builder.build caches it: run_stage keyed by cache_key, the sidecar as the report
    made = []

    def make(outputs):
        made.append(1)
        outputs.path(plan.engine).write_bytes(b"12345")
        outputs.path(plan.layers).write_bytes(b"[]")
        return meta

    def run(k=key, overwrite=False):
        return run_stage("build", k, plan.sidecar, plan.engine, make, overwrite=overwrite)

    assert not plan.sidecar.exists()  # nothing built yet
    first = run()
    assert not first.skipped and first.output == plan.engine and len(made) == 1
    recorded = json.loads(plan.sidecar.read_text())
    assert recorded["key"] == key and recorded["engine_bytes"] == 5
    assert set(recorded["outputs"]) == {plan.engine.name, plan.layers.name}  # sha256 of the engine and layers
    again = run()
    assert again.skipped and again.report["key"] == key and len(made) == 1
    assert not run("other").skipped and len(made) == 2  # another key: rebuilt
    assert not run().skipped and len(made) == 3
    # an output changed since trtbuild wrote it is not up to date, and not trtbuild's to replace without overwrite
    for edit in (lambda: plan.engine.write_bytes(b"54321"),  # same size, other bytes: the hash, not the size, decides
                 lambda: plan.engine.write_bytes(b"123"),  # a truncated engine
                 lambda: plan.layers.write_text("[{}]")):  # an edited layer JSON is an output too
        edit()
        edited, n = {p: p.read_bytes() for p in (plan.engine, plan.layers)}, len(made)
        with pytest.raises(NotOursError, match="changed since trtbuild wrote it; pass overwrite=True"):
            run()
        assert {p: p.read_bytes() for p in (plan.engine, plan.layers)} == edited and len(made) == n  # refused first
        assert not run(overwrite=True).skipped and len(made) == n + 1 and plan.engine.read_bytes() == b"12345"
    plan.engine.unlink()
    assert not run().skipped and len(made) == 7
    assert run().skipped and len(made) == 7


META = {"tensorrt_version": "10.13.3.9", "precision": "fp16", "source_onnx": "m.fp16.onnx",
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}, "hardware_compat": "none"}


def test_engine_mismatch_rules():
    assert engine_mismatch(META, "10.13.3.9", "NVIDIA H100 80GB HBM3", "9.0") is None
    assert "TensorRT 10.13.3.9 vs 11.4.0.106" in engine_mismatch(META, "11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
    assert "vs NVIDIA A100" in engine_mismatch(META, "10.13.3.9", "NVIDIA A100", "8.0")
    vc = {**META, "version_compatible": True}
    assert engine_mismatch(vc, "10.14.1", "NVIDIA H100 80GB HBM3", "9.0") is None
    assert engine_mismatch(vc, "10.3.0", "NVIDIA H100 80GB HBM3", "9.0") is not None
    assert engine_mismatch(vc, "11.4.0", "NVIDIA H100 80GB HBM3", "9.0") is not None
    assert engine_mismatch({**META, "hardware_compat": "ampere+"}, "10.13.3.9", "NVIDIA A10", "8.6") is None
    assert engine_mismatch({**META, "hardware_compat": "ampere+"}, "10.13.3.9", "Tesla T4", "7.5") is not None
    assert engine_mismatch({**META, "hardware_compat": "same-cc"}, "10.13.3.9", "NVIDIA H200", "9.0") is None


def test_mismatched_engine_is_refused_with_the_rebuild_command(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    with pytest.raises(EngineMismatchError) as exc:
        check_engine_host(engine, META, "11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
    msg = str(exc.value)
    assert str(engine) in msg and "built for TensorRT 10.13.3.9 vs 11.4.0.106" in msg
    assert f"trtbuild build {tmp_path / 'm.fp16.onnx'} --precision fp16 --out-dir {tmp_path} --force" in msg


def test_rebuild_command_repeats_the_recorded_options(tmp_path):
    from trtbuild.trt.sidecar import rebuild_command

    opts = BuildConfig(precision="int8", int8_mode="table", max_batch=4, nms="onnx", strongly_typed=False,
                        opt_hw=(640, 640)).to_dict()
    meta = {**META, "precision": "int8", "options": opts, "build_input": "m.sim.onnx",
            "source_onnx": "m.sim.nms.onnx"}
    cmd = rebuild_command(tmp_path / "m.int8-nms.engine", meta)
    assert cmd.startswith(f"trtbuild build {tmp_path / 'm.sim.onnx'} --precision int8 ")  # not the .nms.onnx
    for part in ("--int8-mode table", "--max-batch 4", "--nms onnx", "--typing weak", "--opt-hw 640,640",
                 f"--out-dir {tmp_path}", "--force"):
        assert part in cmd
    assert "--name" not in cmd
    assert "--name other" in rebuild_command(tmp_path / "other.int8-nms.engine", meta)


def test_open_runner_refuses_before_touching_tensorrt(tmp_path, monkeypatch):
    from trtbuild.cuda.probe import GPU, CudaProbe
    from trtbuild.runtime.open import open_runner
    from trtbuild.trt.host import Host

    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"not an engine")
    (tmp_path / "m.fp16.engine.json").write_text(json.dumps(META))
    host = Host(TRT114, CudaProbe("12.8", [GPU(0, "NVIDIA H100 80GB HBM3", "9.0", 80 << 30, False)]))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # importing it now would raise ImportError
    with pytest.raises(EngineMismatchError, match="rebuild it on this host"):
        open_runner(engine, host=host)


def test_parser_errors_name_their_nodes():
    msg = parser_error_message(Path("m.onnx"), [
        {"desc": "Unsupported operator", "node": 12, "node_name": "/model.22/NonZero", "op": "NonZero"},
        {"desc": "Shape inference failed", "node": -1, "node_name": "", "op": ""},
    ])
    assert msg.startswith("m.onnx: TensorRT's ONNX parser failed on 2 node(s)")
    assert "/model.22/NonZero (NonZero): Unsupported operator" in msg and "Shape inference failed" in msg
    assert "--opset 17" in msg


def test_build_cli_without_tensorrt_says_how_to_install_and_writes_nothing(exported_yolov8n, tmp_path):
    from trtbuild.cuda.probe import CudaProbe
    from trtbuild.trt.compat import TensorRTInfo
    from trtbuild.trt.host import Host

    bare = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"))  # neither flavor
    out = tmp_path / "engines"
    res = CliRunner().invoke(cli, ["build", str(exported_yolov8n), "--out-dir", str(out)], obj=bare)
    assert res.exit_code == DependencyMissingError.exit_code
    assert "error: TensorRT is not installed" in res.output and "pip install --extra-index-url" in res.output
    assert not out.exists()


def test_build_cli_bad_input(tmp_path):
    res = CliRunner().invoke(cli, ["build", str(tmp_path / "nope.onnx")])
    assert res.exit_code == 2 and "nope.onnx: no such ONNX file" in res.output
    res = CliRunner().invoke(cli, ["build", "--help"])
    assert res.exit_code == 0 and "--max-batch" in res.output and "--dla-core" in res.output


def test_infer_with_an_engine_on_a_host_without_tensorrt(tmp_path):
    from trtbuild.trt.compat import tensorrt_info

    from ..helpers import ultralytics_photos

    if tensorrt_info().installed:
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"\0" * 64)
    res = CliRunner().invoke(cli, ["infer", str(engine), str(ultralytics_photos()[0])])
    assert res.exit_code == 3 and "error: TensorRT is not installed" in res.output
