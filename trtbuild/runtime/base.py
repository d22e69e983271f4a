"""The ``Runner`` interface every backend implements, and ``open_runner`` which picks one by file type.

A runner takes a preprocessed batch (NCHW float32, 0..1, RGB, letterboxed) and returns the model's raw
outputs as NumPy arrays, in the order of ``output_specs``. Pre/post-processing is not its business.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class IOSpec:
    """One input or output tensor: name, shape (``None`` or a string for a dynamic axis) and NumPy dtype."""

    name: str
    shape: tuple
    dtype: str

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) or d < 0 for d in self.shape)


BACKEND_STAGES = ("h2d", "compute", "d2h")  # the parts of one call a GPU runner times with CUDA events


def backend_seconds(runner: "Runner") -> float:
    """Seconds of the last call that the runner's own events measured (h2d + compute + d2h); 0 where it has none.

    For ``infer_frames`` calls the rest of the wall time is the letterbox done inside the call."""
    times = runner.stage_times() or {}
    return sum(float(times.get(k, 0.0)) for k in BACKEND_STAGES) / 1000


class Runner(abc.ABC):
    """A loaded model that maps an input batch to raw outputs."""

    path: Path
    metadata: dict

    @property
    @abc.abstractmethod
    def input_specs(self) -> list[IOSpec]: ...

    @property
    @abc.abstractmethod
    def output_specs(self) -> list[IOSpec]: ...

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch ``[B,3,H,W]`` and return the outputs in ``output_specs`` order."""

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """Static (H, W) of the image input, or None when it is dynamic."""
        h, w = self.input_specs[0].shape[2:4]
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    @property
    def static_batch(self) -> int | None:
        b = self.input_specs[0].shape[0]
        return b if isinstance(b, int) and b > 0 else None

    def infer_all(self, images: np.ndarray, chunk: int = 8) -> np.ndarray:
        """The first output for any number of images ``[N,3,H,W]``: a static-batch model is fed in groups of its
        batch (the last group zero-padded, the padding dropped), a dynamic one in groups of ``chunk``."""
        step = self.static_batch or chunk
        outs = []
        for start in range(0, len(images), step):
            part = images[start : start + step]
            n = len(part)
            if self.static_batch and n < step:
                part = np.concatenate([part, np.zeros((step - n, *part.shape[1:]), part.dtype)])
            outs.append(np.asarray(self.infer(np.ascontiguousarray(part))[0], np.float32)[:n])
        return np.concatenate(outs)

    def warmup(self, iterations: int = 2, hw: tuple[int, int] | None = None) -> None:
        """Run a few zero batches so first-call costs (allocation, kernel selection) are paid up front."""
        h, w = self.input_hw or hw or (640, 640)
        batch = np.zeros((self.static_batch or 1, 3, h, w), np.float32)
        for _ in range(iterations):
            self.infer(batch)

    def stage_times(self) -> dict[str, float] | None:
        """Milliseconds per stage of the last ``infer`` call as the backend measured them (a TensorRT runner:
        ``h2d``, ``compute``, ``d2h`` from CUDA events), or None where the backend cannot split its time."""
        return None

    def device_memory(self) -> int | None:
        """Bytes of device memory this runner holds (engine activations + I/O buffers), None on the CPU."""
        return None

    def close(self) -> None:
        """Free the backend's resources (a no-op where nothing needs freeing)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_runner(path: str | Path, **kwargs) -> Runner:
    """Open ``path`` with the backend its suffix names (``.onnx`` → ONNX Runtime, ``.engine`` → TensorRT)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file; pass an .onnx (or, with TensorRT, an .engine) path")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .onnx import OnnxRunner

        return OnnxRunner(path, **kwargs)
    if suffix in (".engine", ".plan", ".trt"):
        from .engine import open_engine_runner  # lazy: TensorRT and pycuda are optional

        return open_engine_runner(path, **kwargs)
    raise InputError(f"{path}: unknown model type {suffix!r}; expected .onnx or .engine")
