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
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import click
import numpy as np

from .artifacts import atomic_path, package_version, write_bytes_atomic, write_json_atomic
from .config import DEFAULT_OUT_DIR, parse_imgsz
from .errors import InputError, TrtbuildError
from .predictor import Predictor
from .runtime.base import BACKEND_STAGES, Runner, backend_seconds, open_runner
from .vision.decode import postprocess, postprocess_end2end
from .vision.io import list_images, read_image
from .vision.letterbox import letterbox_batch

STAGES = ("preprocess", "h2d", "compute", "d2h", "other", "postprocess")
STAGE_COLORS = {"preprocess": "#4C72B0", "h2d": "#8172B2", "compute": "#C44E52", "d2h": "#937860",
                "other": "#AAAAAA", "postprocess": "#55A868"}


def default_images() -> list[Path]:
    """The real photos shipped with ultralytics (bus.jpg, zidane.jpg), found through the installed package."""
    from importlib.util import find_spec

    spec = find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("ultralytics is not installed, so its sample photos are missing; pass --images DIR")
    assets = Path(list(spec.submodule_search_locations)[0]) / "assets"
    return [assets / "bus.jpg", assets / "zidane.jpg"]


def load_frames(images: Path | None) -> tuple[list[Path], list[np.ndarray]]:
    """Paths and BGR frames of ``images`` (a folder or one image file; default: ``default_images()``)."""
    paths = default_images() if images is None else None
    if paths is None:
        images = Path(images)
        if not images.exists():
            raise InputError(f"--images {images}: no such folder; pass a folder of images")
        paths = list_images(images) if images.is_dir() else [images]
    frames = [(p, read_image(p)) for p in paths]
    frames = [(p, f) for p, f in frames if f is not None]
    if not frames:
        raise InputError(f"none of {', '.join(str(p) for p in paths)} could be decoded as an image; "
                         "pass --images DIR with readable images")
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


def backend_name(runner: Runner) -> str:
    """A runner's ``backend_name`` attribute if it has one, ONNX Runtime with its providers, else its class."""
    name = getattr(runner, "backend_name", None)
    if isinstance(name, str):
        return name
    session = getattr(runner, "session", None)
    if session is not None and hasattr(session, "get_providers"):
        providers = ", ".join(p.removesuffix("ExecutionProvider") for p in session.get_providers())
        return f"ONNX Runtime {package_version('onnxruntime')} ({providers})"
    return type(runner).__name__


def _labels(models: Sequence[Path]) -> list[str]:
    names = [m.name for m in models]
    return [m.name if names.count(m.name) == 1 else str(m) for m in models]


def _stats(latencies_ms: list[float], stages: dict[str, list[float]], batch: int) -> dict:
    lat = np.asarray(latencies_ms, np.float64)
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    seconds = float(lat.sum()) / 1000
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {"iters": len(lat), "images": batch * len(lat), "seconds": round(seconds, 6),
            "latency_ms": {"p50": r(p50), "p90": r(p90), "p99": r(p99), "mean": r(lat.mean()), "min": r(lat.min()),
                           "max": r(lat.max()), "std": r(lat.std())},
            "throughput_ips": round(batch * len(lat) / seconds, 3) if seconds > 0 else None,
            "stages_ms": {k: r(np.mean(v)) for k, v in stages.items()}}


def bench_batch(runner: Runner, predictor: Predictor, frames: list[np.ndarray], batch: int, warmup: int,
                iters: int, progress: bool = False, desc: str = "", gpu_preprocess: bool = False) -> dict:
    """Time ``warmup`` + ``iters`` batch calls of ``batch`` frames (cycling through ``frames``); stats of the
    timed ones. Raises what the runner raises (an InputError for a batch its engine cannot take)."""
    from tqdm import tqdm

    hw = predictor.imgsz
    buf = np.empty((batch, 3, *hw), np.float32)
    lat: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    split = False
    detections = 0
    gpu_frames = getattr(runner, "infer_frames", None) if gpu_preprocess else None
    bar = tqdm(total=warmup + iters, desc=desc, unit="it", leave=False, disable=not progress)
    try:
        for i in range(warmup + iters):
            chunk = [frames[(i * batch + k) % len(frames)] for k in range(batch)]
            t0 = time.perf_counter()
            if gpu_frames is not None:  # TensorRT runner: GPU letterbox into the input buffer, inside its call
                outputs, infos = gpu_frames(chunk)
                output = outputs[0]
                t2 = time.perf_counter()
                t1 = t2 - backend_seconds(runner)  # the rest of the call is the letterbox
            else:
                x, infos = letterbox_batch(chunk, hw, out=buf)
                t1 = time.perf_counter()
                output = runner.infer(x)[0]
                t2 = time.perf_counter()
            if predictor.end2end:
                dets = postprocess_end2end(output, infos, conf=predictor.conf)
            else:
                dets = postprocess(output, infos, conf=predictor.conf, iou=predictor.iou, max_det=predictor.max_det)
            t3 = time.perf_counter()
            bar.update()
            if i < warmup:
                continue
            infer_ms = (t2 - t1) * 1000
            parts = runner.stage_times()
            if parts:
                split = True
                got = {k: float(parts.get(k, 0.0)) for k in BACKEND_STAGES}
                got["other"] = max(0.0, infer_ms - sum(got.values()))
            else:
                got = {"h2d": 0.0, "compute": infer_ms, "d2h": 0.0, "other": 0.0}
            got.update(preprocess=(t1 - t0) * 1000, postprocess=(t3 - t2) * 1000)
            for k in STAGES:
                stages[k].append(got[k])
            lat.append((t3 - t0) * 1000)
            detections += sum(len(d) for d in dets)
    finally:
        bar.close()
    mem = runner.device_memory()
    return {"batch": batch, "status": "ok", **_stats(lat, stages, batch),
            "stage_source": "backend" if split else "wall",
            "device_memory_bytes": mem, "device_memory": _human(mem) if mem is not None else "n/a",
            "detections_per_image": round(detections / (batch * iters), 3)}


def _human(n: int) -> str:
    from .console import human_bytes

    return human_bytes(n)


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


def run_bench(models: list[Path], batches: list[int] | None = None, warmup: int = 10, iters: int = 100,
              images: Path | None = None, imgsz: tuple[int, int] | None = None, conf: float = 0.25,
              iou: float = 0.7, progress: bool = False, opener: Callable[[Path], Runner] = open_runner,
              gpu_preprocess: bool = True) -> dict:
    """Benchmark ``models`` (paths opened with ``opener``) at each batch size; returns the report dict.

    ``batches`` defaults to 1 plus each static-batch model's own batch; a static-batch model runs only its
    batch (the others are recorded as skipped, with the reason), as does a batch the runner refuses. ``imgsz``
    is the input size of dynamic-H/W models (default: the model's metadata, else 640). ``gpu_preprocess``: a
    runner with ``infer_frames`` (TensorRT) letterboxes on the GPU straight into its input buffer.
    """
    if warmup < 0 or iters < 1:
        raise InputError(f"--warmup {warmup} / --iters {iters}: need warmup >= 0 and iters >= 1")
    models = [Path(m) for m in models]
    if not models:
        raise InputError("no model given; pass one or more .onnx / .engine files")
    for m in models:
        if not m.is_file():
            raise InputError(f"{m}: no such model file; pass an .onnx (or, with TensorRT, an .engine) path")
    paths, frames = load_frames(images)
    runners: list[Runner] = []
    entries = []
    try:
        for m in models:
            runners.append(opener(m))
        if batches is None:
            batches = sorted({1} | {r.static_batch for r in runners if r.static_batch})
        if not batches or any(b < 1 for b in batches):
            raise InputError(f"--batch {batches}: batch sizes must be positive integers")
        for path, label, runner in zip(models, _labels(models), runners):
            pred = Predictor(runner, conf=conf, iou=iou, imgsz=imgsz)
            spec = runner.input_specs[0]
            notes = []
            if imgsz and runner.input_hw and tuple(imgsz) != tuple(runner.input_hw):
                notes.append(f"--imgsz {imgsz[0]},{imgsz[1]} ignored: the input is fixed at "
                             f"{runner.input_hw[0]}×{runner.input_hw[1]}")
            entry = {"label": label, "path": str(path), "bytes": path.stat().st_size, "backend": backend_name(runner),
                     "input": {"name": spec.name, "shape": [d if isinstance(d, int) else str(d) for d in spec.shape],
                               "dtype": spec.dtype},
                     "static_batch": runner.static_batch, "imgsz": list(pred.imgsz), "end2end": pred.end2end,
                     "notes": notes, "results": []}
            for b in batches:
                if runner.static_batch and b != runner.static_batch:
                    entry["results"].append({"batch": b, "status": "skipped", "reason": (
                        f"static batch {runner.static_batch}: the model takes batch {runner.static_batch} only; "
                        "for other sizes export with --dynamic (and build the engine with --max-batch)")})
                    continue
                try:
                    res = bench_batch(runner, pred, frames, b, warmup, iters, progress, f"{label} b={b}",
                                      gpu_preprocess=gpu_preprocess)
                except InputError as exc:
                    res = {"batch": b, "status": "skipped", "reason": str(exc)}
                entry["results"].append(res)
            entries.append(entry)
    finally:
        for r in runners:
            r.close()
    return {"stage": "bench", "version": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": host_facts(),
            "settings": {"batches": list(batches), "warmup": warmup, "iters": iters, "conf": conf, "iou": iou,
                         "imgsz": list(imgsz) if imgsz else None, "images": [str(p) for p in paths]},
            "models": entries, "ratios": _ratios(entries)}


HEADER = ("model", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "img/s", "pre", "h2d", "compute", "d2h",
          "other", "post", "device mem")


def _rows(result: dict, skipped: bool = False) -> list[tuple]:
    rows = []
    for m in result["models"]:
        for r in m["results"]:
            if r["status"] != "ok":
                if skipped:
                    rows.append((m["label"], r["batch"], "skipped", *["—"] * (len(HEADER) - 3)))
                continue
            lat, st = r["latency_ms"], r["stages_ms"]
            rows.append((m["label"], r["batch"], *(f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "mean")),
                         f"{r['throughput_ips']:.1f}", *(f"{st[k]:.2f}" for k in STAGES), r["device_memory"]))
    return rows


def markdown(result: dict, name: str) -> str:
    """The report as Markdown: settings, host, the table, skipped batches, ratios and how to read it."""
    s, h = result["settings"], result["host"]
    lines = [f"# Benchmark: {name}", "",
             f"{s['iters']} timed batch calls after {s['warmup']} warm-up per model and batch, on "
             f"{len(s['images'])} image(s) ({', '.join(Path(p).name for p in s['images'][:4])}"
             f"{', …' if len(s['images']) > 4 else ''}); conf {s['conf']}, iou {s['iou']}; {result['created']}.", "",
             f"Host: {h['cpu']} ({h['cpu_count']} logical cores), {h['platform']}; onnxruntime {h['onnxruntime']}, "
             f"OpenCV {h['opencv']} ({h['opencv_threads']} threads)"
             + (f", TensorRT {h['tensorrt']}" if h.get("tensorrt") else "") + ".", "",
             "| model | backend | " + " | ".join(HEADER[1:]) + " |", "|---|---|" + "---:|" * (len(HEADER) - 1)]
    backends = {m["label"]: m["backend"] for m in result["models"]}
    lines += [f"| {row[0]} | {backends[row[0]]} | " + " | ".join(str(c) for c in row[1:]) + " |"
              for row in _rows(result, skipped=True)]
    skipped = [(m["label"], r) for m in result["models"] for r in m["results"] if r["status"] != "ok"]
    notes = [(m["label"], n) for m in result["models"] for n in m["notes"]]
    if skipped or notes:
        lines += ["", "## Skipped and notes", ""]
        lines += [f"- {label}, batch {r['batch']}: {r['reason']}" for label, r in skipped]
        lines += [f"- {label}: {n}" for label, n in notes]
    if result["ratios"]:
        lines += ["", "## Against the baseline (first model, same run, median latency)", ""]
        lines += [f"- {r['text']}" for r in result["ratios"]]
    lines += ["", "## How to read it", "",
              "- Latency: milliseconds per batch call, end to end (letterbox + infer + decode/NMS), percentiles "
              "over the timed calls; img/s = images / total time of the timed calls.",
              "- Stage columns: mean ms per call. *h2d*, *compute*, *d2h* come from the backend where it measures "
              "them (TensorRT: CUDA events); *other* is the rest of the infer wall time (launch, sync, Python). "
              "A backend that cannot split (ONNX Runtime) shows its whole infer time as *compute*.",
              "- *device mem*: device memory the runner holds (activations + I/O buffers); n/a on the CPU."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path, name: str) -> Path:
    """Left: p50/p90/p99 latency per batch, a group of bars per model. Right: mean stage times stacked per
    model and batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [(m["label"], r) for m in result["models"] for r in m["results"] if r["status"] == "ok"]
    labels = [m["label"] for m in result["models"]]
    batches = sorted({r["batch"] for _, r in ok})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10, 1.6 * len(ok) + 6), 4.8), constrained_layout=True)
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        got = {r["batch"]: r["latency_ms"] for lab, r in ok if lab == label}
        xs = [i + (j - (len(labels) - 1) / 2) * width for i, b in enumerate(batches) if b in got]
        ys = [got[b] for b in batches if b in got]
        ax1.bar(xs, [y["p50"] for y in ys], width * 0.9, label=f"{label} p50", zorder=2)
        ax1.scatter(xs, [y["p90"] for y in ys], marker="_", s=200, color="black", zorder=3,
                    label="p90" if j == 0 else None)
        ax1.scatter(xs, [y["p99"] for y in ys], marker="x", color="black", zorder=3, label="p99" if j == 0 else None)
    ax1.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax1.set_ylabel("ms per batch call")
    ax1.set_title("latency (bar: p50, –: p90, ×: p99)", fontsize=11)
    ax1.grid(axis="y", alpha=0.3, zorder=0)
    if ok:
        ax1.set_ylim(0, 1.4 * max(r["latency_ms"]["p99"] for _, r in ok))
    ax1.legend(fontsize=8, loc="upper left", ncol=2)
    bottoms = np.zeros(len(ok))
    for stage in STAGES:
        vals = np.array([r["stages_ms"][stage] for _, r in ok])
        if vals.any():
            ax2.bar(range(len(ok)), vals, 0.6, bottom=bottoms, label=stage, color=STAGE_COLORS[stage], zorder=2)
            bottoms += vals
    ax2.set_xticks(range(len(ok)), [f"{lab}\nb={r['batch']}" for lab, r in ok], fontsize=8)
    ax2.set_ylabel("mean ms per batch call")
    ax2.set_title("time per stage", fontsize=11)
    ax2.grid(axis="y", alpha=0.3, zorder=0)
    ax2.legend(fontsize=8)
    fig.suptitle(f"{name}: end-to-end benchmark ({result['settings']['iters']} calls per model and batch)")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_bench_report(result: dict, out_dir: Path, name: str) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.bench.{json,md,png}`` atomically; returns ``{"json", "md", "png": path}``."""
    out_dir = Path(out_dir)
    files = {ext: out_dir / f"{name}.bench.{ext}" for ext in ("json", "md", "png")}
    write_bytes_atomic(files["md"], markdown(result, name).encode())
    plot(result, files["png"], name)
    write_json_atomic(files["json"], {**result, "files": {k: str(v) for k, v in files.items()}})
    return files


def format_bench(result: dict) -> str:
    """The compact table printed at the end, with skip reasons and ratios under it."""
    from .console import table

    lines = [table(_rows(result), HEADER)]
    lines += [f"skipped {m['label']} batch {r['batch']}: {r['reason']}"
              for m in result["models"] for r in m["results"] if r["status"] != "ok"]
    lines += [r["text"] for r in result["ratios"]]
    return "\n".join(lines)


def _batches(ctx, param, value):
    if value is None:
        return None
    try:
        out = list(dict.fromkeys(int(v) for v in value.split(",") if v.strip()))
    except ValueError:
        out = []
    if not out or any(b < 1 for b in out):
        raise click.BadParameter(f"{value!r}: expected positive integers separated by commas, e.g. 1,2,4")
    return out


def _imgsz(ctx, param, value):
    try:
        return parse_imgsz(value) if value else None
    except TrtbuildError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("bench")
@click.argument("models", metavar="MODEL [MODEL ...]", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--batch", "batches", default=None, callback=_batches,
              help="Batch sizes, e.g. 1,2,4 [default: 1, plus each static-batch model's own batch].")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Untimed calls first.")
@click.option("--iters", default=100, show_default=True, type=click.IntRange(min=1), help="Timed calls.")
@click.option("--images", default=None, type=click.Path(),
              help="Folder of images to cycle through [default: ultralytics' bus.jpg and zidane.jpg].")
@click.option("--imgsz", default=None, callback=_imgsz,
              help="Input size H,W for dynamic-H/W models [default: the model's metadata, else 640].")
@click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1), help="Score threshold.")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold.")
@click.option("--out-dir", default=str(DEFAULT_OUT_DIR), show_default=True, type=click.Path(file_okay=False),
              help="Where the report files go.")
@click.option("--name", default=None, help="Report base name: NAME.bench.{json,md,png} [default: first model's stem].")
@click.option("--cpu-preprocess", is_flag=True,
              help="Letterbox on the CPU for TensorRT engines too [default: GPU letterbox into the input buffer].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_command(models, batches, warmup, iters, images, imgsz, conf, iou, out_dir, name, cpu_preprocess, quiet):
    """Time MODEL(s) end to end (letterbox → infer → decode/NMS) per batch size; the first model is the baseline.

    Reports latency percentiles, throughput, time per stage and device memory, and ratios against the first
    model, in OUT_DIR/NAME.bench.{json,md,png}.
    """
    paths = [Path(m) for m in models]
    result = run_bench(paths, batches, warmup, iters, Path(images) if images else None, imgsz, conf, iou,
                       progress=not quiet, gpu_preprocess=not cpu_preprocess)
    files = write_bench_report(result, Path(out_dir), name or paths[0].stem)
    click.echo(format_bench(result))
    click.echo(f"report {files['md']}, {files['png']}, {files['json']}")
