"""``trtbuild infer``: images, folders, videos, URLs, webcams (or a ``.streams`` list of them) through any model
artifact → JSON lines, annotated pictures / videos, on the streaming pipeline (``trtbuild.stream``).

One JSON object per image or frame, written as it comes: ``path`` (plus ``frame`` for video and live sources),
``width``, ``height``, ``detections`` = ``[{box: [x1, y1, x2, y2], score, class_id, class_name}]`` in original
pixels, then the stream's fields ``stream`` (its index), ``captured`` (unix time), ``latency_ms`` (capture → result),
and ``saved`` (the annotated picture or video) with ``--save``. Unreadable files in a folder are reported and
skipped; one stream ending or failing never stops the others.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path

from .. import owned
from ..artifacts import output_folders
from ..config import StreamConfig
from ..errors import InputError
from ..serve.triton_client import TritonClient
from ..stream import Hooks, build_pipeline, open_models, parse_sources
from ..stream.sources import SourceSpec
from ..trt.host import Host
from ..vision.io import is_image, list_images
from .remote import TritonPredictor


@contextlib.contextmanager
def open_model(model: str | os.PathLike, config: StreamConfig, triton: str | None = None,
               host: Host | None = None) -> Iterator[list]:
    """The models of a run: local runners (``stream.open_models``) or, with ``triton`` (a server URL), the model of
    that name deployed there."""
    if triton:
        with TritonClient(triton, str(model)) as client:
            yield [TritonPredictor(client, conf=config.conf, iou=config.iou, max_det=config.max_det,
                                   batch=config.batch)]
    else:
        with open_models(model, config, host) as models:
            yield models


def check_outputs(model: Path | str, specs: list[SourceSpec], json_path: Path | None, save: Path | None,
                  triton: str | None, overwrite: bool) -> None:
    """Refuse, before any work, outputs that would touch the inputs: ``save`` that is (or holds) a source, a JSON
    file that is the model, a source or one of its images, or an existing JSON file trtbuild did not write."""
    files = [Path(s.uri) for s in specs if s.kind in ("image", "folder", "video")]
    if save is not None:
        for source in files:
            if owned.inside(source, save) or (source.is_dir() and owned.same_file(save, source)):
                raise InputError(f"save_dir={save}: holds the source {source}; annotated pictures go into a folder "
                                 "of their own (e.g. save_dir=annotated)", param="save_dir")
    if json_path is None:
        return
    inputs = files + ([Path(model)] if not triton else [])
    inputs += [p for source in files if source.is_dir() for p in source.iterdir() if is_image(p)]
    owned.refuse_input_as_output([json_path], inputs, param="json_path")
    owned.check_replaceable(json_path, overwrite)


def _check_folders(specs: list[SourceSpec]) -> None:
    """A folder without images is an error before the model is loaded (the other kinds are checked by their reader)."""
    for s in specs:
        if s.kind == "folder" and not list_images(s.uri):
            what = "is empty" if not any(Path(s.uri).iterdir()) else "holds no image files"
            raise InputError(f"folder {s.uri} {what}; give an image, a video, or a folder of images")


def run_infer(model: str | os.PathLike, source, config: StreamConfig = StreamConfig(), *, host: Host | None = None,
              triton: str | None = None, hooks: Hooks | None = None) -> dict:
    """Run detection over ``source`` (one source, a list, or a ``.streams`` file) as ``config`` says; returns a
    summary and writes JSON lines, pictures and videos as they come.

    ``triton``: a server URL (``grpc://host:8001``, ``http://host:8000``); ``model`` is then the name of a model
    deployed there by ``trtbuild deploy triton``. ``hooks``: each JSON record goes to ``hooks.on_record`` as soon as
    it is made (without one, the records are kept in the summary's ``records``), what happens to a source to
    ``hooks.on_event``, the figures twice a second to ``hooks.on_status``. Outputs follow ``owned``; a failed run
    removes what it created, an interrupted one (Ctrl-C, SIGTERM) keeps the JSON lines so far and finalises its
    videos.
    """
    cfg, hooks = config, hooks or Hooks()
    specs = parse_sources(source)  # validates the sources before any model is loaded
    _check_folders(specs)
    check_outputs(model, specs, cfg.json_path, cfg.save_dir, triton, cfg.overwrite)
    records: list[dict] = []
    failures: list[str] = []
    detections = 0

    def event(stream: int, kind: str, text: str) -> None:
        if kind == "failed":
            failures.append(text)
        if hooks.on_event is not None:
            hooks.on_event(stream, kind, text)

    folders = [f for f in (cfg.save_dir, cfg.json_path.parent if cfg.json_path else None) if f is not None]
    with output_folders(*folders), open_model(model, cfg, triton, host) as models:
        pipeline = build_pipeline(models, specs, cfg, replace(hooks, on_event=event))
        names = pipeline.names
        for result in pipeline.results():
            detections += len(result.detections)
            rec = result.to_record(names, specs[result.stream].kind not in ("image", "folder"))
            if hooks.on_record is not None:
                hooks.on_record(rec)
            else:
                records.append(rec)
        snapshot = pipeline.snapshot()
    frames = snapshot["frames"]
    if failures and frames == 0:
        raise InputError(failures[0])
    stages = {r["stage"]: r["ms_per_frame"] for r in snapshot["stages"]}
    return {
        "images": frames,
        "detections": detections,
        "skipped": sum(s["skipped"] for s in snapshot["streams"]),
        "failures": failures,
        "records": records,
        "video": any(s.kind not in ("image", "folder") for s in specs),
        "ms_per_image": {"preprocess": stages["decode"] + stages["letterbox"], "infer": stages["infer"],
                         "postprocess": stages["sink"]},
        "stats": snapshot,
    }
