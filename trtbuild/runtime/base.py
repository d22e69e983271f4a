"""The ``Runner`` interface every backend implements. It knows nothing of its implementations (``open.py`` picks one).

A runner takes a preprocessed batch (NCHW float32, 0..1, RGB, letterboxed) and returns the model's raw outputs as
NumPy arrays, in the order of ``output_specs``. What a backend can do beyond that it declares, instead of callers
probing for attributes: ``backend_name``, ``takes_frames`` (it letterboxes uint8 frames itself, into its input
buffer: ``infer_frames``), ``stage_times`` (its own per-stage timing), ``device_memory``.
"""

from __future__ import annotations

import abc
from functools import cached_property
from pathlib import Path

import numpy as np

from ..cuda.buffers import STAGES as BACKEND_STAGES
from ..iospec import IOSpec
from ..onnx.modelinfo import ModelInfo
from ..vision.batch import pad_batch
from ..vision.letterbox import LetterboxInfo


def backend_seconds(runner: Runner) -> float:
    """Seconds of the last call that the runner's own events measured (h2d + compute + d2h); 0 where it has none.

    For ``infer_frames`` calls the rest of the wall time is the letterbox done inside the call."""
    times = runner.stage_times() or {}
    return sum(float(times.get(k, 0.0)) for k in BACKEND_STAGES) / 1000


class Runner(abc.ABC):
    """A loaded model that maps an input batch to raw outputs."""

    path: Path
    metadata: dict
    takes_frames: bool = False  # True: ``infer_frames`` letterboxes uint8 frames itself (e.g. on the GPU)

    @property
    @abc.abstractmethod
    def input_specs(self) -> list[IOSpec]: ...

    @property
    @abc.abstractmethod
    def output_specs(self) -> list[IOSpec]: ...

    @property
    @abc.abstractmethod
    def backend_name(self) -> str:
        """What runs the model, with its version and device (shown in benchmark reports)."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch ``[B,3,H,W]`` and return the outputs in ``output_specs`` order."""

    def infer_frames(self, frames: list[np.ndarray], hw: tuple[int, int]) -> tuple[list[np.ndarray],
                                                                                   list[LetterboxInfo]]:
        """uint8 BGR frames → letterboxed at ``hw`` by the runner itself → outputs, with each frame's letterbox
        info. Only where ``takes_frames`` is True."""
        raise NotImplementedError(f"{type(self).__name__} takes letterboxed batches only (takes_frames is False)")

    @cached_property
    def info(self) -> ModelInfo:
        """The model's geometry and class names, read once from its specs and metadata."""
        return ModelInfo.of(self.metadata, self.input_specs, self.output_specs, str(self.path))

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
            if self.static_batch:
                part = pad_batch(part, step, "zeros")
            outs.append(np.asarray(self.infer(np.ascontiguousarray(part))[0], np.float32)[:n])
        return np.concatenate(outs)

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
