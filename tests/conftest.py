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


def pytest_collection_modifyitems(config, items):
    gpu_reason = trt_reason = None
    checked = False
    for item in items:
        wants_gpu = "gpu" in item.keywords
        wants_trt = "trt" in item.keywords
        if not (wants_gpu or wants_trt):
            continue
        if not checked:
            gpu_reason, trt_reason, checked = _missing_gpu_reason(), _missing_trt_reason(), True
        reason = trt_reason if wants_trt else gpu_reason
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def exported_yolov8n(tmp_path_factory):
    """One real export of yolov8n.yaml (random weights, seeded) at 320×320, shared by the session."""
    from trtbuild.config import ExportConfig
    from trtbuild.export_onnx import export

    out = tmp_path_factory.mktemp("export")
    return export("yolov8n.yaml", ExportConfig(imgsz=(320, 320)), out_dir=out).output
