"""TensorRT API names: the committed lists (tests/trt_api/) and the API_USES check, offline.

The lists come from the real bindings wheels (scripts/trt_api_lists.py). The known-facts table is
the test that the extraction works; the planted misuses are the test that the check can fail.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from .. import apicheck
from ..api_uses import API_USES

VERSIONS = ("10.3.0", "10.13.3.9", "11.4.0.106")
RTX = "rtx1.7.1.116"  # tests/trt_api/tensorrt_rtx-1.7.1.116.txt, read from the installed module (test_rtx.py)
COMMON = ("IExecutionContext.execute_async_v3", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name",
          "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
          "ICudaEngine.create_engine_inspector", "Runtime.deserialize_cuda_engine",
          "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "Logger.WARNING", "ILogger.Severity.WARNING",
          "DataType.HALF", "DataType.INT8", "DataType.UINT8", "__version__", "IConvolutionLayer.name")
WEAK_TYPING = ("BuilderFlag.FP16", "BuilderFlag.INT8", "IInt8EntropyCalibrator2", "IBuilderConfig.int8_calibrator",
               "IBuilderConfig.set_calibration_profile", "Builder.platform_has_fast_fp16")
# 11.x: bytes NAME\0 occur nowhere in tensorrt.so (INT8 cannot be: DataType.INT8 and UINT8 remain)
PROVEN_ABSENT_11 = ("FP16", "IInt8EntropyCalibrator2", "int8_calibrator", "set_calibration_profile",
                    "platform_has_fast_fp16")


@pytest.fixture(scope="module")
def apis():
    return {v: apicheck.load_api(v) for v in VERSIONS}


def test_lists_cover_the_three_versions_and_tensorrt_rtx():
    assert apicheck.available_versions() == [*VERSIONS, RTX]
    rtx = apicheck.load_api("rtx1")
    assert rtx.version == RTX and "IBuilderConfig.set_compute_capability" in rtx
    assert apicheck.matches("rtx1", RTX) and apicheck.matches("rtx", RTX) and not apicheck.matches("11", RTX)
    for name in WEAK_TYPING[:4] + ("init_libnvinfer_plugins",):  # RTX has no calibrators (it has the function)
        assert (name in rtx) == (name == "init_libnvinfer_plugins"), name


@pytest.mark.parametrize("version", VERSIONS)
def test_list_header_records_the_wheel(apis, version):
    header = apis[version].header
    assert re.fullmatch(r"[0-9a-f]{64}", header["wheel-sha256"])
    major = "cu13" if version.startswith("11.") else "cu12"
    assert header["wheel"].startswith(f"tensorrt_{major}_bindings-{version}-")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", header["date"])
    assert "objdump" in header["method"]
    assert "stubs in wheel: none" in header["so"]


@pytest.mark.parametrize("version", VERSIONS)
def test_lists_are_sorted_and_substantial(version):
    text = (apicheck.LISTS_DIR / f"tensorrt-{version}.txt").read_text()
    qualified = text.split("[qualified]\n")[1].split("\n[bases]")[0].splitlines()
    assert qualified == sorted(set(qualified)) and len(qualified) > 1000


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", COMMON)
def test_known_common_names(apis, version, name):
    assert name in apis[version]


@pytest.mark.parametrize("name", WEAK_TYPING)
def test_weak_typing_is_10x_only(apis, name):
    assert name in apis["10.3.0"] and name in apis["10.13.3.9"]
    assert name not in apis["11.4.0.106"]


def test_weak_typing_provably_gone_in_11(apis):
    assert set(PROVEN_ABSENT_11) <= apis["11.4.0.106"].absent
    assert not apis["10.3.0"].absent and not apis["10.13.3.9"].absent


def test_tail_merged_short_names_are_qualified(apis):
    # "INT8" is stored as the tail of "UINT8": present because code points at it, per enum
    for v in ("10.3.0", "10.13.3.9"):
        assert {"BuilderFlag.INT8", "DataType.INT8", "DataType.UINT8"} <= apis[v].qualified
    assert "BuilderFlag.INT8" not in apis["11.4.0.106"] and "DataType.INT8" in apis["11.4.0.106"]


def test_load_api_prefix_and_inheritance(apis):
    assert apicheck.load_api("10.3").version == "10.3.0"
    assert apicheck.load_api("11").version == "11.4.0.106"
    with pytest.raises(LookupError):
        apicheck.load_api("10")  # two lists
    assert "ILayer.name" in apis["10.3.0"].qualified and "IConvolutionLayer.name" not in apis["10.3.0"].qualified
    assert "IConvolutionLayer.name" in apis["10.3.0"]  # through [bases]


@pytest.mark.parametrize("versions", [None, ["10.3"], ["10.13"], ["11.4"]])
def test_check_passes_on_the_real_code(versions):
    assert apicheck.check(API_USES, versions) == []


def test_real_code_uses_are_found():
    uses = apicheck.used_names([apicheck.PACKAGE])
    assert any(name == "__version__" and file.endswith("compat.py") for name, file, _ in uses)


def test_check_fails_on_a_10x_name_claimed_for_11():
    table = dict(API_USES, **{"BuilderFlag.FP16": ("10", "11")})
    problems = apicheck.check(table)
    assert len(problems) == 1
    assert "BuilderFlag.FP16" in problems[0] and "11.4.0.106" in problems[0] and "proven absent" in problems[0]
    assert apicheck.check(table, ["10.3", "10.13"]) == []  # fine where it exists


def test_check_fails_on_unknown_names_and_majors():
    problems = apicheck.check({"ICudaEngine.no_such_method": ("10", "11"), "Logger": ("12",)})
    assert sum("no_such_method" in p for p in problems) == 3
    assert any("TensorRT 12" in p and "no API list" in p for p in problems)


def test_check_fails_on_an_undeclared_use(tmp_path):
    src = tmp_path / "builder.py"
    src.write_text(textwrap.dedent("""
        def build(config):
            import tensorrt as trt
            config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    """))
    problems = apicheck.check(API_USES, paths=[apicheck.PACKAGE, src])
    assert len(problems) == 1
    assert f"{src}:4: tensorrt.BuilderFlag.SPARSE_WEIGHTS is used but not declared" in problems[0]
    assert apicheck.check({**API_USES, "BuilderFlag.SPARSE_WEIGHTS": ("10", "11")},
                          paths=[apicheck.PACKAGE, src]) == []


def test_parameter_annotations_are_typed_by_an_import_in_the_body(tmp_path):
    src = tmp_path / "configure.py"
    src.write_text(textwrap.dedent("""
        def configure(config: "trt.IBuilderConfig"):
            import tensorrt as trt
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
            config.no_such_setting = 1
    """))
    names = {n for n, _, _ in apicheck.used_names([src])}
    assert {"IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.no_such_setting"} <= names


def test_used_names_follows_imports_scopes_and_types(tmp_path):
    src = tmp_path / "engine.py"
    src.write_text(textwrap.dedent("""
        import importlib
        import tensorrt
        from tensorrt import BuilderFlag as BF

        def names(engine: "tensorrt.ICudaEngine", n):
            return [engine.get_tensor_name(i) for i in range(n)]

        def info():
            trt = tensorrt_info()          # not the module: no TensorRT names
            return trt.installed, BF.INT8

        def probe():
            trt = importlib.import_module("tensorrt")
            return getattr(trt, "__version__", None)

        class Runner:
            def __init__(self, plan: bytes, engine: "trt.ICudaEngine" = None):
                import tensorrt as trt
                logger = trt.Logger(trt.Logger.WARNING)
                with trt.Runtime(logger) as runtime:
                    self.engine = runtime.deserialize_cuda_engine(plan)
                self.context = self.engine.create_execution_context()
                self.n = self.engine.num_io_tensors

            def run(self, stream):
                self.context.execute_async_v3(stream)
                return trt.Builder          # 'trt' is not bound in this scope
    """))
    names = {name for name, _, _ in apicheck.used_names([src])}
    assert names == {"ICudaEngine.get_tensor_name", "BuilderFlag", "BuilderFlag.INT8", "__version__",
                     "Logger", "Logger.WARNING", "Runtime",
                     "Runtime.deserialize_cuda_engine", "ICudaEngine.create_execution_context",
                     "ICudaEngine.num_io_tensors", "IExecutionContext.execute_async_v3"}


@pytest.mark.parametrize("version", VERSIONS)
def test_scanner_return_types_exist(apis, version):
    for method, returned in apicheck.RETURNS.items():
        assert method in apis[version] and returned in apis[version], (method, returned)
