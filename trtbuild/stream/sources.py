"""What a stream reads from: images, folders, video files, RTSP / HTTP(S) URLs, webcams, a ``.streams`` list of them,
and (from Python) any iterable of frames; and the reader that turns one source into timed frames.

``parse_sources`` decides a source's kind from its text alone (no capture is opened): a URL scheme, a webcam index,
an image / video suffix, a folder, or a text file with one source per line (ultralytics' ``.streams`` convention).
A *live* source (a URL, a webcam) cannot be paused: when the pipeline falls behind, its newest frame wins and the
older ones are dropped (counted); when it drops, the reader reconnects with backoff. A file is read completely,
frame after frame, waiting for the pipeline: nothing is dropped. ``Reader.run`` is the decode loop of one source
(OpenCV's capture and NumPy release the GIL, so one thread per source decodes in parallel).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..vision.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_images, read_image

URL_RE = re.compile(r"^(rtsps?|rtmp|https?|tcp|udp)://", re.I)
STREAM_LISTS = (".streams", ".txt")
OPEN_TIMEOUT_MS = 5000  # a live source that does not answer within this is retried (backoff) or reported
READ_TIMEOUT_MS = 5000  # a live source that sends nothing for this long is reconnected
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between reconnection attempts (the last one repeats)


@dataclass(frozen=True)
class SourceSpec:
    """One stream: ``uri`` as given, ``kind`` (image, folder, video, url, webcam, frames) and whether it is live."""

    id: int
    uri: str
    kind: str
    live: bool
    frames: Iterable[np.ndarray] | None = field(default=None, compare=False, repr=False)  # kind "frames" only

    @property
    def name(self) -> str:
        """A short name for status lines and output files: the file stem, the URL's last part, ``cam0``."""
        if self.kind == "webcam":
            return f"cam{self.uri}"
        if self.kind in ("url", "frames"):
            tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.uri.rstrip("/").rsplit("/", 1)[-1]) or f"stream{self.id}"
            return tail
        return Path(self.uri).stem or f"stream{self.id}"


def _kind(text: str) -> tuple[str, bool]:
    if URL_RE.match(text):
        return "url", True
    if re.fullmatch(r"\d{1,2}", text):
        return "webcam", True
    path = Path(text)
    if path.is_dir():
        return "folder", False
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError(f"{text}: no such file or folder; give an image, a video, a folder of images, a URL "
                         "(rtsp://, http://), a webcam index (0) or a .streams file with one source per line")
    if suffix in IMAGE_SUFFIXES:
        return "image", False
    if suffix in VIDEO_SUFFIXES:
        return "video", False
    raise InputError(f"{text}: neither an image ({', '.join(sorted(IMAGE_SUFFIXES))}) nor a video "
                     f"({', '.join(sorted(VIDEO_SUFFIXES))}), nor a .streams list")


def _stream_list(path: Path) -> list[str]:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines()]
    items = [ln for ln in lines if ln and not ln.startswith("#")]
    if not items:
        raise InputError(f"{path}: lists no source; write one image, video, folder, URL or webcam index per line")
    base = path.parent
    return [s if URL_RE.match(s) or re.fullmatch(r"\d{1,2}", s) or Path(s).is_absolute() else str(base / s)
            for s in items]


def parse_sources(sources: str | os.PathLike | Sequence) -> list[SourceSpec]:
    """The streams named by ``sources``: one source, a list of them, or a ``.streams`` / ``.txt`` file listing one
    per line (relative paths are relative to that file). A list item may also be an iterable of BGR frames
    (Python only: a synthetic or already-decoded stream). InputError for a source that cannot be one."""
    items = list(sources) if isinstance(sources, (list, tuple)) else [sources]
    if len(items) == 1 and isinstance(items[0], (str, os.PathLike)):
        path = Path(items[0])
        if path.suffix.lower() in STREAM_LISTS and path.is_file():
            items = _stream_list(path)
    specs = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            text = str(item)
            kind, live = _kind(text)
            specs.append(SourceSpec(len(specs), text, kind, live))
        else:  # an iterable of frames
            specs.append(SourceSpec(len(specs), f"frames{len(specs)}", "frames", bool(getattr(item, "live", False)),
                                    frames=item))
    if not specs:
        raise InputError("no source given; give an image, a video, a folder, a URL, a webcam index or a .streams file")
    return specs


def frame_size(spec: SourceSpec) -> tuple[int, int] | None:
    """(H, W) of a video file's frames or of a single image, read from the file; None for anything else (a folder
    may mix sizes, a live source says it only once connected)."""
    if spec.kind == "video":
        cap = cv2.VideoCapture(spec.uri)
        try:
            h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        finally:
            cap.release()
        return (h, w) if h > 0 and w > 0 else None
    if spec.kind == "image":
        image = read_image(spec.uri)
        return None if image is None else image.shape[:2]
    return None


@dataclass
class Frame:
    """One decoded frame: the stream it came from, its index in that stream, when it was captured (wall clock and
    monotonic), where it came from (a file path, or the source URI) and the BGR pixels."""

    stream: int
    index: int
    captured: float  # time.time()
    captured_mono: float  # time.monotonic(), for latencies
    path: str
    image: np.ndarray
    decode_s: float = 0.0  # seconds the reader spent reading and decoding it
    live: bool = False  # from a source that cannot wait (its newest frame wins when the pipeline is full)


class Reader:
    """Decode one source into ``emit(frame) -> bool`` (False: the frame was dropped); report what happens to the
    source through ``event(stream, kind, text)``: ``skip`` (an unreadable file), ``lost``, ``reconnected``,
    ``short`` (a video that ended early), ``failed`` (given up), ``ended``."""

    def __init__(self, spec: SourceSpec, emit: Callable[[Frame], bool], event: Callable[[int, str, str], None],
                 stop: threading.Event, vid_stride: int = 1, reconnect_for: float | None = None,
                 decoder_threads: int = 0):
        self.spec, self.emit, self.event, self.stop = spec, emit, event, stop
        self.decoder_threads = decoder_threads  # FFmpeg's threads per capture (0: its own choice); with several
        #                                         streams 1 each: the streams are the parallelism
        self.vid_stride = max(1, int(vid_stride))
        self.reconnect_for = reconnect_for  # seconds a lost live source is retried before it is given up (None: ever)
        self.index = 0
        self.live = spec.live  # a URL that turns out to be a finite video (a frame count) is read like a file

    # -- the loop per kind
    def run(self) -> None:
        kind = self.spec.kind
        try:
            if kind in ("image", "folder"):
                self._images()
            elif kind == "frames":
                self._frames(self.spec.frames or ())
            elif kind == "video":
                self._video(self.spec.uri)
            else:
                self._live()
        except Exception as exc:  # one source failing never stops the others
            self.event(self.spec.id, "failed", f"{type(exc).__name__}: {exc}")
            return
        self.event(self.spec.id, "ended", f"{self.index} frame(s)")

    def _send(self, image: np.ndarray, path: str, decode_s: float, index: int | None = None) -> bool:
        """Hand one frame on; ``index``: its number in the file (a video read with a stride), else the count."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        frame = Frame(self.spec.id, self.index if index is None else index, time.time(), time.monotonic(), path,
                      image, decode_s, self.live)
        self.index += 1
        return self.emit(frame)

    def _images(self) -> None:
        spec = self.spec
        if spec.kind == "image":
            paths = [Path(spec.uri)]
        else:
            paths = list_images(spec.uri, on_skip=lambda p, why: self.event(spec.id, "skip", f"{p}: {why}"))
            if not paths:
                raise InputError(f"folder {spec.uri} holds no image files")
        for p in paths:
            if self.stop.is_set():
                return
            t0 = time.perf_counter()
            image = read_image(p)
            if image is None:
                if spec.kind == "image":
                    raise InputError(f"cannot read image {p}: the file is unreadable or not a valid image")
                self.event(spec.id, "skip", f"{p}: cannot be decoded as an image")
                continue
            self._send(image, str(p), time.perf_counter() - t0)

    def _frames(self, frames: Iterable[np.ndarray]) -> None:
        for image in frames:
            if self.stop.is_set():
                return
            self._send(np.asarray(image), self.spec.uri, 0.0)

    def _video(self, uri: str) -> None:
        cap = cv2.VideoCapture(uri, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, self.decoder_threads])
        try:
            if not cap.isOpened():
                raise InputError(f"cannot open video {uri}: not a video OpenCV can decode")
            declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            read = self._read_capture(cap, uri, numbered=True)
            if read == 0:
                raise InputError(f"video {uri} has no readable frames")
            if read < declared and not self.stop.is_set():
                self.event(self.spec.id, "short", f"{uri}: frames {read}-{declared - 1} could not be read: the file declares "
                                                  f"{declared} frames and decoding stopped after {read} (damaged or "
                                                  "truncated video)")
        finally:
            cap.release()

    def _read_capture(self, cap: cv2.VideoCapture, uri: str, numbered: bool) -> int:
        """Hand on every ``vid_stride``-th frame of ``cap`` until it ends or fails (or the stop event); returns how
        many frames it read. ``numbered``: a frame's index is its number in the file (else the count sent)."""
        read = 0
        while not self.stop.is_set():
            t0 = time.perf_counter()
            if not cap.grab():
                break
            read += 1
            if (read - 1) % self.vid_stride:
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                break
            self._send(image, uri, time.perf_counter() - t0, read - 1 if numbered else None)
        return read

    # -- live sources
    def _open(self) -> cv2.VideoCapture | None:
        uri = int(self.spec.uri) if self.spec.kind == "webcam" else self.spec.uri
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS,
                  cv2.CAP_PROP_N_THREADS, self.decoder_threads]
        cap = cv2.VideoCapture(uri, cv2.CAP_ANY, params)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _live(self) -> None:
        """Read until the stop event; a lost source is reopened with backoff (``reconnect_for`` seconds at most,
        counted from the loss). A finite file behind a URL (its container declares a frame count) ends normally."""
        spec = self.spec
        cap, first = self._open(), True
        lost_at = None if cap is not None else time.monotonic()
        if cap is None:
            self.event(spec.id, "lost", f"cannot connect within {OPEN_TIMEOUT_MS / 1000:g} s; retrying")
        attempt = 0
        while not self.stop.is_set():
            if cap is None:
                if self.reconnect_for is not None and time.monotonic() - lost_at > self.reconnect_for:
                    what = "unreachable" if first else "lost"
                    raise ConnectionError(f"{spec.uri}: {what} and not back within {self.reconnect_for:g} s")
                self.stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
                cap = self._open()
                if cap is not None:
                    self.event(spec.id, "reconnected", f"after {time.monotonic() - lost_at:.1f} s, "
                                                       f"{attempt} attempt(s)")
                continue
            declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.live = declared <= 0
            read = self._read_capture(cap, spec.uri, numbered=False)
            if read:
                first, attempt = False, 0
            cap.release()
            cap = None
            if self.stop.is_set() or (declared > 0 and read >= declared):
                return  # stopped, or a finite video over HTTP read to its end
            lost_at = time.monotonic()
            self.event(spec.id, "lost", f"no frame for {READ_TIMEOUT_MS / 1000:g} s or the connection closed; "
                                        "reconnecting")

