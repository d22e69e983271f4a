"""trtbuild's TensorRT builder, engine-file and pipeline code RUN on the CPU against the API-checked TensorRT double.

tests/doubles/trt/ stands in for ``tensorrt`` 10.3.0, 10.13.3.9 and 11.4.0.106; every name the code touches is
checked against that version's list from the real bindings (tests/trt_api/), so these runs prove the control flow
of trt/builder.py / calibrator.py / engine_file.py and tasks/pipeline.py per version: which flags and typing each
version gets, the engine cache, the INT8 table calibrator, the error paths, the CLI, and the sidecar refusal. The
host (TensorRT version, GPU) is a ``trtbuild.trt.host.Host`` value handed to each call (the CLI gets it as click's
``obj``), never a patched probe. The engines are the
double's (a JSON description + the ONNX), not TensorRT's: nothing here says anything about kernels or accuracy.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.config import BuildConfig
from trtbuild.cuda.probe import GPU, CudaProbe
from trtbuild.errors import (
    BuildError,
    DependencyMissingError,
    DeprecatedPluginWarning,
    EngineMismatchError,
    InputError,
)
from trtbuild.layout import layers_path, sidecar_path
from trtbuild.owned import NotOursError
from trtbuild.stages.precision.table import parse_table
from trtbuild.trt import engine_file
from trtbuild.trt.builder import build
from trtbuild.trt.compat import tensorrt_info
from trtbuild.trt.host import Host
from trtbuild.trt.inspect import inspect_path

from ..api_uses import API_USES
from ..apicheck import load_api
from ..doubles.trt import _TEMPLATES, describe_engine, make_tensorrt
from ..helpers import photo_folder

VERSIONS = ("10.3.0", "10.13.3.9", "11.4.0.106")
H100 = GPU(0, "NVIDIA H100 80GB HBM3", "9.0", 80 << 30, False)
ORIN = GPU(0, "Orin", "8.7", 32 << 30, True)


@pytest.fixture(scope="module")
def model(exported_yolov8n, tmp_path_factory) -> Path:
    """yolov8n (320) with the .fp16.onnx, .int8.onnx and .calib.cache the real precision stages make on real photos."""
    from trtbuild.config import CalibrateConfig, FP16Config
    from trtbuild.stages.precision.calibrate import calibrate
    from trtbuild.stages.precision.fp16 import fp16
    from trtbuild.stages.precision.int8 import int8, qdq_tensors

    root = tmp_path_factory.mktemp("double-model")
    src = root / "yolov8n.onnx"
    shutil.copy(exported_yolov8n, src)
    photos = sorted(photo_folder(root / "calib").iterdir())
    fp16(src, FP16Config(images=tuple(photos), imgsz=(320, 320)))
    ranges = calibrate(src, CalibrateConfig(images=root / "calib", num=8, batch=4, method="minmax",
                                            tensors=tuple(qdq_tensors(src)))).output
    int8(src, ranges)
    return src


@pytest.fixture
def host(monkeypatch):
    """``host(version, gpu)`` installs the TensorRT double of that version as ``tensorrt`` (the code imports it) and
    returns ``(module, Host)``: the Host (TensorRT as ``tensorrt_info`` sees the double, that GPU) goes to every
    build / engine-file call and, as click's ``obj``, to the CLI."""
    def install(version: str, gpu: GPU = H100):
        trt = make_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt, Host(tensorrt_info(), CudaProbe("12.8", [gpu]))
    return install


def node_names(path: Path) -> list[str]:
    return [n.name for n in onnx.load(str(path)).graph.node]


def declared(name: str) -> bool:
    """A touched name is declared in tests/api_uses.py's API_USES (module-level classes through their members)."""
    return name in API_USES or any(k.startswith(name + ".") for k in API_USES)


# ------------------------------------------------------------------------------------------------ the double
@pytest.mark.parametrize("version", VERSIONS)
def test_double_offers_only_names_of_the_real_bindings(version):
    trt, api = make_tensorrt(version), load_api(version)
    for tq, template in _TEMPLATES.items():  # every public name the double implements exists in some real list
        for name in (n for n in vars(template) if not n.startswith("_")):
            assert any(f"{tq}.{name}" in load_api(v) for v in VERSIONS), f"{tq}.{name} is invented"
    weak = ("BuilderFlag.FP16" in api, "IInt8EntropyCalibrator2" in api)
    assert weak == ((True, True) if version.startswith("10.") else (False, False))
    if version.startswith("11."):
        with pytest.raises(AttributeError, match="BuilderFlag.FP16 is not in"):
            trt.BuilderFlag.FP16
        with pytest.raises(AttributeError):
            trt.IInt8EntropyCalibrator2
    else:
        assert int(trt.BuilderFlag.FP16) >= 0
    config = trt.Builder(_logger(trt)).create_builder_config()
    with pytest.raises(AttributeError, match="IBuilderConfig.max_workspace_size"):
        config.max_workspace_size = 1 << 30  # TensorRT 8's spelling: gone from 10.x and 11.x
    with pytest.raises(AttributeError):
        trt.ICudaEngine.device_memory_size if version.startswith("11.") else trt.ICudaEngine.no_such_member

    class Forgot(trt.ILogger):
        def __init__(self):  # pybind11: a subclass must call the base __init__
            pass

    with pytest.raises(TypeError, match="__init__"):
        Forgot()
    assert all(n in api for n in trt._touched)


def _logger(trt):
    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

    return Logger()


# ------------------------------------------------------------------------------------------------ builder
EXPECTED = {  # version → precision → (source suffix, typing, builder flags, network flags)
    "10.3.0": {"fp32": (".onnx", "weak", [], []), "fp16": (".onnx", "weak", ["FP16"], []),
               "int8": (".int8.onnx", "weak", ["FP16", "INT8"], [])},
    "10.13.3.9": {"fp32": (".onnx", "strong", [], ["STRONGLY_TYPED"]),
                  "fp16": (".fp16.onnx", "strong", [], ["STRONGLY_TYPED"]),
                  "int8": (".int8.onnx", "strong", [], ["STRONGLY_TYPED"])},
}
EXPECTED["11.4.0.106"] = EXPECTED["10.13.3.9"]


@pytest.mark.parametrize("version", VERSIONS)
def test_build_writes_engine_sidecar_layers_and_cache_with_each_versions_flags(model, host, tmp_path, version):
    trt, h = host(version)
    for precision, (suffix, typing, flags, net_flags) in EXPECTED[version].items():
        res = build(model, BuildConfig(precision=precision, out_dir=tmp_path), host=h, progress=False)
        engine = res.output
        assert engine == tmp_path / f"yolov8n.{precision}.engine" and not res.skipped
        for path in (engine, sidecar_path(engine), layers_path(engine), tmp_path / "timing.cache"):
            assert path.is_file() and path.stat().st_size > 0, path
        desc = describe_engine(engine.read_bytes())
        source = model.with_name("yolov8n" + suffix)
        assert Path(desc["onnx"]) == source and res.report["typing"] == desc["typing"] == typing
        assert (desc["builder_flags"], desc["network_flags"]) == (flags, net_flags)
        assert desc["profiling_verbosity"] == "DETAILED" and desc["builder_optimization_level"] == 3
        assert desc["memory_pools"] == {"MemoryPoolType.WORKSPACE": 4096 << 20}
        sidecar = json.loads(sidecar_path(engine).read_text())
        assert sidecar == res.report  # the result's report is the sidecar
        assert sidecar["tensorrt_version"] == version and sidecar["gpu"]["name"] == H100.name
        assert sidecar["build_flags"] == flags and sidecar["engine_bytes"] == engine.stat().st_size
        assert set(sidecar["outputs"]) == {engine.name, layers_path(engine).name}  # their sha256, for the cache
        assert [(t["name"], t["mode"], t["shape"], t["dtype"]) for t in sidecar["io"]] == [
            ("images", "input", [1, 3, 320, 320], "float32"), ("output0", "output", [1, 84, 2100], "float32")]
        report = inspect_path(engine)  # the layers JSON the builder wrote, against the sidecar's source ONNX
        assert report["headline"] == f"{len(node_names(source))} ONNX nodes → {len(node_names(source))} engine layers"
        assert report["layout"] == ("11.x" if version.startswith("11.") else "10.x") and not report["unmatched"]
        want = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}[precision]
        assert want in report["precision_histogram"], (precision, report["precision_histogram"])
    assert all(declared(n) for n in trt._touched), sorted(n for n in trt._touched if not declared(n))
    assert all(n in load_api(version) for n in trt._touched)
    touched_11 = version.startswith("11.")
    assert ("BuilderFlag.FP16" in trt._touched) == (version == "10.3.0")
    assert ("IBuilderConfig.int8_calibrator" in trt._touched) is False
    if touched_11:
        assert not {n for n in trt._touched if n not in load_api("11.4.0.106")}
        assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" in trt._touched


def test_second_build_is_skipped_force_and_new_content_rebuild(model, host, tmp_path):
    trt, h = host("10.13.3.9")
    src = tmp_path / "m.onnx"
    shutil.copy(model, src)
    config = BuildConfig(precision="fp32", out_dir=tmp_path / "e")
    first = build(src, config, host=h, progress=False)
    assert not first.skipped and len(trt._double.builds) == 1
    assert not trt._double.builds[-1]["timing_cache_hit"]
    again = build(src, config, host=h, progress=False)
    assert again.skipped and again.report["key"] == first.report["key"] and len(trt._double.builds) == 1
    assert again.output == first.output
    forced = build(src, BuildConfig(precision="fp32", out_dir=tmp_path / "e", force=True), host=h, progress=False)
    assert not forced.skipped and len(trt._double.builds) == 2
    assert trt._double.builds[-1]["timing_cache_hit"]  # the timing cache the first build saved was read back
    engine = first.output
    data = bytearray(engine.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: the sidecar's sha256, not the size, says it is not the engine built
    engine.write_bytes(bytes(data))
    with pytest.raises(NotOursError, match="m.fp32.engine: changed since trtbuild wrote it"):  # not its own now
        build(src, config, host=h, progress=False)
    assert engine.read_bytes() == bytes(data) and len(trt._double.builds) == 2
    mine = replace(config, overwrite=True)
    edited = build(src, mine, host=h, progress=False)
    assert not edited.skipped and len(trt._double.builds) == 3 and engine.read_bytes() != bytes(data)
    layers_path(engine).write_text("[]")  # the layer JSON is hashed too
    assert not build(src, mine, host=h, progress=False).skipped and len(trt._double.builds) == 4
    assert build(src, config, host=h, progress=False).skipped and len(trt._double.builds) == 4
    changed = onnx.load(str(src))
    changed.doc_string = "retrained"
    onnx.save(changed, str(src))
    rebuilt = build(src, config, host=h, progress=False)
    assert not rebuilt.skipped and rebuilt.report["key"] != first.report["key"] and len(trt._double.builds) == 5


@pytest.mark.parametrize("version, header", [("10.3.0", "TRT-100300-EntropyCalibration2"),
                                             ("10.13.3.9", "TRT-101303-EntropyCalibration2")])
def test_int8_table_mode_feeds_the_retargeted_table_to_the_calibrator(model, host, tmp_path, version, header):
    trt, h = host(version)
    res = build(model, BuildConfig(precision="int8", int8_mode="table", out_dir=tmp_path), host=h, progress=False)
    desc = describe_engine(res.output.read_bytes())
    _, scales = parse_table(model.with_name("yolov8n.calib.cache"))
    assert desc["calibration"] == {"source": "cache", "header": header, "tensors": len(scales), "unknown_tensors": []}
    assert desc["typing"] == "weak" and desc["builder_flags"] == ["FP16", "INT8"] and Path(desc["onnx"]) == model
    meta = res.report
    assert meta["int8_source"] == "table" and meta["calibration"]["table"].endswith("yolov8n.calib.cache")
    assert {"IBuilderConfig.int8_calibrator", "IInt8EntropyCalibrator2.__init__"} <= trt._touched
    assert not any(p.name.endswith(".trt-calib.cache") for p in model.parent.iterdir())  # table mode writes none


def test_int8_table_mode_is_refused_on_11(model, host, tmp_path):
    trt, h = host("11.4.0.106")
    # a library call: the message names the parameter (the CLI spells it --int8-mode)
    with pytest.raises(InputError, match="int8_mode=table needs TensorRT 10.x .* use int8_mode=qdq") as err:
        build(model, BuildConfig(precision="int8", int8_mode="table", out_dir=tmp_path), host=h, progress=False)
    assert err.value.param == "int8_mode"
    assert not trt._double.builds and not any(tmp_path.iterdir())


def test_int8_calibrate_mode_needs_pycuda_before_the_build(model, host, tmp_path, monkeypatch):
    trt, h = host("10.3.0")
    monkeypatch.setitem(sys.modules, "pycuda", None)  # not importable, whatever this host has
    with pytest.raises(DependencyMissingError, match="pycuda"):
        build(model, BuildConfig(precision="int8", int8_mode="calibrate", out_dir=tmp_path), host=h, progress=False)
    assert not trt._double.builds


def test_parser_failure_names_the_nodes(model, host, tmp_path):
    trt, h = host("11.4.0.106")
    trt._double.unsupported_ops = {"Concat"}
    concats = [n.name for n in onnx.load(str(model)).graph.node if n.op_type == "Concat"]
    with pytest.raises(BuildError) as err:
        build(model, BuildConfig(precision="fp32", out_dir=tmp_path), host=h, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{model}: TensorRT's ONNX parser failed on {len(concats)} node(s)")
    assert all(f"{name} (Concat): No importer registered for op: Concat" in msg for name in concats[:10])
    assert (f"(+{len(concats) - 10} more)" in msg) == (len(concats) > 10) and "\n" not in msg
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.json"))


def test_efficient_nms_parses_only_because_the_builder_loads_the_plugins(model, host, tmp_path):
    trt, h = host("10.3.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedPluginWarning)  # 10.3: EfficientNMS_TRT is not deprecated yet
        res = build(model, BuildConfig(precision="fp32", nms="efficient", out_dir=tmp_path), host=h, progress=False)
    assert res.report["end2end"] and trt._double.builds[-1]["plugins_loaded"] and res.report["notes"] == []
    assert any(n.op_type == "EfficientNMS_TRT" for n in onnx.load(trt._double.builds[-1]["onnx"]).graph.node)


DEPRECATED = "the EfficientNMS_TRT plugin is deprecated since TensorRT 10.12"


def test_efficient_nms_warns_that_the_plugin_is_deprecated_from_10_12(model, host, tmp_path):
    """Python API on 10.13: the plugin still builds; one DeprecatedPluginWarning naming the parameter, kept in the
    sidecar's notes; no pointer to nms=onnx on 10.x."""
    trt, h = host("10.13.3.9")
    with pytest.warns(DeprecatedPluginWarning) as caught:
        res = build(model, BuildConfig(precision="fp32", nms="efficient", out_dir=tmp_path), host=h, progress=False)
    (warning,) = [str(w.message) for w in caught]
    assert warning == (f"nms=efficient: {DEPRECATED}; TensorRT 10.13.3.9 still loads it, but a later release may "
                       "remove it")
    assert res.report["notes"] == [warning] and res.report["end2end"] and trt._double.builds[-1]["plugins_loaded"]


def test_efficient_nms_on_11_warns_once_on_the_cli_and_points_to_nms_onnx(model, host, tmp_path):
    """CLI on 11.4: the library's ``nms=efficient`` / ``nms=onnx`` reach the user as ``--nms efficient`` /
    ``--nms onnx``, on stderr as a warning, not repeated as a note; the sidecar keeps the library's words."""
    trt, h = host("11.4.0.106")
    res = CliRunner().invoke(cli, ["build", str(model), "--precision", "fp32", "--nms", "efficient", "--no-progress",
                                   "--out-dir", str(tmp_path)], obj=h)
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines() == [
        f"warning: --nms efficient: {DEPRECATED}, with no replacement plugin; TensorRT 11.4.0.106 still loads it, "
        "but use --nms onnx instead (ONNX NonMaxSuppression, built as TensorRT's INMSLayer; same detections output)"]
    assert "note:" not in res.stdout and trt._double.builds[-1]["plugins_loaded"]
    (note,) = json.loads(sidecar_path(tmp_path / "yolov8n.fp32-nms.engine").read_text())["notes"]
    assert note.startswith(f"nms=efficient: {DEPRECATED}") and "use nms=onnx instead" in note


def test_build_returning_none_is_a_build_error_with_the_logged_reason(model, host, tmp_path):
    trt, h = host("10.13.3.9")
    trt._double.fail_build = "9: Skipping tactic 0x1 due to insufficient memory on requested size of 4096 MiB"
    with pytest.raises(BuildError, match=r"TensorRT 10.13.3.9 could not build the fp16 engine \(9: Skipping tactic .*"
                                         r"4096 MiB\); try a larger workspace \(workspace_mb=8192\)"):
        build(model, BuildConfig(precision="fp16", out_dir=tmp_path), host=h, progress=False)
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.json"))


def test_warnings_are_printed_once(model, host, tmp_path, capsys):
    _, h = host("10.13.3.9")
    (tmp_path / "timing.cache").write_bytes(b"not a timing cache")  # e.g. left by another TensorRT
    res = build(model, BuildConfig(precision="fp32", out_dir=tmp_path), host=h, progress=False)
    err = capsys.readouterr().err
    assert err.count("TensorRT warning: the timing cache was not created by TensorRT 10.13.3.9") == 1
    assert (tmp_path / "timing.cache").read_bytes() == b"not a timing cache"  # not trtbuild's: read, not replaced
    assert any("timing.cache was not written by trtbuild" in n for n in res.report["notes"])
    build(model, BuildConfig(precision="fp32", out_dir=tmp_path, force=True, overwrite=True), host=h,
          progress=False)  # replaced when asked
    capsys.readouterr()
    build(model, BuildConfig(precision="fp32", out_dir=tmp_path, force=True), host=h,
          progress=False)  # the cache is good now
    assert "TensorRT warning" not in capsys.readouterr().err


def test_hardware_compat_same_cc_needs_10_13(model, host, tmp_path):
    _, h = host("10.3.0")
    with pytest.raises(InputError, match="same-cc needs TensorRT ≥ 10.13"):
        build(model, BuildConfig(precision="fp32", hardware_compat="same-cc", out_dir=tmp_path), host=h,
              progress=False)
    trt, h = host("10.13.3.9")
    res = build(model, BuildConfig(precision="fp32", hardware_compat="same-cc", out_dir=tmp_path), host=h,
                progress=False)
    assert "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY" in trt._touched
    assert describe_engine(res.output.read_bytes())["hardware_compatibility_level"] == \
        "SAME_COMPUTE_CAPABILITY" and res.report["hardware_compat"] == "same-cc"


def test_dla_core_on_jetson(model, host, tmp_path):
    trt, h = host("10.3.0", ORIN)
    trt._double.dla_cores = 2
    res = build(model, BuildConfig(precision="fp16", dla_core=1, out_dir=tmp_path), host=h, progress=False)
    desc = describe_engine(res.output.read_bytes())
    assert (desc["device"], desc["dla_core"], desc["builder_flags"]) == ("DLA", 1, ["FP16", "GPU_FALLBACK"])
    assert desc["memory_pools"] == {"MemoryPoolType.WORKSPACE": 1024 << 20}  # integrated GPU default
    trt._double.dla_cores = 1
    with pytest.raises(BuildError, match="dla_core=1: this device has 1 DLA core"):  # library call: the parameter
        build(model, BuildConfig(precision="fp16", dla_core=1, out_dir=tmp_path, force=True), host=h,
              progress=False)


# ------------------------------------------------------------------------------------------------ CLI, pipeline
def test_build_cli_then_inspect(model, host, tmp_path):
    trt, h = host("10.3.0")
    out = tmp_path / "engines"
    result = CliRunner().invoke(cli, ["build", str(model), "--out-dir", str(out)], obj=h)  # progress bars on
    assert result.exit_code == 0, result.output
    engine = out / "yolov8n.fp16.engine"
    line = next(x for x in result.stdout.splitlines() if x.startswith("engine    "))
    assert line.startswith(f"engine    {model} → {engine} (")  # 10.3 fp16: weak typing from the plain ONNX
    assert "fp16, weak typing, static shapes, TensorRT 10.3.0 on NVIDIA H100" in line
    calls = [c[0] for c in trt._double.progress]
    assert calls.count("phase_start") == calls.count("phase_finish") == 3 and "step_complete" in calls
    shown = CliRunner().invoke(cli, ["inspect", str(engine)], obj=h)
    assert shown.exit_code == 0, shown.output
    n = len(node_names(model))
    assert shown.output.splitlines()[0] == f"{n} ONNX nodes → {n} engine layers"
    again = CliRunner().invoke(cli, ["build", str(model), "--out-dir", str(out)], obj=h)
    assert again.exit_code == 0 and f"engine    {engine} is up to date (fp16, TensorRT 10.3.0)" in again.output


def test_build_cli_errors_name_the_flags(model, host, tmp_path):
    """The library's ``int8_mode=table`` / ``dla_core=1`` messages reach the user as ``--int8-mode table`` /
    ``--dla-core 1``."""
    _, h = host("11.4.0.106")
    res = CliRunner().invoke(cli, ["build", str(model), "--precision", "int8", "--int8-mode", "table",
                                   "--out-dir", str(tmp_path)], obj=h)
    assert res.exit_code == InputError.exit_code
    assert "error: --int8-mode table needs TensorRT 10.x" in res.output and "use --int8-mode qdq" in res.output
    trt, h = host("10.3.0", ORIN)
    trt._double.dla_cores = 1
    res = CliRunner().invoke(cli, ["build", str(model), "--dla-core", "1", "--out-dir", str(tmp_path)], obj=h)
    assert res.exit_code == BuildError.exit_code and "error: --dla-core 1: this device has 1 DLA core" in res.output


def test_engine_pipeline_builds_each_precision_then_is_up_to_date(host, tmp_path):
    _, h = host("10.13.3.9")
    calib = photo_folder(tmp_path / "calib")
    out = tmp_path / "engines"
    args = ["engine", "--model", "yolov8n.yaml", "--imgsz", "320", "--precision", "all", "--calib", str(calib),
            "--calib-method", "minmax", "--out-dir", str(out)]
    first = CliRunner().invoke(cli, args, obj=h)
    assert first.exit_code == 0, first.output
    for p in ("fp32", "fp16", "int8"):
        assert (out / f"yolov8n.{p}.engine").is_file()
        assert f"yolov8n.{p}.engine (" in first.output and "build skipped" not in first.output
    second = CliRunner().invoke(cli, args, obj=h)
    assert second.exit_code == 0, second.output
    for p in ("fp32", "fp16", "int8"):
        assert f"engine    {out / f'yolov8n.{p}.engine'} is up to date ({p}, TensorRT 10.13.3.9)" in second.output


# ------------------------------------------------------------------------------------------------ engine files
def test_engine_from_another_version_is_refused_before_deserializing(model, host, tmp_path):
    _, h = host("10.13.3.9")
    res = build(model, BuildConfig(precision="fp16", out_dir=tmp_path), host=h, progress=False)
    engine = res.output
    assert json.loads(engine_file.inspector_json(engine, h)) == json.loads(layers_path(engine).read_text())
    runtime, loaded = engine_file.deserialize(engine, h)
    assert loaded.num_io_tensors == 2
    trt, h = host("11.4.0.106")
    with pytest.raises(EngineMismatchError) as err:
        engine_file.check_engine(engine, h)
    assert "built for TensorRT 10.13.3.9 vs 11.4.0.106 here" in str(err.value)
    assert (f"trtbuild build {tmp_path / res.report['build_input']} --precision fp16 --out-dir {tmp_path} --force"
            in str(err.value))
    assert "Runtime.deserialize_cuda_engine" not in trt._touched  # refused from the sidecar alone
    sidecar_path(engine).unlink()  # without a sidecar, TensorRT's own refusal becomes the one-line error
    with pytest.raises(InputError, match=r"TensorRT 11.4.0.106 cannot deserialize it \(.*Version tag does not "
                                         r"match.*\); rebuild it on this host"):
        engine_file.deserialize(engine, h)
    garbage = tmp_path / "garbage.engine"
    garbage.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="cannot deserialize it .*magicTag"):
        engine_file.inspector_json(garbage, h)
