"""Inference backends behind one small ``Runner`` interface (ONNX Runtime now, TensorRT later)."""

from .base import IOSpec, Runner, open_runner

__all__ = ["IOSpec", "Runner", "open_runner"]
