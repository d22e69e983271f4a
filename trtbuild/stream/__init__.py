"""Video and cameras: many streams into one model, pipelined and batched, with memory bounded (see ``pipeline``).

    for result in trtbuild.stream("engines/yolov8n.fp16.engine", ["cam.streams"]):
        print(result.stream, result.frame, len(result.detections), f"{result.latency_ms:.0f} ms")

``sources``: what ``sources.parse_sources`` takes (a file, a folder, a URL, a webcam index, a ``.streams`` list, or
a list of those and of frame iterables). ``model``: a model file (opened here: one runner per device in
``config.devices``), an open ``Runner``, or an object with ``predict(frames)`` and ``names``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from ..config import StreamConfig
from ..onnx.modelinfo import DEFAULT_IMGSZ
from ..runtime.base import Runner
from ..runtime.onnx import OnnxRunner
from ..runtime.open import open_runner
from ..trt.host import Host
from ..vision.batch import check_batch_memory
from ..vision.letterbox import rect_hw
from .pipeline import Hooks, Pipeline, StreamResult, default_batch
from .sources import SourceSpec, frame_size, parse_sources
from .stats import status_lines

__all__ = ["Hooks", "Pipeline", "SourceSpec", "StreamConfig", "StreamResult", "open_models", "parse_sources", "run_hw", "status_lines",
           "stream"]


@contextlib.contextmanager
def open_models(model, config: StreamConfig = StreamConfig(), host: Host | None = None) -> Iterator[list]:
    """The models a run drives: ``model`` itself when it is already open, else per device of ``config.devices``
    one engine with ``config.contexts`` execution contexts (TensorRT: ``TrtRunner.clone``, the weights loaded
    once); one ONNX Runtime session otherwise, its idle threads not spinning so the decoders get the cores."""
    if not isinstance(model, (str, os.PathLike)):
        yield [model]
        return
    with contextlib.ExitStack() as stack:
        suffix = str(model).lower().rsplit(".", 1)[-1]
        if suffix == "onnx":
            if not os.path.isfile(model):
                open_runner(model)  # the one-line "no such model file" error
            yield [stack.enter_context(OnnxRunner(model, spinning=False))]
            return
        runners = []
        for d in config.devices or (None,):  # one runner per GPU, and a clone per further batch in flight
            runner = stack.enter_context(open_runner(model, host=host, **({} if d is None else {"device": d})))
            runners += [runner] + [stack.enter_context(runner.clone()) for _ in range(config.contexts - 1)]
        yield runners


def run_hw(model, specs: Sequence[SourceSpec]) -> tuple[int, int]:
    """The input size a run uses: the model's; for a model with a dynamic H and W whose sources all have one known
    frame size, the smallest stride-aligned rectangle that holds it (ultralytics' rectangular inference)."""
    if not isinstance(model, Runner):
        return DEFAULT_IMGSZ
    info = model.info
    hw = info.run_hw()
    if not info.dynamic_hw:
        return hw
    sizes = {frame_size(s) for s in specs}
    if len(sizes) == 1 and None not in sizes:
        return rect_hw(sizes.pop(), hw, info.stride)
    return hw


def build_pipeline(models: Sequence, specs: Sequence[SourceSpec], config: StreamConfig,
                   hooks: Hooks | None = None) -> Pipeline:
    """A ``Pipeline`` for ``models`` (as ``open_models`` gives them) over ``specs``, set up from ``config``."""
    first = models[0]
    hw = run_hw(first, specs)
    batch = default_batch(first, specs, config.batch)
    check_batch_memory(batch, hw, getattr(first, "path", "the model"), buffers=config.buffers)
    return Pipeline(models, specs, config, hw=hw, batch=batch, hooks=hooks)


def stream(model, sources, config: StreamConfig = StreamConfig(), *, host: Host | None = None,
           hooks: Hooks | None = None) -> Iterator[StreamResult]:
    """Yield a ``StreamResult`` per frame of every source as it comes (each stream's frames in order). Stop early by
    leaving the loop; Ctrl-C ends a live run the same way. ``hooks``: what the caller hears meanwhile (``Hooks``)."""
    specs = parse_sources(sources)
    with open_models(model, config, host) as models:
        pipeline = build_pipeline(models, specs, config, hooks)
        yield from pipeline.results()
