"""``trtbuild infer``: an image, a folder or a video through any model artifact → JSON lines + pictures.

One JSON object per image or frame: ``path`` (plus ``frame`` for video), ``width``, ``height`` and
``detections`` = ``[{box: [x1, y1, x2, y2], score, class_id, class_name}]`` in original pixels.
Unreadable files in a folder are reported and skipped; the run never stops for them.
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

from ..console import progress_bar
from ..artifacts import atomic_path, output_folders
from ..runtime.open import open_runner
from ..serve.triton_client import TritonClient
from ..trt.host import Host
from ..vision.draw import draw_detections
from ..vision.io import VIDEO_SUFFIXES, iter_sources, list_images
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


def _annotated_name(source_id: str, taken: set[str]) -> str:
    """``<stem>.jpg`` (``<stem>_<frame>.jpg`` for video); two sources with one stem (``a/x.png``, ``b/x.jpg``) get
    ``x.jpg`` and ``x_2.jpg``, so neither picture overwrites the other."""
    path, _, frame = source_id.partition("#")
    stem = Path(path).stem
    base = f"{stem}_{int(frame):06d}" if frame else stem
    name, n = f"{base}.jpg", 1
    while name in taken:
        n += 1
        name = f"{base}_{n}.jpg"
    taken.add(name)
    return name


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


def _predict_all(predictor, first, frames, save: Path | None, written: list[Path], total: int | None,
                 progress: bool, desc: str) -> list[dict]:
    """Detections of every frame, in batches of the predictor's size; annotated pictures into ``save`` (their
    paths appended to ``written``)."""
    records: list[dict] = []
    taken: set[str] = set()
    bar = progress_bar(total=total, desc=desc, unit="img", leave=False) if progress else None

    def flush(chunk):
        for (sid, image), det in zip(chunk, predictor.predict([im for _, im in chunk])):
            records.append(_record(sid, image, det, predictor.names))
            if save:
                out = save / _annotated_name(sid, taken)
                if not cv2.imwrite(str(out), draw_detections(image, det, predictor.names)):
                    raise OSError(errno.EIO, "could not write the annotated picture", str(out))
                written.append(out)
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
    return records


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
) -> dict:
    """Run detection over ``source``; returns a summary and (optionally) writes JSON lines and pictures.

    ``triton``: a server URL (``grpc://host:8001``, ``http://host:8000``); ``model`` is then the name of a model
    deployed there by ``trtbuild deploy triton``. The JSON file is written atomically at the end: an interrupted run leaves no partial file.
    """
    source = Path(source)
    skipped: list[tuple[str, str]] = []

    def skip(path: Path, reason: str) -> None:
        skipped.append((str(path), reason))
        if on_skip:
            on_skip(path, reason)

    frames = iter_sources(source, on_skip=skip)  # validates the source before any model is loaded
    first = next(frames, None)
    save = Path(save_dir) if save_dir else None
    written: list[Path] = []
    # the output folders are checked before the work; a failure removes the pictures written so far and the
    # folders this run created
    with output_folders(*([save] if save else []), *([Path(json_path).parent] if json_path else [])):
        try:
            with open_predictor(model, triton, host, conf=conf, iou=iou, max_det=max_det, batch=batch) as predictor:
                total = _count_frames(source) if progress else None
                records = _predict_all(predictor, first, frames, save, written, total, progress,
                                       f"infer {source.name}")
            if json_path:
                with atomic_path(json_path, suffix=".jsonl") as tmp:
                    with open(tmp, "w") as f:
                        for rec in records:
                            f.write(json.dumps(rec) + "\n")
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
    return {
        "images": len(records),
        "detections": sum(len(r["detections"]) for r in records),
        "skipped": skipped,
        "records": records,
        "ms_per_image": predictor.times.per_image_ms(),
    }
