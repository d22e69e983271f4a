"""Where a streaming run's results go as they arrive: JSON lines (written and flushed per result), annotated
pictures (image sources) and one annotated video per stream (video and live sources).

Every file follows ``owned``: a path is written only when it is free or trtbuild's own unchanged file; a picture or
video whose name a file of the user's holds goes beside it (``NAME_2``). Each sink ends one of two ways:
``close(keep=True)`` — the run finished or was stopped by Ctrl-C / SIGTERM (how a live run ends): the JSON lines so
far stay (complete lines only), each video is finalised into a valid file; ``close(keep=False)`` — the run failed:
what this run created is removed, and nothing that existed before it is touched.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import cv2
import numpy as np

from .. import owned
from ..artifacts import atomic_path, temp_prefix

LIVE_FPS = 30.0  # frame rate written into the annotated video of a source that does not declare one


def free_name(folder: Path, base: str, suffix: str, taken: set[str]) -> Path:
    """``folder/base+suffix``, or ``base_2+suffix``, … : the first name neither used in this run (``taken``) nor held
    by a file that is not trtbuild's (an earlier run's unchanged output is replaced)."""
    name, n = f"{base}{suffix}", 1
    while name in taken or ((folder / name).exists() and not owned.is_ours(folder / name)):
        n += 1
        name = f"{base}_{n}{suffix}"
    taken.add(name)
    return folder / name


class JsonLines:
    """One JSON object per result, written and flushed as it comes (``tail -f`` shows a live run)."""

    def __init__(self, path: Path, overwrite: bool = False):
        self.path = Path(path)
        self.created = not owned.check_replaceable(self.path, overwrite)
        self._file = open(self.path, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self, keep: bool = True) -> None:
        if self._file.closed:
            return
        self._file.close()
        if keep:
            owned.record([self.path])
        elif self.created:
            owned.remove_created([self.path])


class Pictures:
    """Annotated pictures of image sources: ``<stem>.jpg``, each written through a temporary file and renamed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.created: list[Path] = []
        self._taken: set[str] = set()

    def write(self, path: str, picture: np.ndarray) -> Path:
        dest = free_name(self.folder, Path(path).stem, ".jpg", self._taken)
        if not dest.exists():
            self.created.append(dest)  # before the write: a failure after the rename still finds it
        with atomic_path(dest, suffix=".jpg") as tmp:
            if not cv2.imwrite(str(tmp), picture):
                raise OSError(errno.EIO, "could not write the annotated picture", str(dest))
        return dest

    def close(self, keep: bool = True) -> None:
        if not keep:
            owned.remove_created(self.created)
            self.created = []


class Videos:
    """One annotated video per stream, ``<name>.mp4`` (OpenCV's mp4v), written to a temporary file beside it and
    renamed into place when the run ends (finished or interrupted: a valid video of the frames so far)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._open: dict[int, tuple[cv2.VideoWriter, Path, Path, tuple[int, int]]] = {}
        self._taken: set[str] = set()
        self.written: list[Path] = []

    def write(self, stream: int, name: str, fps: float | None, picture: np.ndarray) -> Path:
        """Append ``picture`` to stream ``stream``'s video (a frame of another size is scaled to the first's)."""
        if stream not in self._open:
            dest = free_name(self.folder, name, ".mp4", self._taken)
            tmp = dest.with_name(f"{temp_prefix(dest.name)}w.mp4")
            size = (picture.shape[1], picture.shape[0])
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps or LIVE_FPS, size)
            if not writer.isOpened():
                raise OSError(errno.EIO, "cannot open a video writer (mp4v)", str(dest))
            self._open[stream] = (writer, tmp, dest, size)
        writer, _, dest, size = self._open[stream]
        if (picture.shape[1], picture.shape[0]) != size:
            picture = cv2.resize(picture, size)
        writer.write(picture)
        return dest

    def close(self, keep: bool = True) -> None:
        for writer, tmp, dest, _ in self._open.values():
            writer.release()
            if keep and tmp.exists():
                owned.replace(tmp, dest)
                self.written.append(dest)
            else:
                Path(tmp).unlink(missing_ok=True)
        self._open = {}

