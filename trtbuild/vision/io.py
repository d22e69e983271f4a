"""Read inference inputs: one image, a folder of images (sorted, bad files skipped and reported) or a video.

Frames come out as BGR uint8 (H, W, 3) arrays, the layout ``letterbox`` takes. ``list_images`` is the one way
trtbuild lists image files (infer, bench, calibration, data sets), with one suffix set: what OpenCV decodes plus
what ultralytics' data loader lists (so a data set holds the images ``YOLO.val()`` scores).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from .letterbox import letterbox_batch

IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".tif", ".tiff", ".pbm", ".pgm", ".ppm", ".pnm",
     ".avif", ".dng", ".heic", ".heif", ".mpo"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg", ".ts", ".asf", ".gif"}
)

SkipCallback = Callable[[Path, str], None]


def read_image(path: str | Path) -> np.ndarray | None:
    """Decode an image file to BGR uint8 (H, W, 3); None if it cannot be read or decoded (never raises)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread on Windows
    except OSError:
        return None
    return decode_image(data)


def decode_image(data: bytes | np.ndarray) -> np.ndarray | None:
    """Decode encoded image bytes (JPEG, PNG, …) to BGR uint8 (H, W, 3); None if they are not an image."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data)
    if buf.size == 0:
        return None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        return None
    return img


def encode_png(frame: np.ndarray) -> bytes:
    """Lossless PNG bytes of a BGR frame: decoding them gives the same pixels back (frames sent to a server)."""
    ok, buf = cv2.imencode(".png", frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise InputError(f"cannot encode a frame of shape {frame.shape} as PNG")
    return buf.tobytes()


def iter_video(path: str | Path, on_skip: SkipCallback | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of a video as ``("<path>#<frame index>", frame)``; InputError if it cannot be opened. A video that
    ends before the frame count its container declares (damaged or truncated) is reported to
    ``on_skip(path, reason)`` after its last readable frame, never cut short silently."""
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"cannot open video {path}: not a video OpenCV can decode")
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            yield f"{path}#{index}", frame
            index += 1
        if index == 0:
            raise InputError(f"video {path} has no readable frames")
        if index < declared and on_skip is not None:
            on_skip(path, f"frames {index}-{declared - 1} could not be read: the file declares {declared} frames and "
                          f"decoding stopped after {index} (damaged or truncated video)")
    finally:
        cap.release()


def is_image(path: str | Path) -> bool:
    """Whether ``path`` has one of the image suffixes (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | Path, recursive: bool = False, on_skip: SkipCallback | None = None) -> list[Path]:
    """Image files in ``folder`` (``recursive``: and below it; hidden files and folders, trtbuild's record of the
    files it wrote among them, left out), sorted by path
    relative to ``folder``; other files go to ``on_skip(path, reason)``. May be empty: callers say what to do."""
    folder = Path(folder)
    if recursive:
        files = []
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            files += [Path(root) / n for n in names if not n.startswith(".")]
    else:
        files = [p for p in folder.iterdir() if not p.is_dir() and not p.name.startswith(".")]
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    images = []
    for p in files:
        if is_image(p):
            images.append(p)
        elif on_skip is not None:
            on_skip(p, f"not an image (suffix '{p.suffix or '(none)'}')")
    return images


_SOURCE_HINT = "give an image, a video, or a folder of images"


def iter_sources(path: str | Path, on_skip: SkipCallback | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(source_id, frame_bgr)`` for an image file, a folder of images or a video.

    ``source_id`` is the image's path, or ``"<video path>#<frame index>"`` for video frames. In a folder,
    files that are not images or cannot be decoded are passed to ``on_skip(path, reason)`` and skipped;
    a single image or video that cannot be read raises InputError, as does a missing path or an image-less folder.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; {_SOURCE_HINT}")
    if path.is_dir():
        images = list_images(path, on_skip=on_skip)
        if not images:
            what = ("is empty" if not any(path.iterdir())
                    else f"holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            raise InputError(f"folder {path} {what}; {_SOURCE_HINT}")
        for p in images:
            img = read_image(p)
            if img is None:
                if on_skip is not None:
                    on_skip(p, "cannot be decoded as an image")
                continue
            yield str(p), img
        return
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        img = read_image(path)
        if img is None:
            raise InputError(f"cannot read image {path}: the file is unreadable or not a valid image")
        yield str(path), img
    elif suffix in VIDEO_SUFFIXES:
        yield from iter_video(path, on_skip)
    else:
        raise InputError(
            f"input {path} is neither an image ({', '.join(sorted(IMAGE_SUFFIXES))}) "
            f"nor a video ({', '.join(sorted(VIDEO_SUFFIXES))})"
        )


def read_batch(paths: Sequence[str | Path], imgsz: tuple[int, int]) -> np.ndarray:
    """Letterboxed [N,3,H,W] float32 batch of the image files ``paths`` (the inference preprocessing)."""
    frames = []
    for p in paths:
        frame = read_image(p)
        if frame is None:
            raise InputError(f"image {p} cannot be read")
        frames.append(frame)
    if not frames:
        raise InputError("no images to run the model on")
    return letterbox_batch(frames, imgsz)[0]
