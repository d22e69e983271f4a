"""Images in, detections out: letterbox → runner → decode + NMS, batched for any ``Runner``.

One object ties the shared pre/post-processing to a backend, so ``infer``, ``eval``, calibration and
``bench`` all see exactly the same geometry. Per-stage wall times are accumulated for reporting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .modelinfo import ModelInfo
from .runtime.base import Runner, backend_seconds
from .vision.decode import Detections, postprocess, postprocess_end2end
from .vision.letterbox import letterbox_batch


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
    ):
        self.runner = runner
        out = runner.output_specs[0]
        channels = out.shape[1] if len(out.shape) == 3 and isinstance(out.shape[1], int) else None
        self.end2end = (len(out.shape) == 3 and out.shape[-1] == 6 and channels != 6) or \
            str(runner.metadata.get("end2end", "")).lower() == "true"  # an --nms model, even with max_det 6
        self.info = ModelInfo.from_metadata(
            runner.metadata, num_classes=None if self.end2end or channels is None else channels - 4
        )
        self.imgsz = runner.input_hw or imgsz or self.info.imgsz or (640, 640)
        self.batch = runner.static_batch or batch or 1
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.multi_label, self.agnostic = multi_label, agnostic
        self.times = StageTimes()
        self._buffer = np.empty((self.batch, 3, *self.imgsz), np.float32)

    @property
    def names(self) -> dict[int, str]:
        return self.info.names

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections for each image (BGR uint8 HWC), in original pixel coordinates."""
        results: list[Detections] = []
        for start in range(0, len(images), self.batch):
            results.extend(self._predict_chunk(images[start : start + self.batch]))
        return results

    def _predict_chunk(self, chunk: list[np.ndarray]) -> list[Detections]:
        n = len(chunk)
        t0 = time.perf_counter()
        frames_fn = getattr(self.runner, "infer_frames", None)  # TensorRT: letterbox on the GPU, into its input
        if frames_fn is not None and (not self.runner.static_batch or n == self.batch):
            outputs, infos = frames_fn(chunk)
            output = outputs[0][:n]
            t2 = time.perf_counter()
            t1 = t2 - backend_seconds(self.runner)
        else:
            batch, infos = letterbox_batch(chunk, self.imgsz, out=self._buffer[:n])
            if self.runner.static_batch and n < self.batch:  # a static engine needs its full batch
                self._buffer[n:] = 0
                batch = self._buffer
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
        return dets
