"""``trtbuild infer``: an image, a folder or a video through any model artifact → JSON lines + pictures.

One JSON object per image or frame: ``path`` (plus ``frame`` for video), ``width``, ``height`` and
``detections`` = ``[{box: [x1, y1, x2, y2], score, class_id, class_name}]`` in original pixels, and ``saved``
(the annotated picture's path) with ``--save``. Unreadable files in a folder are reported and skipped; the run
never stops for them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .. import owned
from ..console import progress_bar
from ..artifacts import atomic_path, output_folders
from ..errors import InputError
from ..runtime.open import open_runner
from ..serve.triton_client import TritonClient
from ..trt.host import Host
from ..vision.draw import draw_detections
from ..vision.io import VIDEO_SUFFIXES, is_image, iter_sources, list_images
from .predictor import Predictor
from .remote import TritonPredictor


def _count_frames(source: Path) -> int | None:
    if source.is_dir():
        return len(list_images(source)) or None
    if source.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(source))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        return n or None
    return 1


def _record(source_id: str, image, det, names) -> dict:
    path, _, frame = source_id.partition("#")
    rec = {"path": path}
    if frame:
        rec["frame"] = int(frame)
    h, w = image.shape[:2]
    rec.update(width=w, height=h, detections=det.to_list(names))
    return rec


class PictureFolder:
    """Where ``--save`` puts annotated pictures: ``<stem>.jpg`` (``<stem>_<frame>.jpg`` for video), each written
    through a temporary file and renamed into place. A name held by a file trtbuild did not write (or one changed
    since) is never replaced: the picture goes beside it as ``<stem>_2.jpg``, … (``owned``); two sources with one
    stem in this run get distinct names too. ``rollback`` (a failed or interrupted run) removes the pictures this
    run created and nothing else."""

    RECORD_EVERY = 64  # pictures per manifest update: a long video does not rewrite the record for every frame

    def __init__(self, folder: Path):
        self.folder = folder
        self.created: list[Path] = []
        self._taken: set[str] = set()
        self._unrecorded: list[Path] = []

    def _name(self, source_id: str) -> Path:
        path, _, frame = source_id.partition("#")
        stem = Path(path).stem
        base = f"{stem}_{int(frame):06d}" if frame else stem
        name, n = f"{base}.jpg", 1
        while name in self._taken or ((self.folder / name).exists() and not owned.is_ours(self.folder / name)):
            n += 1
            name = f"{base}_{n}.jpg"
        self._taken.add(name)
        return self.folder / name

    def write(self, source_id: str, picture: np.ndarray) -> Path:
        dest = self._name(source_id)
        if not dest.exists():
            self.created.append(dest)  # before the write: a failure after the rename still finds it
        with atomic_path(dest, suffix=".jpg") as tmp:
            if not cv2.imwrite(str(tmp), picture):
                raise OSError(errno.EIO, "could not write the annotated picture", str(dest))
        return dest

    def rollback(self) -> None:
        owned.remove_created(self.created)
        self.created = []


@contextlib.contextmanager
def open_predictor(model: str | os.PathLike, triton: str | None = None, host: Host | None = None,
                   **options) -> Iterator[Predictor | TritonPredictor]:
    """A predictor for ``model``: a local file's runner, or with ``triton`` (a server URL) the deployed model of
    that name on the server; closed on exit."""
    if triton:
        with TritonClient(triton, str(model)) as client:
            yield TritonPredictor(client, **options)
    else:
        with open_runner(model, host=host) as runner:
            yield Predictor(runner, **options)


def _predict_all(predictor, first, frames, pictures: PictureFolder | None, sink, total: int | None,
                 progress: bool, desc: str) -> dict:
    """Detections of every frame, in batches of the predictor's size, each record handed to ``sink`` as it comes;
    annotated pictures into ``pictures``. Returns the counts."""
    counts = {"images": 0, "detections": 0}
    bar = progress_bar(total=total, desc=desc, unit="img", leave=False) if progress else None

    def flush(chunk):
        for (sid, image), det in zip(chunk, predictor.predict([im for _, im in chunk])):
            rec = _record(sid, image, det, predictor.names)
            if pictures is not None:
                rec["saved"] = str(pictures.write(sid, draw_detections(image, det, predictor.names)))
            counts["images"] += 1
            counts["detections"] += len(rec["detections"])
            sink(rec)
        if bar is not None:
            bar.update(len(chunk))

    chunk = [first] if first is not None else []
    for item in frames:
        if len(chunk) == predictor.batch:
            flush(chunk)
            chunk = []
        chunk.append(item)
    if chunk:
        flush(chunk)
    if bar is not None:
        bar.close()
    return counts


def check_outputs(model: Path | str, source: Path, json_path: Path | None, save: Path | None, triton: str | None,
                  overwrite: bool) -> None:
    """Refuse, before any work, outputs that would touch the inputs: ``save`` that is (or holds) the source, a JSON
    file that is the model, the source or one of its images, or an existing JSON file trtbuild did not write."""
    if save is not None and source.exists() and (owned.inside(source, save) or
                                                  (source.is_dir() and owned.same_file(save, source))):
        raise InputError(f"save_dir={save}: holds the source {source}; annotated pictures go into a folder of "
                         "their own (e.g. save_dir=annotated)", param="save_dir")
    if json_path is None:
        return
    inputs = [source] + ([Path(model)] if not triton else [])
    if source.is_dir():
        inputs += [p for p in source.iterdir() if is_image(p)]
    owned.refuse_input_as_output([json_path], inputs, param="json_path")
    owned.check_replaceable(json_path, overwrite)


def run_infer(
    model: str | os.PathLike,
    source: str | os.PathLike,
    json_path: str | os.PathLike | None = None,
    save_dir: str | os.PathLike | None = None,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    batch: int | None = None,
    progress: bool = True,
    on_skip: Callable[[Path, str], None] | None = None,
    host: Host | None = None,
    triton: str | None = None,
    on_record: Callable[[dict], None] | None = None,
    overwrite: bool = False,
) -> dict:
    """Run detection over ``source``; returns a summary and (optionally) writes JSON lines and pictures.

    ``triton``: a server URL (``grpc://host:8001``, ``http://host:8000``); ``model`` is then the name of a model
    deployed there by ``trtbuild deploy triton``. Each record goes to ``on_record`` as soon as it is made (else it
    is kept in the summary's ``records``). The JSON file is written through a temporary file renamed at the end:
    an interrupted run leaves no partial file. Outputs follow ``owned``: an existing JSON file or picture is
    replaced only if trtbuild wrote it and it is unchanged (the JSON file: or with ``overwrite``; a picture whose
    name is taken goes beside it), and a failed run removes only the files it created.
    """
    source = Path(source)
    skipped: list[tuple[str, str]] = []

    def skip(path: Path, reason: str) -> None:
        skipped.append((str(path), reason))
        if on_skip:
            on_skip(path, reason)

    save = Path(save_dir) if save_dir else None
    json_path = Path(json_path) if json_path else None
    frames = iter_sources(source, on_skip=skip)  # validates the source before any model is loaded
    first = next(frames, None)
    check_outputs(model, source, json_path, save, triton, overwrite)
    pictures = PictureFolder(save) if save else None
    records: list[dict] = []
    # the output folders are checked before the work; a failure removes the pictures this run created and the
    # folders it created
    with output_folders(*([save] if save else []), *([json_path.parent] if json_path else [])), \
            contextlib.ExitStack() as stack:
        try:
            lines = stack.enter_context(_json_lines(json_path, overwrite)) if json_path else None

            def sink(rec: dict) -> None:
                if lines is not None:
                    lines.write(json.dumps(rec) + "\n")
                if on_record is not None:
                    on_record(rec)
                else:
                    records.append(rec)

            with open_predictor(model, triton, host, conf=conf, iou=iou, max_det=max_det, batch=batch) as predictor:
                total = _count_frames(source) if progress else None
                counts = _predict_all(predictor, first, frames, pictures, sink, total, progress,
                                      f"infer {source.name}")
        except BaseException:
            if pictures is not None:
                pictures.rollback()
            raise
    return {**counts, "skipped": skipped, "records": records, "ms_per_image": predictor.times.per_image_ms(),
            "video": source.suffix.lower() in VIDEO_SUFFIXES}


@contextlib.contextmanager
def _json_lines(path: Path, overwrite: bool):
    """A text file for JSON lines that becomes ``path`` only when the run completes."""
    with atomic_path(path, suffix=".jsonl", overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            yield f
