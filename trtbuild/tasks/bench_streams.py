"""``trtbuild bench MODEL --streams SOURCES``: how fast the streaming pipeline turns N streams into results, against
what the model alone and what the host alone can do, measured in one run.

Four measurements on the same sources and the same batch size:

* **model only**: the model called back to back on a batch of letterboxed frames of the sources (no decoding, no
  postprocess), the better of a run before and a run after the others: the ceiling any pipeline can reach with this
  model and batch;
* **end to end**: the streaming pipeline with the real model: frames/s (from the first result to the last: the rate
  once running, without opening the sources and the first model call), and per stream the latency from capture to
  result (p50/p99); its ratio to the model-only figure says how much of the model's speed the pipeline keeps;
* **host capacity**: the same pipeline with a ``RecordedRunner`` (the model's real outputs, replayed instantly):
  everything real except the model — how fast this host can feed a model, with the per-stage table;
* **serial host path**: today's one-thread loop (decode → letterbox → recorded model → decode + NMS, one frame
  after another, one source after another) over the same frames: the baseline the pipelining is measured against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np

from ..config import StreamConfig
from ..errors import InputError
from ..runtime.base import Runner
from ..runtime.null import RecordedRunner
from ..stream import build_pipeline, open_models, parse_sources, run_hw
from ..stream.pipeline import default_batch
from ..stream.sources import SourceSpec
from ..trt.host import Host
from ..vision.decode import postprocess, postprocess_end2end
from ..vision.io import list_images, read_image
from ..vision.letterbox import letterbox_batch

MODEL_ONLY_SECONDS = 3.0  # the model-only loop runs at least this long (after warm-up)


def _first_frames(specs: Sequence[SourceSpec], n: int) -> list[np.ndarray]:
    """Up to ``n`` decoded frames, taken round-robin from the sources (files only)."""
    frames: list[np.ndarray] = []
    for spec in specs:
        if spec.kind == "video":
            cap = cv2.VideoCapture(spec.uri)
            ok, image = cap.read()
            cap.release()
            if ok:
                frames.append(image)
        elif spec.kind in ("image", "folder"):
            paths = [spec.uri] if spec.kind == "image" else list_images(spec.uri)[:1]
            frames += [im for im in map(read_image, paths) if im is not None]
    if not frames:
        raise InputError("the streaming benchmark: no frame could be read from the sources; give video files or images")
    return [frames[i % len(frames)] for i in range(n)]


def model_only(runner: Runner, batch: np.ndarray, warmup: int = 3) -> dict:
    """Frames/s of ``runner`` called back to back on ``batch`` for at least ``MODEL_ONLY_SECONDS``."""
    for _ in range(warmup):
        runner.infer(batch)
    calls, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < MODEL_ONLY_SECONDS or calls < 3:
        runner.infer(batch)
        calls += 1
    return {"calls": calls, "seconds": round(elapsed, 3), "fps": round(calls * len(batch) / elapsed, 2),
            "ms_per_call": round(1000 * elapsed / calls, 3)}


def serial_host_path(specs: Sequence[SourceSpec], runner: Runner, hw: tuple[int, int], batch: int,
                     end2end: bool) -> dict:
    """Today's serial loop over the file sources, one after another, with ``runner`` (a RecordedRunner)."""
    frames = busy = 0
    stages = dict.fromkeys(("decode", "letterbox", "infer", "post"), 0.0)
    buf = np.empty((batch, 3, *hw), np.float32)
    t_start = time.perf_counter()
    for spec in specs:
        if spec.kind != "video":
            continue
        cap = cv2.VideoCapture(spec.uri)
        chunk: list[np.ndarray] = []
        while True:
            t0 = time.perf_counter()
            ok, image = cap.read()
            stages["decode"] += time.perf_counter() - t0
            if ok:
                chunk.append(image)
            if chunk and (len(chunk) == batch or not ok):
                t1 = time.perf_counter()
                rows, infos = letterbox_batch(chunk, hw, out=buf[: len(chunk)])
                t2 = time.perf_counter()
                out = runner.infer(buf if runner.static_batch else rows)[0][: len(chunk)]
                t3 = time.perf_counter()
                if end2end:
                    postprocess_end2end(out, infos)
                else:
                    postprocess(out, infos)
                t4 = time.perf_counter()
                stages["letterbox"] += t2 - t1
                stages["infer"] += t3 - t2
                stages["post"] += t4 - t3
                frames += len(chunk)
                chunk = []
            if not ok:
                break
        cap.release()
    busy = time.perf_counter() - t_start
    return {"frames": frames, "seconds": round(busy, 3), "fps": round(frames / max(busy, 1e-9), 2),
            "ms_per_frame": {k: round(1000 * v / max(frames, 1), 3) for k, v in stages.items()}}


def _pipeline_run(models: list, specs: Sequence[SourceSpec], config: StreamConfig) -> dict:
    pipeline = build_pipeline(models, specs, config)
    frames = 0
    for _ in pipeline.results():
        frames += 1
    snap = pipeline.snapshot()
    snap["fps"] = snap["steady_fps"] or snap["fps"]  # first result to last: the rate, not the start-up
    lat = [s["latency_ms"] for s in snap["streams"]]
    snap["latency_ms"] = {"p50": round(float(np.median([x["p50"] for x in lat if x["p50"] is not None])), 2),
                          "p99": round(max(x["p99"] for x in lat if x["p99"] is not None), 2)}
    return snap


def run_bench_streams(model, sources, config: StreamConfig = StreamConfig(), host: Host | None = None,
                      serial: bool = True) -> dict:
    """The four measurements of the module docstring; returns the report (JSON-ready)."""
    specs = parse_sources(sources)
    if any(s.live for s in specs):
        raise InputError("the streaming benchmark measures files (videos, images): a live source has no end and no "
                         "repeatable content; record it to a file first")
    with open_models(model, config, host) as models:
        first = models[0]
        if not isinstance(first, Runner):
            raise InputError("the streaming benchmark needs a local model file (.onnx or .engine)")
        hw = run_hw(first, specs)
        batch, end2end = default_batch(first, specs, config.batch), first.info.end2end
        example = letterbox_batch(_first_frames(specs, batch), hw)[0]
        before = model_only(first, example)
        e2e = _pipeline_run(models, specs, config)
        after = model_only(first, example)  # the better of a run before and one after: the ceiling, not a bad moment
        only = max(before, after, key=lambda r: r["fps"])
        recorded = RecordedRunner(first, example)
    host_cap = _pipeline_run([recorded], specs, config)
    base = serial_host_path(specs, recorded, hw, batch, end2end) if serial else None
    report = {
        "stage": "bench-streams", "model": str(model), "backend": first.backend_name, "batch": batch,
        "imgsz": list(hw), "sources": [s.uri for s in specs],
        "model_only": only, "end_to_end": e2e, "host_capacity": host_cap, "serial_host_path": base,
        "ratios": {
            "end_to_end_vs_model_only": round(e2e["fps"] / max(only["fps"], 1e-9), 3),
            "host_pipelined_vs_serial": round(host_cap["fps"] / max(base["fps"], 1e-9), 3) if base else None,
        },
    }
    return report


def format_bench_streams(report: dict) -> str:
    """The table ``trtbuild bench --streams`` prints."""
    e2e, cap, only, base = (report[k] for k in ("end_to_end", "host_capacity", "model_only", "serial_host_path"))
    lines = [f"bench --streams  {len(report['sources'])} stream(s), batch {report['batch']}, {report['backend']}",
             f"  model only           {only['fps']:>8.1f} frames/s  ({only['ms_per_call']:.1f} ms per batch call)",
             f"  end to end           {e2e['fps']:>8.1f} frames/s  latency p50 {e2e['latency_ms']['p50']:.0f} ms, "
             f"p99 {e2e['latency_ms']['p99']:.0f} ms  = {report['ratios']['end_to_end_vs_model_only']:.2f}x "
             "model only",
             f"  host capacity        {cap['fps']:>8.1f} frames/s  (recorded outputs instead of the model)"]
    if base:
        lines.append(f"  serial host path     {base['fps']:>8.1f} frames/s  (one thread, one frame after another) "
                     f"→ pipelined {report['ratios']['host_pipelined_vs_serial']:.2f}x")
    lines.append("  host capacity by stage (busy % of its threads, ms of thread time per frame):")
    for row in cap["stages"]:
        lines.append(f"    {row['stage']:<10} {row['threads']} thread(s) {row['busy_pct']:>6.1f} % "
                     f"{row['ms_per_frame']:>8.3f} ms")
    lines.append(f"  bottleneck end to end: {e2e['bottleneck']}; host capacity: {cap['bottleneck']}")
    return "\n".join(lines)
