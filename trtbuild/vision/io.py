"""Read inference inputs: one image, a folder of images (sorted, bad files skipped and reported) or a video.

Frames come out as BGR uint8 (H, W, 3) arrays, the layout ``letterbox`` takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".tif", ".tiff", ".pbm", ".pgm", ".ppm", ".pnm"}
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
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        return None
    return img


def iter_video(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of a video as ``("<path>#<frame index>", frame)``; InputError if it cannot be opened."""
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"cannot open video {path}: not a video OpenCV can decode")
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
    finally:
        cap.release()


def list_images(folder: str | Path, on_skip: SkipCallback | None = None) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; other files go to ``on_skip(path, reason)``.

    Raises InputError when the folder holds no image file at all.
    """
    folder = Path(folder)
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    images = []
    for p in entries:
        if p.is_dir():
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        elif on_skip is not None:
            on_skip(p, f"not an image (suffix '{p.suffix or '(none)'}')")
    if not images:
        what = "is empty" if not entries else f"holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        raise InputError(f"folder {folder} {what}; give an image, a video, or a folder of images")
    return images


def iter_sources(path: str | Path, on_skip: SkipCallback | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(source_id, frame_bgr)`` for an image file, a folder of images or a video.

    ``source_id`` is the image's path, or ``"<video path>#<frame index>"`` for video frames. In a folder,
    files that are not images or cannot be decoded are passed to ``on_skip(path, reason)`` and skipped;
    a single image or video that cannot be read raises InputError, as does a missing path or an image-less folder.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        for p in list_images(path, on_skip):
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
        yield from iter_video(path)
    else:
        raise InputError(
            f"input {path} is neither an image ({', '.join(sorted(IMAGE_SUFFIXES))}) "
            f"nor a video ({', '.join(sorted(VIDEO_SUFFIXES))})"
        )
