"""trtbuild: compile YOLOv8 detectors into TensorRT engines and run them fast.

The Python API mirrors the CLI. Heavy dependencies (torch, ultralytics, TensorRT, pycuda) are imported
only by the functions that need them, so ``import trtbuild`` is cheap and works on any host.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "export", "simplify", "doctor"]


def export(*args, **kwargs):
    """Export a YOLOv8 ``.pt``/``.yaml`` to ONNX; see :func:`trtbuild.export_onnx.export`."""
    from .export_onnx import export as _export

    return _export(*args, **kwargs)


def simplify(*args, **kwargs):
    """Simplify an ONNX with onnxsim and check parity; see :func:`trtbuild.simplify_onnx.simplify`."""
    from .simplify_onnx import simplify as _simplify

    return _simplify(*args, **kwargs)


def doctor(*args, **kwargs):
    """Report what this host can run; see :func:`trtbuild.doctor_host.doctor`."""
    from .doctor_host import doctor as _doctor

    return _doctor(*args, **kwargs)
