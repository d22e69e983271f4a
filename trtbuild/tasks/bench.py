"""``trtbuild bench``: end-to-end latency, throughput and per-stage time of one or more models on real photos.

Every timed iteration is one batch call as an application makes it: letterbox the batch's frames, ``infer``, decode
+ NMS (``postprocess``, or ``postprocess_end2end`` for an NMS-in-the-graph model). The infer time is split into
``h2d`` / ``compute`` / ``d2h`` where the backend measures them (a TensorRT runner's CUDA events); the rest of the
infer wall time (launch, synchronisation, Python) is ``other``. On a backend that cannot split (ONNX Runtime), the
whole infer time is ``compute``. Several models are measured in the same run, one after the other, and compared
with the first (the baseline) batch by batch. Reports: ``<name>.bench.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..artifacts import package_version
from ..config import BenchConfig
from ..console import human_bytes, progress_bar
from ..cuda.buffers import STAGES as BACKEND_STAGES
from ..errors import InputError
from ..runtime.base import Runner
from ..runtime.open import open_runner
from ..trt.host import Host
from ..vision.batch import check_batch_memory, cycle_batch
from ..vision.io import list_images, read_image
from .predictor import Predictor

STAGES = ("preprocess", "h2d", "compute", "d2h", "other", "postprocess")


def default_images() -> list[Path]:
    """The real photos shipped with ultralytics (bus.jpg, zidane.jpg), found through the installed package."""
    from importlib.util import find_spec

    spec = find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("ultralytics is not installed, so its sample photos are missing; pass images=DIR",
                         param="images")
    assets = Path(list(spec.submodule_search_locations)[0]) / "assets"
    return [assets / "bus.jpg", assets / "zidane.jpg"]


def load_frames(images: Path | None) -> tuple[list[Path], list[np.ndarray]]:
    """Paths and BGR frames of ``images`` (a folder or one image file; default: ``default_images()``)."""
    paths = default_images() if images is None else None
    if paths is None:
        images = Path(images)
        if not images.exists():
            raise InputError(f"images={images}: no such folder; pass a folder of images", param="images")
        paths = list_images(images) if images.is_dir() else [images]
    frames = [(p, read_image(p)) for p in paths]
    frames = [(p, f) for p, f in frames if f is not None]
    if not frames:
        raise InputError(f"none of {', '.join(str(p) for p in paths)} could be decoded as an image; "
                         "pass images=DIR with readable images", param="images")
    return [p for p, _ in frames], [f for _, f in frames]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_facts() -> dict:
    """What the numbers depend on besides the model: CPU, core count, library versions, thread settings."""
    import cv2

    return {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(), "onnxruntime": package_version("onnxruntime"),
            "ort_threads": os.environ.get("TRTBUILD_ORT_THREADS"), "tensorrt": package_version("tensorrt"),
            "pycuda": package_version("pycuda")}


def _labels(models: Sequence[Path]) -> list[str]:
    names = [m.name for m in models]
    return [m.name if names.count(m.name) == 1 else str(m) for m in models]


def latency_stats(latencies_ms: list[float], stages: dict[str, list[float]], batch: int) -> dict:
    """Latency percentiles, mean, throughput and mean time per stage of timed calls of ``batch`` images (the figures
    of one report row: ``bench`` and the Triton load test share them)."""
    lat = np.asarray(latencies_ms, np.float64)
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    seconds = float(lat.sum()) / 1000
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {"iters": len(lat), "images": batch * len(lat), "seconds": round(seconds, 6),
            "latency_ms": {"p50": r(p50), "p90": r(p90), "p99": r(p99), "mean": r(lat.mean()), "min": r(lat.min()),
                           "max": r(lat.max()), "std": r(lat.std())},
            "throughput_ips": round(batch * len(lat) / seconds, 3) if seconds > 0 else None,
            "stages_ms": {k: r(np.mean(v)) for k, v in stages.items()}}


def bench_batch(predictor: Predictor, frames: list[np.ndarray], batch: int, warmup: int, iters: int,
                progress: bool = False, desc: str = "") -> dict:
    """Time ``warmup`` + ``iters`` batch calls of ``batch`` frames (cycling through ``frames``) with the predictor's
    one loop (``Predictor.run_batch``); stats of the timed ones. Raises what the runner raises (an InputError for
    a batch its engine cannot take)."""
    lat: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    split = False
    detections = 0
    bar = progress_bar(total=warmup + iters, desc=desc, unit="it", leave=False, disable=not progress)
    try:
        for i in range(warmup + iters):
            run = predictor.run_batch(cycle_batch(frames, i, batch))
            bar.update()
            if i < warmup:
                continue
            infer_ms = run.infer * 1000
            if run.backend_ms:
                split = True
                got = {k: float(run.backend_ms.get(k, 0.0)) for k in BACKEND_STAGES}
                got["other"] = max(0.0, infer_ms - sum(got.values()))
            else:
                got = {"h2d": 0.0, "compute": infer_ms, "d2h": 0.0, "other": 0.0}
            got.update(preprocess=run.preprocess * 1000, postprocess=run.postprocess * 1000)
            for k in STAGES:
                stages[k].append(got[k])
            lat.append((run.preprocess + run.infer + run.postprocess) * 1000)
            detections += sum(len(d) for d in run.detections)
    finally:
        bar.close()
    mem = predictor.runner.device_memory()
    return {"batch": batch, "status": "ok", **latency_stats(lat, stages, batch),
            "stage_source": "backend" if split else "wall",
            "device_memory_bytes": mem, "device_memory": human_bytes(mem) if mem is not None else "n/a",
            "detections_per_image": round(detections / (batch * iters), 3)}


def _ratios(models: list[dict]) -> list[dict]:
    """Median-latency ratio of every model against the first, at each batch both ran."""
    if len(models) < 2:
        return []
    base = models[0]
    base_ok = {r["batch"]: r for r in base["results"] if r["status"] == "ok"}
    out = []
    for m in models[1:]:
        for r in m["results"]:
            b = r["batch"]
            if r["status"] != "ok" or b not in base_ok:
                continue
            x = base_ok[b]["latency_ms"]["p50"] / r["latency_ms"]["p50"]
            how = f"{x:.2f}× faster than" if x >= 1 else f"{1 / x:.2f}× slower than"
            out.append({"model": m["label"], "baseline": base["label"], "batch": b, "speedup": round(x, 4),
                        "text": f"{m['label']} {how} {base['label']} at batch {b}"})
    return out


def run_bench(models: Sequence[str | os.PathLike], config: BenchConfig = BenchConfig(), *,
              host: Host | None = None, opener: Callable[[Path], Runner] | None = None, progress: bool = False
              ) -> dict:
    """Benchmark ``models`` (paths opened with ``opener``, default ``open_runner`` on ``host``) as ``config`` says;
    returns the report dict.

    A static-batch model must be asked for its own batch, and runs only it (other sizes are recorded as skipped,
    with the reason), as does a batch the runner refuses.
    """
    cfg = config
    batches, iters, images, imgsz = (list(cfg.batches) if cfg.batches else None), cfg.iters, cfg.images, cfg.imgsz
    warmup = 10 if cfg.warmup is None else cfg.warmup
    conf, iou, gpu_preprocess = cfg.conf, cfg.iou, cfg.gpu_preprocess
    models = [Path(m) for m in models]
    if not models:
        raise InputError("no model given; pass one or more .onnx / .engine files")
    for m in models:
        if not m.is_file():
            raise InputError(f"{m}: no such model file; pass an .onnx (or, with TensorRT, an .engine) path")
    paths, frames = load_frames(Path(images) if images is not None else None)
    opener = opener or (lambda path: open_runner(path, host=host))
    runners: list[Runner] = []
    entries = []
    try:
        for m in models:
            runners.append(opener(m))
        if batches is None:
            batches = sorted({1} | {r.static_batch for r in runners if r.static_batch})
        for m, r in zip(models, runners):
            if r.static_batch and r.static_batch not in batches:
                raise InputError(f"batches={','.join(map(str, batches))}: {m} takes batch {r.static_batch} only "
                                 f"(static), so nothing of it would be measured; add batch {r.static_batch}, or "
                                 "export with a dynamic batch (dynamic=True)", param="batches")
            check_batch_memory(max(batches), r.info.run_hw(imgsz), m)  # before minutes of measuring
        for path, label, runner in zip(models, _labels(models), runners):
            pred = Predictor(runner, conf=conf, iou=iou, imgsz=imgsz, gpu_preprocess=gpu_preprocess)
            spec = runner.input_specs[0]
            notes = []
            if imgsz and runner.input_hw and tuple(imgsz) != tuple(runner.input_hw):
                notes.append(f"imgsz {imgsz[0]},{imgsz[1]} ignored: the input is fixed at "
                             f"{runner.input_hw[0]}×{runner.input_hw[1]}")
            entry = {"label": label, "path": str(path), "bytes": path.stat().st_size, "backend": runner.backend_name,
                     "input": {"name": spec.name, "shape": [d if isinstance(d, int) else str(d) for d in spec.shape],
                               "dtype": spec.dtype},
                     "static_batch": runner.static_batch, "imgsz": list(pred.imgsz), "end2end": pred.end2end,
                     "notes": notes, "results": []}
            for b in batches:
                if runner.static_batch and b != runner.static_batch:
                    entry["results"].append({"batch": b, "status": "skipped", "reason": (
                        f"static batch {runner.static_batch}: the model takes batch {runner.static_batch} only; "
                        "for other sizes export with a dynamic batch (--dynamic) and build the engine with a "
                        "larger max_batch (--max-batch)")})
                    continue
                try:
                    res = bench_batch(pred, frames, b, warmup, iters, progress, f"{label} b={b}")
                except InputError as exc:
                    res = {"batch": b, "status": "skipped", "reason": str(exc)}
                entry["results"].append(res)
            entries.append(entry)
            if not any(r["status"] == "ok" for r in entry["results"]):
                raise InputError(f"{path}: no batch size could be measured ({entry['results'][0]['reason']})")
    finally:
        for r in runners:
            r.close()
    return {"stage": "bench", "version": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": host_facts(),
            "settings": {"batches": list(batches), "warmup": warmup, "iters": iters, "conf": conf, "iou": iou,
                         "imgsz": list(imgsz) if imgsz else None, "images": [str(p) for p in paths]},
            "models": entries, "ratios": _ratios(entries)}
