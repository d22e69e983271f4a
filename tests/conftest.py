"""Shared fixtures and the skip rules for the ``gpu``, ``trt``, ``rtx``, ``triton`` and ``live`` markers."""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def _missing_gpu_reason() -> str | None:
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed (install the 'gpu' extra on a CUDA host)"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device found"
    except Exception as exc:  # pragma: no cover - depends on the host
        return f"CUDA driver unusable: {exc}"
    return None


def _missing_trt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (install the 'gpu' extra from NVIDIA's package index)"
    return _missing_gpu_reason()


def _missing_rtx_reason() -> str | None:
    if importlib.util.find_spec("tensorrt_rtx") is None:
        return "TensorRT-RTX is not installed (pip install tensorrt-rtx, or the 'rtx' extra)"
    return None


def _missing_qat_reason() -> str | None:
    if importlib.util.find_spec("modelopt") is None:
        return "nvidia-modelopt is not installed (the 'qat' extra; make install)"
    return None


def _missing_triton_reason() -> str | None:
    if importlib.util.find_spec("tritonclient") is None:
        return "tritonclient is not installed (the 'triton' extra; make install)"
    from trtbuild.errors import DependencyMissingError
    from trtbuild.serve.triton_server import find_kit

    try:
        find_kit()
    except DependencyMissingError as exc:
        return str(exc)
    return None


def _missing_live_reason() -> str | None:
    from .live import missing_rtsp_reason

    return missing_rtsp_reason()


def pytest_collection_modifyitems(config, items):
    reasons = None
    for item in items:
        wanted = [m for m in ("trt", "gpu", "rtx", "triton", "live", "qat") if item.get_closest_marker(m) is not None]
        if not wanted:
            continue
        if reasons is None:
            reasons = {"gpu": _missing_gpu_reason(), "trt": _missing_trt_reason(), "rtx": _missing_rtx_reason(),
                       "triton": _missing_triton_reason(), "live": _missing_live_reason(),
                       "qat": _missing_qat_reason()}
        reason = next((reasons[m] for m in wanted if reasons[m]), None)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def exported_yolov8n(tmp_path_factory):
    """One real export of yolov8n.yaml (random weights, seeded) at 320×320, shared by the session."""
    from trtbuild.config import ExportConfig
    from trtbuild.stages.export import export

    out = tmp_path_factory.mktemp("export")
    return export("yolov8n.yaml", ExportConfig(imgsz=(320, 320), out_dir=out)).output


@pytest.fixture(scope="session")
def exported_yolov8n_dynamic(tmp_path_factory):
    """yolov8n.yaml (random weights, seeded) exported at 320×320 with a dynamic batch axis, once per session: read
    it, or copy it before writing beside it."""
    from trtbuild.config import ExportConfig
    from trtbuild.stages.export import export

    out = tmp_path_factory.mktemp("export-dynamic")
    return export("yolov8n.yaml", ExportConfig(imgsz=(320, 320), dynamic=True, out_dir=out, name="dyn")).output


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES_MODEL = os.path.join(REPO_ROOT, "models", "shapes-yolov8n.pt")
SHAPES_VAL_IMAGES = 120  # val images in the session's synthetic data set (kept small: 2 CPU cores)


@pytest.fixture(scope="session")
def calibrated_onnx(tmp_path_factory):
    """yolov8n.yaml with BatchNorm recalibrated on the test photos, exported to a 640×640 ONNX once per session.

    Random weights, but scores and boxes depend on the image, so real photos give many detections.
    """
    from .helpers import export_calibrated_model, photos

    return export_calibrated_model(tmp_path_factory.mktemp("calibrated"), list(photos().values()))


@pytest.fixture(scope="session")
def shapes_onnx(tmp_path_factory):
    """The project's reference model models/shapes-yolov8n.pt exported to ONNX (640×640, batch 1) by trtbuild."""
    from trtbuild.config import ExportConfig
    from trtbuild.stages.export import export

    return export(SHAPES_MODEL, ExportConfig(out_dir=tmp_path_factory.mktemp("shapes"))).output


@pytest.fixture(scope="session")
def shapes_dynamic_onnx(tmp_path_factory):
    """The reference model exported at 320×320 with a dynamic batch axis (real detections on shapes and photos),
    once per session: NMS graphs, the streaming pipeline's cross-stream batches."""
    from trtbuild.config import ExportConfig
    from trtbuild.stages.export import export

    out = tmp_path_factory.mktemp("shapes-dynamic")
    return export(SHAPES_MODEL, ExportConfig(imgsz=(320, 320), dynamic=True, out_dir=out, name="dyn")).output


@pytest.fixture(scope="session")
def shapes_val_data(tmp_path_factory):
    """data.yaml of a synthetic shapes data set with only a val split (SHAPES_VAL_IMAGES images, seed 0).

    Shared: tests that modify a data set must copy it first.
    """
    from trtbuild.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("shapes-data")
    return generate_dataset(root, n_train=0, n_val=SHAPES_VAL_IMAGES, seed=0, workers=1, progress=False)


@pytest.fixture(scope="session")
def images():
    """{file name: BGR image} of the real photos shipped with ultralytics and scikit-image."""
    from .helpers import photos, skimage_photos

    try:
        return photos()
    except AssertionError:  # ultralytics not installed (a bare GPU host): scikit-image's photos only
        import cv2

        return {p.name: cv2.imread(str(p)) for p in skimage_photos()}


@pytest.fixture(scope="session")
def _rtsp_server_session():
    """One real RTSP server (tests/live/rtsp_server.py) for the session; skipped where GStreamer is missing."""
    from .live import RtspServer, RtspUnavailable

    server = RtspServer()
    try:
        server.start()
    except RtspUnavailable as exc:
        pytest.skip(str(exc))
    with server:  # SIGTERM at the end, log removed
        yield server


@pytest.fixture
def rtsp_server(_rtsp_server_session):
    """The session's running :class:`tests.live.RtspServer` (mounts /live, /fast, /stall; ``url(mount)``,
    ``kill()``, ``restart()``): restarted on its port first if an earlier test killed it and left it down."""
    return _rtsp_server_session.ensure_running()


@pytest.fixture(scope="session")
def http_video(tmp_path_factory):
    """A :class:`tests.live.VideoSet`: clip.mp4 / clip.avi (60 frames, 30 fps, 640x360, frame numbers drawn in)
    and their truncated halves cut.mp4 / cut.avi, served on ``http_video.url(name)`` by a loopback HTTP server."""
    from .live import HttpFileServer, VideoSet, make_video_set

    root = tmp_path_factory.mktemp("http-video")
    make_video_set(root, frames=60, fps=30.0, size=(640, 360))
    with HttpFileServer(root) as http:
        yield VideoSet(root=root, http=http, frames=60, fps=30.0, size=(640, 360))


@pytest.fixture(scope="session")
def ctx():
    """This thread's CUDA context on device 0 (GPU tests only)."""
    from trtbuild.cuda.context import default_context

    return default_context()


def pytest_terminal_summary(terminalreporter):
    """Figures a test recorded with ``record_property("figures", text)`` (e.g. the C++ parity), after the run."""
    lines = [f"{rep.nodeid}: {value}" for reports in terminalreporter.stats.values() for rep in reports
             if getattr(rep, "when", None) == "call" for key, value in getattr(rep, "user_properties", ())
             if key == "figures"]
    if lines:
        terminalreporter.section("recorded figures")
        for line in lines:
            terminalreporter.write_line(line)
