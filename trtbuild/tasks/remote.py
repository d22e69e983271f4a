"""``Predictor``'s interface over a Triton ensemble, so ``trtbuild infer --triton`` writes the same JSON lines as a
local run: frames are sent as lossless PNG (the server decodes exactly the pixels ``trtbuild infer`` would
letterbox), the server letterboxes, runs the detector and decodes + NMS with the thresholds it was deployed with.

A client may ask for a stricter ``conf`` or a smaller ``max_det`` (applied to the server's detections); a looser
``conf``, a larger ``max_det`` or another ``iou`` would need a different postprocess, so it is refused with the
redeploy command rather than silently ignored.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import InputError
from ..serve.triton_client import TritonClient
from ..vision.decode import Detections
from ..vision.io import encode_png
from .predictor import BatchRun, StageTimes


def check_thresholds(client: TritonClient, conf: float, iou: float, max_det: int) -> None:
    redeploy = "redeploy with `trtbuild deploy triton MODEL --conf C --iou I --max-det N`"
    if conf < client.conf:
        raise InputError(f"conf={conf}: the server's postprocess drops scores below {client.conf}; pass conf ≥ "
                         f"{client.conf} or {redeploy}", param="conf")
    if abs(iou - client.iou) > 1e-9:
        raise InputError(f"iou={iou}: the server's NMS uses iou {client.iou}; pass iou={client.iou} or {redeploy}",
                         param="iou")
    if max_det > client.max_det:
        raise InputError(f"max_det={max_det}: the server keeps at most {client.max_det} boxes per image; pass "
                         f"max_det ≤ {client.max_det} or {redeploy}", param="max_det")


def _keep(det: Detections, conf: float, max_det: int) -> Detections:
    keep = np.flatnonzero(det.scores >= conf)[:max_det]  # already best score first
    return Detections(det.boxes[keep], det.scores[keep], det.class_ids[keep])


class TritonPredictor:
    """What ``run_infer`` needs of a ``Predictor`` (``names``, ``batch``, ``times``, ``predict``, ``run_batch``),
    served by ``client``: ``preprocess`` is the PNG encoding, ``infer`` the round trip, ``postprocess`` the
    client-side threshold."""

    def __init__(self, client: TritonClient, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                 batch: int | None = None):
        check_thresholds(client, conf, iou, max_det)
        if batch and batch > client.max_batch:
            raise InputError(f"batch={batch}: the server takes at most {client.max_batch} images per request "
                             "(its max_batch_size)", param="batch")
        self.client = client
        self._creator = threading.get_ident()
        self._local = threading.local()
        self.names = client.names
        self.batch = batch or 1
        self.conf, self.max_det = conf, max_det
        self.times = StageTimes()

    @property
    def _client(self) -> TritonClient:
        """The client of the calling thread: a TritonClient is not thread-safe (tritonclient's HTTP client is
        bound to the thread that made it), so a thread other than the creator's gets a connection of its own."""
        if threading.get_ident() == self._creator:
            return self.client
        local = self._local.__dict__
        if "client" not in local:
            local["client"] = TritonClient(self.client.url, self.client.model)
        return local["client"]

    def release_thread(self) -> None:
        """Close the connection the calling thread opened (the creator's belongs to whoever passed it in)."""
        client = self._local.__dict__.pop("client", None)
        if client is not None:
            client.close()

    def run_batch(self, chunk: list[np.ndarray]) -> BatchRun:
        t0 = time.perf_counter()
        blobs = [encode_png(f) for f in chunk]
        t1 = time.perf_counter()
        dets = self._client.detect(blobs)
        t2 = time.perf_counter()
        dets = [_keep(d, self.conf, self.max_det) for d in dets]
        t3 = time.perf_counter()
        tm = self.times
        tm.preprocess, tm.infer, tm.postprocess = tm.preprocess + t1 - t0, tm.infer + t2 - t1, tm.postprocess + t3 - t2
        tm.images += len(chunk)
        return BatchRun(dets, t1 - t0, t2 - t1, t3 - t2, None)

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        out: list[Detections] = []
        for start in range(0, len(images), self.batch):
            out.extend(self.run_batch(images[start : start + self.batch]).detections)
        return out
