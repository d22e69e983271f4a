"""Images in, detections out: letterbox → runner → decode + NMS, batched for any ``Runner``.

``Predictor.run_batch`` is the one inference loop body: ``infer``, ``eval`` and ``bench`` all call it, so they see
exactly the same geometry and the same stage timing. A runner that ``takes_frames`` (TensorRT) letterboxes on the
GPU straight into its input buffer; any other gets the CPU letterbox into a reused batch buffer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..runtime.base import Runner, backend_seconds
from ..vision.batch import check_batch_memory, pad_batch
from ..vision.decode import Detections, postprocess, postprocess_end2end
from ..vision.letterbox import letterbox_batch


@dataclass
class StageTimes:
    """Accumulated seconds per stage and the number of images they cover."""

    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    images: int = 0

    def per_image_ms(self) -> dict[str, float]:
        n = max(self.images, 1)
        return {k: 1000 * getattr(self, k) / n for k in ("preprocess", "infer", "postprocess")}


@dataclass
class BatchRun:
    """One batch call: its detections, the wall seconds of each stage and the runner's own stage times (ms)."""

    detections: list[Detections]
    preprocess: float
    infer: float
    postprocess: float
    backend_ms: dict[str, float] | None


class Predictor:
    """Run detection on BGR images with a ``Runner``; thresholds default to ultralytics' predict defaults."""

    def __init__(
        self,
        runner: Runner,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        imgsz: tuple[int, int] | None = None,
        batch: int | None = None,
        multi_label: bool = False,
        agnostic: bool = False,
        gpu_preprocess: bool = True,
    ):
        self.runner = runner
        info = runner.info
        self.end2end = info.end2end
        if not self.end2end:
            info.require_detect(runner.path)  # one line for a model that is not a YOLOv8 detector
        self.names: dict[int, str] = info.names
        self.imgsz = info.run_hw(imgsz)
        self.batch = runner.static_batch or batch or 1
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.multi_label, self.agnostic = multi_label, agnostic
        self.gpu_preprocess = gpu_preprocess and runner.takes_frames
        self.times = StageTimes()
        check_batch_memory(self.batch, self.imgsz, runner.path)
        self._buffer = np.empty((0, 3, *self.imgsz), np.float32)  # grown to the largest chunk actually run

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections for each image (BGR uint8 HWC), in original pixel coordinates."""
        results: list[Detections] = []
        for start in range(0, len(images), self.batch):
            results.extend(self.run_batch(images[start : start + self.batch]).detections)
        return results

    def _input(self, chunk: list[np.ndarray]):
        """The CPU letterbox of ``chunk`` into the reused buffer; a static-batch model gets zero padding."""
        n, size = len(chunk), max(len(chunk), self.runner.static_batch or 0)
        if len(self._buffer) < size:
            self._buffer = np.empty((size, 3, *self.imgsz), np.float32)
        batch, infos = letterbox_batch(chunk, self.imgsz, out=self._buffer[:n])
        if size > n:  # a static engine needs its full batch: black images whose outputs are dropped
            batch = pad_batch(batch, size, "zeros", out=self._buffer)
        return batch, infos

    def run_batch(self, chunk: list[np.ndarray]) -> BatchRun:
        """One batch call as an application makes it: letterbox, infer, decode + NMS; timed per stage."""
        n = len(chunk)
        t0 = time.perf_counter()
        if self.gpu_preprocess and (not self.runner.static_batch or n == self.runner.static_batch):
            outputs, infos = self.runner.infer_frames(chunk, self.imgsz)
            output = outputs[0][:n]
            t2 = time.perf_counter()
            t1 = t2 - backend_seconds(self.runner)  # the rest of the call is the letterbox
        else:
            batch, infos = self._input(chunk)
            t1 = time.perf_counter()
            output = self.runner.infer(batch)[0][:n]
            t2 = time.perf_counter()
        if self.end2end:
            dets = postprocess_end2end(output, infos, conf=self.conf)
        else:
            dets = postprocess(
                output, infos, conf=self.conf, iou=self.iou, max_det=self.max_det,
                agnostic=self.agnostic, **({"multi_label": True} if self.multi_label else {}),
            )
        t3 = time.perf_counter()
        tm = self.times
        tm.preprocess += t1 - t0
        tm.infer += t2 - t1
        tm.postprocess += t3 - t2
        tm.images += n
        return BatchRun(dets, t1 - t0, t2 - t1, t3 - t2, self.runner.stage_times())
