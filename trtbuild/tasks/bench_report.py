"""The benchmark report: ``<name>.bench.md`` (table, skipped batches, ratios, how to read it), ``.png`` (latency
percentiles and stage times) and ``.json``, and the compact table ``trtbuild bench`` prints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import owned
from ..artifacts import atomic_path, write_bytes_atomic, write_json_atomic
from ..console import table
from ..layout import Layout
from .bench import STAGES
from .bench_triton import batch_histogram_text

STAGE_COLORS = {"preprocess": "#4C72B0", "h2d": "#8172B2", "compute": "#C44E52", "d2h": "#937860",
                "other": "#AAAAAA", "postprocess": "#55A868"}


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
    if result.get("triton"):
        intro = (f"{s['model']} served by Triton at {s['url']}: at each concurrency, that many clients send "
                 f"{s['iters']} requests each ({s['batches'][0]} image(s) per request) after {s['warmup']} warm-up, on ")
    else:
        intro = f"{s['iters']} timed batch calls after {s['warmup']} warm-up per model and batch, on "
    lines = [f"# Benchmark: {name}", "",
             intro +
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
    if result.get("triton"):
        lines += ["", "## Server", ""] + [f"- {t}" for t in batch_histogram_text(result)]
    if result["ratios"]:
        what = "throughput" if result.get("triton") else "median latency"
        lines += ["", f"## Against the baseline (first row, same run, {what})", ""]
        lines += [f"- {r['text']}" for r in result["ratios"]]
    if result.get("triton"):
        lines += ["", "## How to read it", "",
                  "- Latency: the client's round trip per request (ms), percentiles over every request of the level; "
                  "img/s = images answered / wall-clock time of the level.",
                  "- Stage columns, from the server's statistics: *pre* = the preprocess model (decode + letterbox), "
                  "*compute* = the detector, *post* = the postprocess model (decode + NMS), mean ms per request "
                  "(a batched execution's time shared among its requests); *other* = the rest of the round trip "
                  "(network, queueing, the ensemble)."]
        return "\n".join(lines) + "\n"
    lines += ["", "## How to read it", "",
              "- Latency: milliseconds per batch call, end to end (letterbox + infer + decode/NMS), percentiles "
              "over the timed calls; img/s = images / total time of the timed calls.",
              "- Stage columns: mean ms per call. *h2d*, *compute*, *d2h* come from the backend where it measures "
              "them (TensorRT: CUDA events); *other* is the rest of the infer wall time (launch, sync, Python). "
              "A backend that cannot split (ONNX Runtime) shows its whole infer time as *compute*.",
              "- *device mem*: device memory the runner holds (activations + I/O buffers); n/a on the CPU."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path, name: str, overwrite: bool = False) -> Path:
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
    with atomic_path(path, suffix=".png", overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def bench_files(out_dir: str | os.PathLike, name: str, overwrite: bool = False) -> dict[str, Path]:
    """``{"json", "md", "png": path}`` of the report ``<out_dir>/<name>.bench.*``, each checked to be free or
    trtbuild's own (``owned``; any file with ``overwrite``): called before minutes of benchmarking."""
    layout = Layout(Path(out_dir), name)
    files = {ext: layout.bench(ext) for ext in ("json", "md", "png")}
    for path in files.values():
        owned.check_replaceable(path, overwrite)
    return files


def write_bench_report(result: dict, out_dir: str | os.PathLike, name: str, overwrite: bool = False
                       ) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.bench.{json,md,png}`` atomically; returns ``{"json", "md", "png": path}``."""
    files = bench_files(out_dir, name, overwrite)
    write_bytes_atomic(files["md"], markdown(result, name).encode(), overwrite)
    plot(result, files["png"], name, overwrite)
    write_json_atomic(files["json"], {**result, "files": {k: str(v) for k, v in files.items()}}, overwrite)
    return files


def format_bench(result: dict) -> str:
    """The compact table printed at the end, with skip reasons and ratios under it."""
    lines = [table(_rows(result), HEADER)]
    lines += [f"skipped {m['label']} batch {r['batch']}: {r['reason']}"
              for m in result["models"] for r in m["results"] if r["status"] != "ok"]
    if result.get("triton"):
        lines += batch_histogram_text(result)
    lines += [r["text"] for r in result["ratios"]]
    return "\n".join(lines)
