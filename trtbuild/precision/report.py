"""The precision report (``trtbuild report``): what each precision costs in accuracy, side by side.

For every ONNX variant of a model (FP32 = the simplified ONNX, FP16, INT8, INT8 + fallback) it gathers mAP50 and
mAP50-95 on an eval split, the output error against FP32 on a few images, node and Q/DQ counts and file size,
and writes ``<name>.precision.json`` (everything), ``<name>.precision.md`` (a table and how to read it) and
``<name>.precision.png`` (mAP bars). All of it runs in ONNX Runtime on the CPU, so it answers "did compiling the
precision into the graph break the model?" before any engine is built.

mAP figures already measured by the accuracy budget (``<name>.budget.json``) are reused when they were taken on
the same data (same data key) from a model file with the same sha256, so nothing is evaluated twice. The whole
report is keyed by the variants' hashes, the data key and the comparison images: a second run is a no-op.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import click
import numpy as np

from ..artifacts import (
    atomic_path,
    cached_report,
    output_hashes,
    read_json,
    sha256_file,
    sha256_json,
    write_bytes_atomic,
    write_json_atomic,
)
from ..errors import InputError
from ..runtime.onnx import OnnxRunner
from .budget import data_key, load_batch, model_imgsz
from .calibrate import artifact_name

STAGE_VERSION = 1
COMPARE_IMAGES = 8
CONFIDENT = 0.25  # FP32 best class score of the anchors whose boxes ``box_confident`` compares
REL_EPS = 1e-3  # mean_rel = mean(|Δ| / (|ref| + REL_EPS)) over the elements
FP16_NOTE = (
    "ONNX Runtime on the CPU computes FP16 ops in FP32: the CPU execution provider has only FP32 kernels for "
    "most ops and upcasts (casts the FP16 inputs to FP32, runs the FP32 kernel, casts the result back). The FP16 "
    "row therefore shows FP16 storage rounding of weights and activations and checks that the FP16 graph is "
    "type-correct (its FP32 islands and casts), but it is not a check of FP16 numerics (FP16 arithmetic and "
    "accumulation happen only in the TensorRT engine)."
)
INT8_NOTE = (
    "INT8 rows run the Q/DQ graph in ONNX Runtime, which applies the same INT8 rounding of weights and "
    "activations as TensorRT; TensorRT's fused kernels may still differ slightly (accumulation order, fusions)."
)


def default_variants(sim_onnx) -> dict[str, Path]:
    """``{label: path}`` of the variants that exist beside ``<name>.sim.onnx``: FP32, FP16, INT8, INT8+fallback."""
    src = Path(sim_onnx)
    name = artifact_name(src)
    found = {"FP32": src}
    for label, suffix in (("FP16", "fp16"), ("INT8", "int8"), ("INT8+fallback", "int8fb")):
        path = src.with_name(f"{name}.{suffix}.onnx")
        if path.is_file():
            found[label] = path
    return found


def _stats(ref: np.ndarray, out: np.ndarray) -> dict:
    delta = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    r, o = ref.ravel().astype(np.float64), out.ravel().astype(np.float64)
    norm = np.linalg.norm(r) * np.linalg.norm(o)
    return {
        "max_abs": float(delta.max()) if delta.size else 0.0,
        "mean_abs": float(delta.mean()) if delta.size else 0.0,
        "mean_rel": float((delta / (np.abs(ref) + REL_EPS)).mean()) if delta.size else 0.0,
        "cosine": float(r @ o / norm) if norm > 0 else float(np.array_equal(r, o)),
    }


def output_error(ref: np.ndarray, out: np.ndarray) -> dict:
    """Error of ``out`` against ``ref`` (``output0`` [B, 4+nc, A]) for the whole output, the box rows (0:4,
    pixels) and the score rows (4:): max |Δ|, mean |Δ|, mean_rel = mean(|Δ| / (|ref| + 1e-3)), cosine similarity
    of the flattened tensors; ``box_confident``: the box rows on anchors whose FP32 best score > 0.25 only (the
    boxes that survive the confidence threshold; low-score anchors' boxes may move a lot and matter little)."""
    if ref.shape != out.shape:
        raise InputError(f"output shapes differ: {ref.shape} vs {out.shape}")
    mask = ref[:, 4:].max(1) > CONFIDENT  # [B, A]: anchors FP32 detects something at
    box_ref, box_out = (x[:, :4].transpose(0, 2, 1)[mask] for x in (ref, out))
    return {"all": _stats(ref, out), "box": _stats(ref[:, :4], out[:, :4]), "score": _stats(ref[:, 4:], out[:, 4:]),
            "box_confident": {**_stats(box_ref, box_out), "anchors": int(mask.sum())}}


def _graph_counts(path: Path) -> dict:
    import onnx

    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {"nodes": len(ops), "qdq_pairs": ops.count("QuantizeLinear"), "bytes": path.stat().st_size}


def _budget_figures(budget_json: Path, dkey: str) -> dict[str, dict]:
    """``{model sha256: {map50, map50_95}}`` from a budget report taken on the same data, else {}."""
    rep = read_json(budget_json)
    if not rep or rep.get("data_key") != dkey:
        return {}
    return {e["model_sha256"]: e for e in [rep.get("fp32", {}), *rep.get("steps", [])] if "model_sha256" in e}


def precision_report(sim_onnx, data, split: str = "val", variants: dict[str, str | Path] | None = None,
                     compare_images: Sequence[Path] | None = None, limit: int | None = None,
                     out_prefix: str | Path | None = None, budget_json: str | Path | None = None,
                     force: bool = False, progress: bool = False) -> dict:
    """Build the precision report (see the module docstring); returns it (``report["skipped"]`` when reused).

    ``variants`` defaults to :func:`default_variants`; FP32 (the reference, ``sim_onnx`` unless given) comes first;
    ``compare_images`` to the first 8 images of the split; ``out_prefix`` to ``<dir>/<name>`` beside the model,
    giving ``<prefix>.precision.{json,md,png}``; ``budget_json`` to ``<name>.budget.json`` beside the model.
    """
    from ..dataset import load_dataset
    from ..evaluate import evaluate
    from ..graph import load_onnx

    src = Path(sim_onnx)
    name = artifact_name(src)
    variants = {k: Path(v) for k, v in (variants or default_variants(src)).items()}
    variants = {"FP32": variants.get("FP32", src), **{k: v for k, v in variants.items() if k != "FP32"}}
    for label, path in variants.items():
        if not path.is_file():
            raise InputError(f"{label} variant {path} does not exist")
    prefix = Path(out_prefix) if out_prefix else src.with_name(name)
    json_path, md_path, png_path = (prefix.with_name(f"{prefix.name}.precision.{e}") for e in ("json", "md", "png"))
    budget_json = Path(budget_json) if budget_json else src.with_name(f"{name}.budget.json")
    if compare_images is None:
        ds = load_dataset(data, split)
        compare_images = [p for p, _ in ds.items[:COMPARE_IMAGES]]
    compare_images = [Path(p) for p in compare_images]
    dkey = data_key(data, split, limit)
    shas = {label: sha256_file(p) for label, p in variants.items()}
    key = sha256_json({"stage": "report", "stage_version": STAGE_VERSION, "variants": shas, "data": dkey,
                       "compare": [sha256_file(p) for p in compare_images]})
    if not force and (rep := cached_report(json_path, key, [md_path, png_path])):
        return {**rep, "skipped": True}

    t0 = time.perf_counter()
    hw = model_imgsz(load_onnx(variants["FP32"], check=False), None)
    batch = load_batch(compare_images, hw)
    ref = OnnxRunner(variants["FP32"]).infer_all(batch)
    known = _budget_figures(budget_json, dkey)
    rows = []
    for label, path in variants.items():
        if shas[label] in known:
            figs, source = known[shas[label]], "budget"
        else:
            figs, source = evaluate(path, data, split, limit=limit, progress=progress), "evaluated"
        out = ref if label == "FP32" else OnnxRunner(path).infer_all(batch)
        rows.append({"label": label, "path": str(path), "sha256": shas[label], "map50": figs["map50"],
                     "map50_95": figs["map50_95"], "map_source": source, **_graph_counts(path),
                     "error": output_error(ref, out)})
    fp32 = rows[0]
    for r in rows:
        r["drop_map50"] = round((fp32["map50"] - r["map50"]) * 100, 4)
        r["drop_map50_95"] = round((fp32["map50_95"] - r["map50_95"]) * 100, 4)
    budget = read_json(budget_json) if any(r["map_source"] == "budget" for r in rows) else None
    report = {
        "stage": "report", "key": key, "model": str(src), "data": str(data), "split": split, "limit": limit,
        "data_key": dkey, "imgsz": list(hw), "compare_images": [str(p) for p in compare_images],
        "variants": rows, "budget": None if budget is None else {
            "path": str(budget_json), "max_map_drop": budget.get("max_map_drop"), "met": budget.get("met"),
            "excluded": budget.get("excluded", [])},
        "notes": {"fp16": FP16_NOTE, "int8": INT8_NOTE, "rel_eps": REL_EPS},
        "files": {"json": str(json_path), "md": str(md_path), "png": str(png_path)},
    }
    write_bytes_atomic(md_path, markdown(report).encode())
    plot(report, png_path)
    report.update(outputs=output_hashes([md_path, png_path]), seconds=round(time.perf_counter() - t0, 2))
    write_json_atomic(json_path, report)
    return {**report, "skipped": False}


def _size(n: int) -> str:
    from ..console import human_bytes

    return human_bytes(n)


def _table_rows(report: dict) -> list[tuple]:
    rows = []
    for r in report["variants"]:
        e = r["error"]
        rows.append((r["label"], f"{r['map50']:.4f}", f"{r['map50_95']:.4f}", f"{r['drop_map50_95']:.2f}",
                     f"{e['box_confident']['max_abs']:.3g}", f"{e['box_confident']['mean_abs']:.3g}",
                     f"{e['box']['cosine']:.6f}", f"{e['score']['max_abs']:.3g}",
                     f"{e['score']['cosine']:.6f}", f"{e['all']['mean_rel']:.3g}", r["nodes"], r["qdq_pairs"],
                     _size(r["bytes"])))
    return rows


HEADER = ("precision", "mAP50", "mAP50-95", "drop (pts)", "box max Δ px", "box mean Δ px", "box cos",
          "score max Δ", "score cos", "mean rel", "nodes", "Q/DQ", "size")


def markdown(report: dict) -> str:
    """The report as Markdown: the table, then how to read it."""
    lines = [f"# Precision report: {artifact_name(Path(report['model']))}", "",
             f"Data: `{report['data']}`, split `{report['split']}`"
             + (f" (first {report['limit']} images)" if report["limit"] else "")
             + f"; input {report['imgsz'][0]}x{report['imgsz'][1]}; output error on "
               f"{len(report['compare_images'])} image(s) against FP32.", "",
             "| " + " | ".join(HEADER) + " |", "|---|" + "---:|" * (len(HEADER) - 1)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in _table_rows(report)]
    sources = {r["label"]: r["map_source"] for r in report["variants"]}
    lines += ["", "## Notes", "",
              f"- **FP16 on the CPU**: {FP16_NOTE}",
              f"- **INT8**: {INT8_NOTE}",
              "- *drop (pts)*: (mAP50-95 of FP32 − mAP50-95 of the row) × 100.",
              "- Errors are on `output0` [B, 4+nc, anchors] before NMS: *box* = rows 0–3 (decoded xywh, input "
              "pixels), *score* = class-score rows. *box max Δ px* / *box mean Δ px*: largest / mean absolute "
              f"difference of the box rows on the anchors whose FP32 best score > {CONFIDENT:g} (the boxes that "
              "pass the confidence threshold); *score max Δ*: largest absolute difference of the scores; *cos*: "
              "cosine similarity of the flattened tensors (all anchors); *mean rel*: mean over every element of "
              f"`output0` of |Δ| / (|FP32| + {REL_EPS:g}).",
              "- *Q/DQ* = QuantizeLinear nodes (activation Q/DQ pairs; weights are stored INT8 behind a "
              "DequantizeLinear only); *size* = ONNX file size.",
              "- mAP source: " + ", ".join(f"{k}: {v}" for k, v in sources.items())
              + " (\"budget\" = reused from the accuracy budget's evaluation of the same file on the same data)."]
    if (b := report.get("budget")) and b.get("excluded"):
        lines.append(f"- INT8+fallback keeps {len(b['excluded'])} conv(s) float to fit the budget of "
                     f"{b['max_map_drop']:g} point(s): " + ", ".join(f"`{c}`" for c in b["excluded"]))
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path:
    """Bars of mAP50 and mAP50-95 per precision, one panel per metric, each y-axis zoomed on its values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["variants"]
    labels = [r["label"] for r in rows]
    colors = {"FP32": "#4C72B0", "FP16": "#55A868", "INT8": "#C44E52", "INT8+fallback": "#DD8452"}
    fig, axes = plt.subplots(1, 2, figsize=(max(7.5, 2.2 * len(rows) + 3), 4.6), constrained_layout=True)
    for ax, (key, title) in zip(axes, (("map50", "mAP50"), ("map50_95", "mAP50-95"))):
        vals = np.array([r[key] for r in rows])
        lo, hi = float(vals.min()), float(vals.max())
        pad = max(0.02, 0.6 * (hi - lo))
        bottom = max(0.0, np.floor((lo - pad) * 50) / 50)  # a multiple of 0.02 below the smallest bar
        top = min(1.0, hi + 0.35 * (hi - bottom)) if hi < 1 else 1.05
        bars = ax.bar(labels, vals, color=[colors.get(x, "#8172B2") for x in labels], width=0.6, zorder=2)
        for bar, v, r in zip(bars, vals, rows):
            change = (v - rows[0][key]) * 100
            sign = "±" if abs(change) < 0.005 else ("+" if change > 0 else "−")
            note = f"{v:.4f}" if r is rows[0] else f"{v:.4f}\n({sign}{abs(change):.2f} pts)"
            ax.annotate(note, (bar.get_x() + bar.get_width() / 2, v), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=9)
        ax.set_ylim(bottom, top)
        ax.set_title(f"{title}  (y-axis from {bottom:.2f})", fontsize=11)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.tick_params(axis="x", labelsize=9)
    fig.suptitle(f"{artifact_name(Path(report['model']))}: accuracy per precision "
                 f"({report['split']} split, ONNX Runtime CPU; in parentheses: change vs FP32)", fontsize=12)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def format_report(report: dict) -> str:
    from ..console import table

    text = table(_table_rows(report), HEADER)
    state = "up to date" if report.get("skipped") else f"{report.get('seconds', 0):.0f} s"
    files = report["files"]
    return f"{text}\nreport {files['md']}, {files['png']}, {files['json']} ({state})"


@click.command("report")
@click.argument("sim_onnx", metavar="SIM_ONNX", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", required=True, type=click.Path(exists=True), help="YOLO data set (data.yaml or folder).")
@click.option("--split", default="val", show_default=True)
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Evaluate the first N images only.")
@click.option("--compare-images", "compare_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Images for the output error against FP32 [default: the first 8 of the split].")
@click.option("--num-compare", default=COMPARE_IMAGES, show_default=True, type=click.IntRange(min=1))
@click.option("--out-prefix", default=None, type=click.Path(dir_okay=False),
              help="Write PREFIX.precision.{json,md,png} [default: NAME beside SIM_ONNX].")
@click.option("--force", is_flag=True, help="Rebuild even when nothing changed.")
def report_command(sim_onnx, data, split, limit, compare_dir, num_compare, out_prefix, force):
    """Compare the FP32/FP16/INT8/INT8+fallback ONNX variants beside SIM_ONNX: mAP, output error, size."""
    images = None
    if compare_dir:
        from .calibrate import select_images

        images = select_images(compare_dir, num_compare)[0]
    rep = precision_report(sim_onnx, data, split, compare_images=images, limit=limit, out_prefix=out_prefix,
                           force=force, progress=True)
    click.echo(format_report(rep))
