"""Shared fixtures and the skip rules for the ``gpu`` and ``trt`` markers."""

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


def pytest_collection_modifyitems(config, items):
    reasons = None
    for item in items:
        wanted = [m for m in ("trt", "gpu", "rtx", "triton", "qat") if m in item.keywords]
        if not wanted:
            continue
        if reasons is None:
            reasons = {"gpu": _missing_gpu_reason(), "trt": _missing_trt_reason(), "rtx": _missing_rtx_reason(),
                       "triton": _missing_triton_reason(), "qat": _missing_qat_reason()}
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
def ctx():
    """This thread's CUDA context on device 0 (GPU tests only)."""
    from trtbuild.cuda.context import default_context

    return default_context()
