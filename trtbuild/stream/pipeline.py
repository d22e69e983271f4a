"""The streaming pipeline: sources → decode + letterbox threads → batcher → model → postprocess → sinks.

Threads: one reader per source (decode, then letterbox straight into a row of a batch buffer: ``Batcher``), one
model thread per runner (several runners, e.g. one per GPU, take batches from the same batcher: data parallel),
one result thread (decode + NMS, then the sinks), and the caller's thread, which takes the results from a bounded
queue (``results()``) and is where Ctrl-C lands. Every queue is bounded — the batcher's ring, the model→result
queue, the result queue — so memory stays flat however long the streams run; a file waits when the pipeline is
full, a live source drops its oldest frame instead (counted per stream). Batches leave the model in any order and
are put back in closing order before their results are made, so each stream's frames come out in order.

A *model* is a ``Runner`` (tensors in, raw outputs out; a runner that ``takes_frames`` gets the raw frames and
letterboxes them itself, on the GPU) or any object with ``predict(frames) -> list[Detections]`` and ``names`` (e.g.
a Triton client), which gets raw frames and does everything itself.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import StreamConfig
from ..errors import InputError
from ..runtime.base import Runner
from ..vision.decode import Detections, postprocess, postprocess_end2end
from ..vision.draw import draw_detections
from ..vision.letterbox import LetterboxInfo, letterbox_into
from .batcher import Batch, Batcher
from .sinks import JsonLines, Pictures, Videos
from .sources import Frame, Reader, SourceSpec
from .stats import RunStats, StreamStats

RESULT_QUEUE = 64  # results waiting for the caller: a slow consumer holds the pipeline back, never grows memory
DEFAULT_MAX_BATCH = 8


@dataclass
class Item:
    """What a reader commits into a batch row: the frame's identity and timing, its letterbox geometry, and the
    pixels when something downstream needs them (drawing, a runner that letterboxes itself)."""

    stream: int
    index: int
    captured: float
    captured_mono: float
    path: str
    shape: tuple[int, int]
    info: LetterboxInfo | None
    image: np.ndarray | None


@dataclass
class StreamResult:
    """The detections of one frame of one stream, with when it was captured and how long it took to come out."""

    stream: int
    source: str
    path: str
    frame: int
    captured: float  # wall-clock capture time (time.time())
    latency_ms: float  # capture → result
    width: int
    height: int
    detections: Detections
    image: np.ndarray | None = None  # the original frame (keep_frames / save_dir)
    saved: str | None = None  # the annotated picture or video it was written into

    def to_record(self, names, video: bool) -> dict:
        """``trtbuild infer``'s JSON line: ``path`` (+ ``frame`` for video and live sources), ``width``, ``height``,
        ``detections``, then the stream's fields ``stream``, ``captured``, ``latency_ms`` (+ ``saved``)."""
        rec = {"path": self.path}
        if video:
            rec["frame"] = self.frame
        rec.update(width=self.width, height=self.height, detections=self.detections.to_list(names),
                   stream=self.stream, captured=round(self.captured, 6), latency_ms=round(self.latency_ms, 3))
        if self.saved:
            rec["saved"] = self.saved
        return rec


@dataclass
class Hooks:
    """What a caller hears while a run goes: ``on_status(snapshot)`` every ``status_every`` s (the run's figures),
    ``on_event(stream, kind, text)`` what happens to a source (``skip``, ``short``, ``lost``, ``reconnected``,
    ``failed``, ``ended``), ``on_record(record)`` each JSON line (``trtbuild infer``)."""

    on_status: Callable[[dict], None] | None = None
    on_event: Callable[[int, str, str], None] | None = None
    on_record: Callable[[dict], None] | None = None
    status_every: float = 0.5


class _Model:
    """One model as the pipeline drives it: tensors in (``rows`` letterboxed into the batch buffer) or frames in."""

    def __init__(self, model, hw: tuple[int, int], cfg_conf: float, cfg_iou: float, max_det: int):
        self.model = model
        self.is_runner = isinstance(model, Runner)
        self.hw = hw
        self.conf, self.iou, self.max_det = cfg_conf, cfg_iou, max_det
        if self.is_runner:
            info = model.info
            self.end2end = info.end2end
            if not self.end2end:
                info.require_detect(model.path)
            self.names = info.names
            self.static = model.static_batch
            self.frames_in = bool(model.takes_frames and not self.static)  # GPU letterbox into its own buffer
        else:
            self.end2end, self.names, self.static, self.frames_in = True, model.names, None, True

    def run(self, batch: Batch, items: list[Item]):
        """The model's raw output for ``items`` (rows of ``batch``); a ``predict`` model's detections."""
        n = len(items)
        if not self.is_runner:
            return list(self.model.predict([it.image for it in items]))
        if self.frames_in:
            outputs, infos = self.model.infer_frames([it.image for it in items], self.hw)
            for it, info in zip(items, infos):
                it.info = info
            return outputs[0][:n]
        rows = batch.array[: self.static or n]
        if self.static and n < self.static:
            rows[n:] = 0  # a static engine needs its full batch: black rows, their outputs dropped
        return np.asarray(self.model.infer(rows)[0][:n])

    def decode(self, output, items: list[Item]) -> list[Detections]:
        """Decode + NMS of ``run``'s output (a ``predict`` model's detections pass through)."""
        if not self.is_runner:
            return output
        infos = [it.info for it in items]
        if self.end2end:
            return postprocess_end2end(output, infos, conf=self.conf, max_det=self.max_det)
        return postprocess(output, infos, conf=self.conf, iou=self.iou, max_det=self.max_det)


class Pipeline:
    """A streaming run of ``models`` (one per device or context; all alike) over ``specs`` as ``config`` says, at
    input size ``hw`` and ``batch`` rows per batch; see the module docstring."""

    def __init__(self, models: Sequence, specs: Sequence[SourceSpec], config: StreamConfig, *, hw: tuple[int, int],
                 batch: int, hooks: Hooks | None = None):
        cfg, hooks = config, hooks or Hooks()
        conf, iou, max_det, buffers, keep_frames = cfg.conf, cfg.iou, cfg.max_det, cfg.buffers, cfg.keep_frames
        json_path, save_dir, overwrite = cfg.json_path, cfg.save_dir, cfg.overwrite
        if not models:
            raise InputError("no model to run")
        self.models = [_Model(m, hw, conf, iou, max_det) for m in models]
        self.specs = list(specs)
        self.hw, self.batch = hw, batch
        first = self.models[0]
        if first.static and batch != first.static:
            raise InputError(f"batch={batch}: the model takes batch {first.static} only (static)", param="batch")
        self.names = first.names
        self.frames_in = first.frames_in
        self.keep_frames = keep_frames
        self.keep = keep_frames or save_dir is not None or self.frames_in
        shape = None if self.frames_in else (3, *hw)
        self.batcher = Batcher(batch, shape, buffers=max(buffers, len(models) + 1), max_wait=cfg.max_wait_ms / 1000,
                               streams=len(self.specs))
        self.stats = RunStats([StreamStats(s.id, s.name, s.live) for s in self.specs], batch)
        self.stop_event = threading.Event()
        self.vid_stride, self.reconnect_s = cfg.vid_stride, cfg.reconnect_s
        self.on_status, self.status_every, self.on_event = hooks.on_status, hooks.status_every, hooks.on_event
        self._done_q: queue.Queue = queue.Queue(maxsize=len(self.models) + 1)
        self._results: queue.Queue = queue.Queue(maxsize=RESULT_QUEUE)
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self.json = JsonLines(json_path, overwrite) if json_path else None
        self.pictures = Pictures(save_dir) if save_dir else None
        self.videos = Videos(save_dir) if save_dir else None
        self._fps: dict[int, float | None] = {}

    # -- readers
    def _emit(self, frame: Frame) -> bool:
        stream = self.stats.streams[frame.stream]
        stream.read += 1
        self.stats.stage("decode", frame.decode_s)
        if stream.status in ("starting", "lost"):
            stream.status = "running"
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
            self.stats.event(frame.stream, "skip", f"frame {frame.index}: not a BGR uint8 image {image.shape}")
            return False
        slot = self.batcher.reserve(frame.stream, block=not frame.live)
        if slot is None:
            if not self.stop_event.is_set():
                stream.dropped += 1  # live: the pipeline is full, this frame goes; the next one is newer
            return False
        t0 = time.perf_counter()
        info = None
        try:
            if slot.view is not None:
                info = letterbox_into(image, self.hw, slot.view)
        except BaseException:
            self.batcher.commit(slot, None)
            raise
        self.stats.stage("letterbox", time.perf_counter() - t0)
        self.batcher.commit(slot, Item(frame.stream, frame.index, frame.captured, frame.captured_mono, frame.path,
                                       image.shape[:2], info, image if self.keep else None))
        return True

    def _event(self, stream: int, kind: str, text: str) -> None:
        self.stats.event(stream, kind, text)
        if self.on_event is not None:
            self.on_event(stream, kind, text)

    def _read(self, reader: Reader) -> None:
        try:
            reader.run()
        except BaseException as exc:  # e.g. a pipeline error while emitting: the run stops
            self._fail(exc)

    # -- the model
    def _infer(self, model: _Model) -> None:
        try:
            while True:
                batch = self.batcher.next_batch(self.stop_event)
                if batch is None:
                    break
                items = [it for it in batch.items[: batch.reserved] if it is not None]
                t0 = time.perf_counter()
                output = model.run(batch, items) if items else None
                self.stats.stage("infer", time.perf_counter() - t0, len(items))
                with self.stats._lock:
                    self.stats.batches += 1
                    self.stats.rows += len(items)
                    self.stats.padded += (model.static - len(items)) if model.static else 0
                seq = batch.seq
                self.batcher.release(batch)
                self._put(self._done_q, (seq, items, model, output))
        except BaseException as exc:
            self._fail(exc)
        finally:
            release = getattr(model.model, "release_thread", None)
            if release is not None:  # a TensorRT runner's buffers are freed by the thread that made them
                release()
            self._put(self._done_q, None)

    # -- results
    def _post(self) -> None:
        pending: dict[int, tuple] = {}
        expect, finished = 0, 0
        try:
            while finished < len(self.models):
                got = self._done_q.get()
                if got is None:
                    finished += 1
                    continue
                pending[got[0]] = got
                while expect in pending:
                    self._finish(*pending.pop(expect)[1:])
                    expect += 1
            for seq in sorted(pending):  # after a stop: what is left, in order
                self._finish(*pending.pop(seq)[1:])
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._put(self._results, None)

    def _finish(self, items: list[Item], model: _Model, output) -> None:
        if not items:
            return
        t0 = time.perf_counter()
        dets = model.decode(output, items)
        self.stats.stage("post", time.perf_counter() - t0, len(items))
        for item, det in zip(items, dets):
            self._deliver(item, det)

    def _deliver(self, item: Item, det: Detections) -> None:
        t0 = time.perf_counter()
        now = time.monotonic()  # the result exists: capture → here is its latency (the sinks come after)
        spec = self.specs[item.stream]
        result = StreamResult(item.stream, spec.uri, item.path, item.index, item.captured,
                              1000 * (now - item.captured_mono), item.shape[1], item.shape[0], det, item.image)
        if self.pictures is not None or self.videos is not None:
            picture = draw_detections(item.image, det, self.names)
            if spec.kind in ("image", "folder"):
                result.saved = str(self.pictures.write(item.path, picture))
            else:
                if item.stream not in self._fps:
                    self._fps[item.stream] = _declared_fps(spec)
                result.saved = str(self.videos.write(item.stream, spec.name, self._fps[item.stream], picture))
        if self.json is not None:
            self.json.write(result.to_record(self.names, spec.kind not in ("image", "folder")))
        if not self.keep_frames:
            result.image = None
        self.stats.delivered(item.stream, now - item.captured_mono, now)
        self.stats.stage("sink", time.perf_counter() - t0)
        self._put(self._results, result)

    # -- control
    def _put(self, q: queue.Queue, item) -> None:
        """``q.put`` that gives up when the run is stopping (nobody may be taking any more)."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stop_event.is_set() and item is not None:
                    return

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self.batcher.stop()

    def _monitor(self) -> None:
        last = 0.0
        while not self.stop_event.wait(0.1):
            self.stats.sample(self.batcher.occupancy())
            if self.on_status is not None and time.monotonic() - last >= self.status_every:
                last = time.monotonic()
                self.on_status(self.snapshot())

    def snapshot(self) -> dict:
        return self.stats.snapshot(len(self.specs), len(self.models))

    def _readers_done(self, threads: list[threading.Thread]) -> None:
        for t in threads:
            t.join()
        self.batcher.sources_done()

    def results(self) -> Iterator[StreamResult]:
        """Start every thread and yield the results as they come; on return, on an error and on Ctrl-C the run is
        stopped and the sinks closed (kept, or on an error removed: see ``sinks``)."""
        keep = False
        # FFmpeg's decoder threads per capture: one when several streams decode in parallel, or for a live source
        # (each extra thread holds back a frame: latency), else its own choice
        threads = 1 if len(self.specs) > 1 or any(s.live for s in self.specs) else 0
        readers = [Reader(s, self._emit, self._event, self.stop_event, self.vid_stride, self.reconnect_s, threads)
                   for s in self.specs]
        try:
            read_threads = [threading.Thread(target=self._read, args=(r,), name=f"read-{r.spec.id}", daemon=True)
                            for r in readers]
            model_threads = [threading.Thread(target=self._infer, args=(m,), name=f"model-{i}", daemon=True)
                             for i, m in enumerate(self.models)]
            self._threads = [*read_threads, *model_threads,
                             threading.Thread(target=self._post, name="results", daemon=True),
                             threading.Thread(target=self._monitor, name="monitor", daemon=True),
                             threading.Thread(target=self._readers_done, args=(read_threads,), name="readers-done",
                                              daemon=True)]
            for t in self._threads:
                t.start()
            while True:
                try:
                    result = self._results.get(timeout=0.1)
                except queue.Empty:
                    continue
                if result is None:
                    break
                yield result
            if self._error is not None:
                raise self._error
            keep = True
        except (KeyboardInterrupt, GeneratorExit):
            keep = True  # Ctrl-C / SIGTERM is how a live run ends: what was written so far stays
            raise
        finally:
            self.stop()
            for t in self._threads:
                t.join(timeout=2.0)
            self.stats.ended = time.monotonic()
            for sink in (self.json, self.pictures, self.videos):
                if sink is not None:
                    sink.close(keep=keep)


def _declared_fps(spec: SourceSpec) -> float | None:
    """The frame rate a video file declares (for its annotated copy); None for live sources (30 is used)."""
    if spec.kind != "video":
        return None
    import cv2

    cap = cv2.VideoCapture(spec.uri)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return fps if 0 < fps < 1000 else None


def default_batch(model, specs: Sequence[SourceSpec], batch: int | None) -> int:
    """The batch a run uses: ``batch`` if given, else the model's static batch, else one row per stream (at most
    ``DEFAULT_MAX_BATCH``; a dynamic engine's profile max caps it)."""
    static = model.static_batch if isinstance(model, Runner) else None
    if static:
        return static
    if batch:
        return batch
    cap = DEFAULT_MAX_BATCH
    profiles = getattr(model, "profiles", None) or {}
    for shapes in profiles.values():
        cap = min(cap, int(shapes[2][0]))
    return max(1, min(len(specs), cap))

