"""``open_runner``: the backend a model file's suffix names (``.onnx`` → ONNX Runtime, ``.engine`` → TensorRT)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..trt.host import Host
from .base import Runner
from .engine import TrtRunner
from .onnx import OnnxRunner

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_runner(path: str | os.PathLike, host: Host | None = None, **options) -> Runner:
    """Open ``path`` with its backend; ``options`` go to the runner (TensorRT: ``streams``, ``use_graph``, …),
    ``host`` to the engine check (default: probe this host)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file; pass an .onnx (or, with TensorRT, an .engine) path")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxRunner(path, **options)
    if suffix in ENGINE_SUFFIXES:
        return TrtRunner(path, host=host, **options)  # TensorRT and pycuda are imported only here, lazily
    raise InputError(f"{path}: unknown model type {suffix!r}; expected .onnx or .engine")
