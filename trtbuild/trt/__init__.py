"""TensorRT-facing code. Nothing here imports ``tensorrt`` at module import time."""
