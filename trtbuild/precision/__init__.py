"""Precision compiled into the ONNX on the CPU: calibration ranges, the TensorRT 10 table, FP16 and Q/DQ graphs.

Names are imported lazily so ``import trtbuild.precision.qdq`` does not pull in OpenCV or click.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CalibrationData": "calibrate",
    "calibrate": "calibrate",
    "calibration_key": "calibrate",
    "compute_ranges": "calibrate",
    "load_ranges": "calibrate",
    "select_images": "calibrate",
    "amax": "table",
    "parse_table": "table",
    "write_table": "table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
