"""trtbuild's TensorRT runner (runtime/engine.py on cuda/) RUN on the CPU through the TensorRT and pycuda
doubles, both checked name by name against the real APIs (tests/trt_api/, tests/pycuda_api/).

The pycuda double's "device" memory is host memory, and the TensorRT double's ``execute_async_v3`` runs the engine's
ONNX in ONNX Runtime on the bytes at the bound addresses, so a runner's outputs equal ONNX Runtime's on the source
ONNX exactly when the runner's plumbing is right: buffer planning and reuse, device pointers bound per tensor,
H2D/D2H copies, input shapes set on the execution context, output shapes read back. Nothing here measures a GPU.
The host (TensorRT version, GPU) is a ``trtbuild.trt.host.Host`` value handed to ``build`` and ``open_runner``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from trtbuild.config import BuildConfig
from trtbuild.cuda.probe import GPU, CudaProbe
from trtbuild.errors import DependencyMissingError, InputError
from trtbuild.runtime.onnx import OnnxRunner
from trtbuild.runtime.open import open_runner
from trtbuild.trt.builder import build
from trtbuild.trt.compat import tensorrt_info
from trtbuild.trt.host import Host

from ..doubles import pycuda as pycuda_double
from ..doubles.pycuda_api import API, LIST
from ..doubles.trt import make_tensorrt
from ..helpers import photos

H100 = GPU(0, "NVIDIA H100 80GB HBM3", "9.0", 80 << 30, False)
SDIST = Path(__file__).resolve().parents[2] / ".whl" / "pycuda-2026.1.tar.gz"


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """Four real photos letterboxed to 320×320 (NCHW float32 RGB 0..1)."""
    from trtbuild.vision.letterbox import letterbox

    images = list(photos().values())[:4]
    return np.stack([letterbox(img, 320)[0] for img in images])


@pytest.fixture(scope="module")
def dynamic_onnx(exported_yolov8n_dynamic) -> Path:
    return exported_yolov8n_dynamic


@pytest.fixture
def gpu_host(monkeypatch):
    """This process as a CUDA host: TensorRT ``version`` (double, in sys.modules: the code imports it), pycuda
    (double), one H100; returns (trt, driver, Host), the Host for ``build`` / ``open_runner``."""
    def install(version: str = "10.13.3.9", integrated: bool = False):
        trt = make_tensorrt(version)
        trt._double.host_pointers = True  # the pycuda double's device pointers are host memory
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        gpu = GPU(0, H100.name, H100.compute_capability, H100.total_memory, integrated)
        driver = pycuda_double.install(monkeypatch)
        monkeypatch.setitem(driver._DEVICE, "integrated", int(integrated))
        return trt, driver, Host(tensorrt_info(), CudaProbe("12.8", [gpu]))
    return install


def engine_for(onnx: Path, out: Path, host: Host, **options) -> Path:
    return build(onnx, BuildConfig(**options, out_dir=out), host=host, progress=False).output


# ------------------------------------------------------------------------------------------------ pycuda double
def test_pycuda_double_offers_only_names_of_pycuda(monkeypatch):
    driver = pycuda_double.install(monkeypatch)
    for name, value in vars(driver).items():
        if name.startswith("_") or isinstance(value, types.ModuleType) or getattr(value, "__module__",
                                                                                  driver.__name__) != driver.__name__:
            continue  # private, or imported (np, ctypes, Checked...)
        assert f"driver.{name}" in API, name
        if isinstance(value, type):
            members = [m for m in vars(value) if not m.startswith("_")]
            assert all(f"driver.{name}.{m}" in API for m in members), (name, members)
    with pytest.raises(AttributeError, match="driver.mem_alloc_managed is not in"):
        driver.mem_alloc_managed
    driver.init()
    ctx = driver.Device(0).retain_primary_context()
    with pytest.raises(driver.LogicError, match="no currently active context"):
        driver.mem_alloc(16)
    ctx.push()
    try:
        host = driver.pagelocked_empty(8, np.float32)
        with pytest.raises(AttributeError, match="PagelockedHostAllocation.decode"):
            host.base.decode()  # a bytearray underneath, but not to callers
        with pytest.raises(driver.LogicError, match="DEVICEMAP"):
            host.base.get_device_pointer()
        host.base.free()
    finally:
        driver.Context.pop()
    ctx.detach()


@pytest.mark.skipif(not SDIST.is_file(), reason=f"{SDIST} (pycuda's sdist) is not here")
def test_pycuda_list_is_what_the_script_extracts_from_the_sdist():
    sys.path.insert(0, str(SDIST.parents[1] / "scripts"))
    try:
        from pycuda_api_list import extract
    finally:
        sys.path.pop(0)
    names, bases, version = extract(SDIST)
    assert version == "2026.1" and names == API.qualified and bases == API.bases
    assert {"driver.Stream.handle", "driver.PagelockedHostAllocation.free", "driver.memcpy_htod_async",
            "driver.host_alloc_flags.DEVICEMAP", "driver.Function.prepared_async_call",
            "compiler.SourceModule"} <= names
    assert "driver.HostPointer.get_device_pointer" in API and "driver.HostAllocation.get_device_pointer" in API
    assert LIST.read_text().count("\n[bases]\n") == 1


# ------------------------------------------------------------------------------------------------ calibrator
def test_int8_calibrate_mode_calibrates_live_then_reuses_tensorrts_table(exported_yolov8n, gpu_host, tmp_path,
                                                                         monkeypatch):
    from ..doubles.trt import describe_engine
    from ..helpers import extra_photos, skimage_photos, ultralytics_photos

    _, driver, h = gpu_host("10.3.0")
    src = tmp_path / "yolov8n.onnx"
    src.write_bytes(exported_yolov8n.read_bytes())
    (tmp_path / "calib_data").mkdir()  # --int8-mode calibrate reads ./calib_data
    images = ultralytics_photos() + skimage_photos() + extra_photos()
    for p in images:
        (tmp_path / "calib_data" / p.name).write_bytes(p.read_bytes())
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="calibration image"):
        engine = engine_for(src, tmp_path / "engines", h, precision="int8", int8_mode="calibrate")
    calibration = describe_engine(engine.read_bytes())["calibration"]
    assert calibration == {"source": "calibrated", "header": "TRT-100300-EntropyCalibration2",
                           "batches": len(images), "batch_size": 1}
    table = tmp_path / "yolov8n.trt-calib.cache"
    assert table.read_text().splitlines()[0] == "TRT-100300-EntropyCalibration2"
    assert not driver._LIVE and not driver._stack()  # device buffer freed, context popped
    engine = build(src, BuildConfig(precision="int8", int8_mode="calibrate", out_dir=tmp_path / "engines", force=True),
                   host=h, progress=False).output
    assert describe_engine(engine.read_bytes())["calibration"]["source"] == "cache"  # TensorRT's own table, reused


# ------------------------------------------------------------------------------------------------ TrtRunner
@pytest.mark.parametrize("version, precision", [("10.3.0", "fp16"), ("11.4.0.106", "int8")])
def test_runner_output_equals_onnx_runtime_on_the_source(exported_yolov8n, gpu_host, tmp_path, batch, version,
                                                         precision):
    from trtbuild.config import CalibrateConfig
    from trtbuild.stages.precision.calibrate import calibrate
    from trtbuild.stages.precision.int8 import int8, qdq_tensors

    trt, driver, h = gpu_host(version)
    if precision == "int8":
        src = tmp_path / "yolov8n.onnx"
        src.write_bytes(exported_yolov8n.read_bytes())
        from ..helpers import photo_folder
        calib = photo_folder(tmp_path / "calib")
        ranges = calibrate(src, CalibrateConfig(images=calib, num=8, batch=4, method="minmax",
                                                tensors=tuple(qdq_tensors(src)))).output
        int8(src, ranges)
    else:
        src = exported_yolov8n
    engine = engine_for(src, tmp_path / "engines", h, precision=precision)
    runner = open_runner(engine, host=h)
    source = engine.parent / runner.sidecar["source_onnx"]
    assert runner.backend_name == f"TensorRT {version} ({H100.name})"
    assert [(s.name, s.shape, s.dtype) for s in runner.input_specs] == [("images", (1, 3, 320, 320), "float32")]
    out = runner.infer(batch[:1])
    ref = OnnxRunner(source).infer(batch[:1])
    assert len(out) == 1 and out[0].shape == (1, 84, 2100) and np.array_equal(out[0], ref[0])
    assert out[0].std() > 0  # real photos: not a constant output
    assert set(runner.stage_times()) == {"h2d", "compute", "d2h", "total"}
    assert runner.device_memory() > 0
    assert {"ICudaEngine.create_execution_context", "IExecutionContext.execute_async_v3",
            "IExecutionContext.set_tensor_address"} <= trt._touched
    runner.close()
    assert not driver._LIVE  # every pinned and device buffer freed
    runner.close()  # idempotent


def test_profile_refusal_and_missing_pycuda(dynamic_onnx, gpu_host, tmp_path, monkeypatch):
    _, _, h = gpu_host("11.4.0.106")
    engine = engine_for(dynamic_onnx, tmp_path, h, precision="fp32", max_batch=4)
    runner = open_runner(engine, host=h)
    assert runner.profiles == {"images": ((1, 3, 320, 320), (4, 3, 320, 320), (4, 3, 320, 320))}
    with pytest.raises(InputError, match=re.escape("input 'images': shape (5, 3, 320, 320) is outside the engine's "
                                                   "profile (min (1, 3, 320, 320), max (4, 3, 320, 320))")):
        runner.infer(np.zeros((5, 3, 320, 320), np.float32))
    runner.close()
    monkeypatch.setitem(sys.modules, "pycuda", None)  # TensorRT here, pycuda not
    monkeypatch.delitem(sys.modules, "pycuda.driver")
    assert importlib.util.find_spec("pycuda") is None
    with pytest.raises(DependencyMissingError, match="pycuda is not installed"):
        open_runner(engine, host=h)


def test_mapped_memory_on_an_integrated_gpu(exported_yolov8n, gpu_host, tmp_path, batch):
    _, driver, h = gpu_host("10.3.0", integrated=True)
    runner = open_runner(engine_for(exported_yolov8n, tmp_path, h, precision="fp32"), host=h)
    assert runner.mapped and runner.backend_name.endswith(", mapped)")
    out = runner.infer(batch[:1])
    assert np.array_equal(out[0], OnnxRunner(exported_yolov8n).infer(batch[:1])[0])
    runner.close()
    assert not driver._LIVE


def test_dynamic_batch_shrinks_and_grows(dynamic_onnx, gpu_host, tmp_path, batch):
    _, _, h = gpu_host("10.13.3.9")
    runner = open_runner(engine_for(dynamic_onnx, tmp_path, h, precision="fp32", max_batch=4), host=h)
    ref = OnnxRunner(dynamic_onnx)
    for n in (2, 1, 4, 3):  # shrink, then grow to the profile's max, then shrink again
        out = runner.infer(batch[:n])
        assert out[0].shape == (n, 84, 2100) and np.array_equal(out[0], ref.infer(batch[:n])[0]), n
    runner.close()


def test_two_streams_pipeline_in_order(dynamic_onnx, gpu_host, tmp_path, batch):
    _, _, h = gpu_host("10.13.3.9")
    runner = open_runner(engine_for(dynamic_onnx, tmp_path, h, precision="fp32", max_batch=4), host=h, streams=2)
    batches = [batch[i:i + 2] for i in (0, 2, 1)]
    outs = list(runner.infer_many(batches))
    ref = OnnxRunner(dynamic_onnx)
    assert all(np.array_equal(o[0], ref.infer(b)[0]) for o, b in zip(outs, batches))
    runner.close()


def test_infer_frames_letterboxes_into_the_input_buffer(exported_yolov8n, gpu_host, tmp_path):
    """Raw frames in: the letterbox writes into the engine's (pinned) input buffer; same result as infer()."""
    from trtbuild.vision.letterbox import letterbox_batch

    _, _, h = gpu_host("11.4.0.106")
    frames = list(photos().values())[:2]
    with open_runner(engine_for(exported_yolov8n, tmp_path, h, precision="fp32"), host=h) as runner:
        outs, infos = runner.infer_frames(frames[:1])
        # the pycuda double compiles no kernel: the CPU letterbox fallback fills the pinned buffer
        assert runner._letterbox.backend == "cpu"
        x, ref_infos = letterbox_batch(frames[:1], (320, 320))
        assert infos == ref_infos
        np.testing.assert_array_equal(outs[0], runner.infer(x)[0])
        assert outs[0].std() > 0


def test_predictor_on_an_engine_gives_the_onnx_detections(calibrated_onnx, gpu_host, tmp_path):
    """infer/eval's Predictor takes the engine's infer_frames path and finds what ONNX Runtime finds."""
    from trtbuild.tasks.predictor import Predictor

    _, _, h = gpu_host("10.3.0")
    frames = list(photos().values())
    ref = Predictor(OnnxRunner(calibrated_onnx)).predict(frames)
    with open_runner(engine_for(calibrated_onnx, tmp_path, h, precision="fp32"), host=h) as runner:
        pred = Predictor(runner)
        got = pred.predict(frames)
        assert runner._letterbox is not None  # the infer_frames path ran
    assert sum(map(len, ref)) > 20
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r.boxes, g.boxes)
        np.testing.assert_array_equal(r.class_ids, g.class_ids)
    assert pred.times.images == len(frames) and pred.times.preprocess > 0


def test_streams_through_an_engine_with_two_contexts_on_one_engine(shapes_dynamic_onnx, gpu_host, tmp_path):
    """The streaming pipeline on an engine: two execution contexts sharing one deserialized engine (clone), each
    driven by its own thread with its own buffers, frames letterboxed by the runner (infer_frames); every frame's
    detections equal ONNX Runtime's on the source, each stream in order."""
    from trtbuild.config import StreamConfig
    from trtbuild.runtime.engine import TrtRunner
    from trtbuild.stream import build_pipeline, open_models, parse_sources
    from trtbuild.tasks.predictor import Predictor

    _, _, h = gpu_host("10.13.3.9")
    engine = engine_for(shapes_dynamic_onnx, tmp_path, h, precision="fp32", max_batch=4)
    frames = list(photos().values())

    class Source:
        def __iter__(self):
            yield from frames

    with open_models(engine, StreamConfig(contexts=2), host=h) as models:
        assert len(models) == 2 and all(isinstance(m, TrtRunner) for m in models)
        assert models[1].engine is models[0].engine and models[1].context is not models[0].context
        pipeline = build_pipeline(models, parse_sources([Source(), Source()]), StreamConfig(batch=3, conf=0.05))
        results = list(pipeline.results())
        assert all(m._executor is None for m in models)  # each thread freed the buffers it made
    ref = Predictor(OnnxRunner(shapes_dynamic_onnx), conf=0.05).predict(frames)
    for k in (0, 1):
        got = [r for r in results if r.stream == k]
        assert [r.frame for r in got] == list(range(len(frames)))
        for r, want in zip(got, ref):
            assert len(r.detections) == len(want) and np.allclose(r.detections.boxes, want.boxes, atol=1e-3)
    assert sum(map(len, ref)) > 0 and pipeline.snapshot()["batches"] >= 2 * len(frames) / 3
