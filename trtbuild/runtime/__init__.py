"""Runners: one ``Runner`` interface (``base``), its ONNX Runtime and TensorRT backends, and ``open_runner``."""
