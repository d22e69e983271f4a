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

import os
from pathlib import Path

import numpy as np
import onnx

from ..artifacts import Outputs, StageResult, read_json, run_stage, sha256_file, sha256_json
from ..config import EvalConfig, ReportConfig
from ..console import human_bytes, table
from ..data.dataset import load_dataset
from ..errors import InputError
from ..layout import Layout
from ..onnx.compare import CONFIDENT, REL_EPS, detect_error
from ..onnx.graph import graph_counts
from ..onnx.modelinfo import ModelInfo
from ..runtime.onnx import OnnxRunner
from ..vision.io import read_batch
from .budget import data_key
from .evaluate import evaluate

STAGE_VERSION = 1
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


def default_variants(sim_onnx: str | os.PathLike) -> dict[str, Path]:
    """``{label: path}`` of the variants that exist beside ``<name>.sim.onnx``: FP32, FP16, INT8, INT8+fallback."""
    src = Path(sim_onnx)
    layout = Layout.of(src)
    found = {"FP32": src}
    for label, tag in (("FP16", "fp16"), ("INT8", "int8"), ("INT8+fallback", "int8fb")):
        if layout.typed(tag).is_file():
            found[label] = layout.typed(tag)
    return found


def _graph_counts(path: Path) -> dict:
    counts = graph_counts(onnx.load(str(path), load_external_data=False))
    return {"nodes": counts["nodes"], "qdq_pairs": counts["qdq_pairs"], "bytes": path.stat().st_size}


def _budget_figures(budget_json: Path, dkey: str) -> dict[str, dict]:
    """``{model sha256: {map50, map50_95}}`` from a budget report taken on the same data, else {}."""
    rep = read_json(budget_json)
    if not rep or rep.get("data_key") != dkey:
        return {}
    return {e["model_sha256"]: e for e in [rep.get("fp32", {}), *rep.get("steps", [])] if "model_sha256" in e}


def precision_report(sim_onnx: str | os.PathLike, config: ReportConfig, *, progress: bool = False) -> StageResult:
    """Build the precision report (see the module docstring): ``<prefix>.precision.{json,md,png}``; the result's
    output is the Markdown file, its report the JSON.

    ``config.variants`` defaults to :func:`default_variants`; FP32 (the reference, ``sim_onnx`` unless given) comes
    first; ``compare_images`` to the first ``num_compare`` images of the split; ``out_prefix`` to ``<dir>/<name>``
    beside the model; ``budget_json`` to ``<name>.budget.json`` beside the model.
    """
    cfg = config
    src = Path(sim_onnx)
    layout = Layout.of(src)
    variants = dict(cfg.variants) if cfg.variants is not None else default_variants(src)
    variants = {"FP32": Path(variants.get("FP32", src)), **{k: Path(v) for k, v in variants.items() if k != "FP32"}}
    for label, path in variants.items():
        if not path.is_file():
            raise InputError(f"{label} variant {path} does not exist")
    out = Layout(Path(cfg.out_prefix).parent, Path(cfg.out_prefix).name) if cfg.out_prefix else layout
    json_path, md_path, png_path = (out.precision_report(e) for e in ("json", "md", "png"))
    budget_json = Path(cfg.budget_json) if cfg.budget_json else layout.budget
    if cfg.compare_images is None:
        compare_images = [p for p, _ in load_dataset(cfg.data, cfg.split).items[: cfg.num_compare]]
    else:
        compare_images = list(cfg.compare_images)
    dkey = data_key(cfg.data, cfg.split, cfg.limit)
    shas = {label: sha256_file(p) for label, p in variants.items()}
    key = sha256_json({"stage": "report", "stage_version": STAGE_VERSION, "variants": shas, "data": dkey,
                       "compare": [sha256_file(p) for p in compare_images]})

    def make(outputs: Outputs) -> dict:
        hw = ModelInfo.of_onnx(variants["FP32"]).run_hw()
        batch = read_batch(compare_images, hw)
        ref = OnnxRunner(variants["FP32"]).infer_all(batch)
        known = _budget_figures(budget_json, dkey)
        rows = []
        for label, path in variants.items():
            if shas[label] in known:
                figs, source = known[shas[label]], "budget"
            else:
                figs = evaluate(path, EvalConfig(data=cfg.data, split=cfg.split, limit=cfg.limit), progress=progress)
                source = "evaluated"
            output = ref if label == "FP32" else OnnxRunner(path).infer_all(batch)
            rows.append({"label": label, "path": str(path), "sha256": shas[label], "map50": figs["map50"],
                         "map50_95": figs["map50_95"], "map_source": source, **_graph_counts(path),
                         "error": detect_error(ref, output)})
        fp32 = rows[0]
        for r in rows:
            r["drop_map50"] = round((fp32["map50"] - r["map50"]) * 100, 4)
            r["drop_map50_95"] = round((fp32["map50_95"] - r["map50_95"]) * 100, 4)
        budget = read_json(budget_json) if any(r["map_source"] == "budget" for r in rows) else None
        report = {
            "model": str(src), "data": str(cfg.data), "split": cfg.split, "limit": cfg.limit, "data_key": dkey,
            "imgsz": list(hw), "compare_images": [str(p) for p in compare_images], "output": str(md_path),
            "variants": rows, "budget": None if budget is None else {
                "path": str(budget_json), "max_map_drop": budget.get("max_map_drop"), "met": budget.get("met"),
                "excluded": budget.get("excluded", [])},
            "notes": {"fp16": FP16_NOTE, "int8": INT8_NOTE, "rel_eps": REL_EPS},
            "files": {"json": str(json_path), "md": str(md_path), "png": str(png_path)},
        }
        outputs.path(md_path).write_text(markdown(report))
        plot(report, outputs.path(png_path))
        return report

    return run_stage("report", key, json_path, md_path, make, cfg.force,
                     inputs={"model": src, **{label: p for label, p in variants.items()}}, overwrite=cfg.overwrite)


def _table_rows(report: dict) -> list[tuple]:
    rows = []
    for r in report["variants"]:
        e = r["error"]
        rows.append((r["label"], f"{r['map50']:.4f}", f"{r['map50_95']:.4f}", f"{r['drop_map50_95']:.2f}",
                     f"{e['box_confident']['max_abs']:.3g}", f"{e['box_confident']['mean_abs']:.3g}",
                     f"{e['box']['cosine']:.6f}", f"{e['score']['max_abs']:.3g}",
                     f"{e['score']['cosine']:.6f}", f"{e['all']['mean_rel']:.3g}", r["nodes"], r["qdq_pairs"],
                     human_bytes(r["bytes"])))
    return rows


HEADER = ("precision", "mAP50", "mAP50-95", "drop (pts)", "box max Δ px", "box mean Δ px", "box cos",
          "score max Δ", "score cos", "mean rel", "nodes", "Q/DQ", "size")


def markdown(report: dict) -> str:
    """The report as Markdown: the table, then how to read it."""
    lines = [f"# Precision report: {Layout.of(report['model']).name}", "",
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
    fig.suptitle(f"{Layout.of(report['model']).name}: accuracy per precision "
                 f"({report['split']} split, ONNX Runtime CPU; in parentheses: change vs FP32)", fontsize=12)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def format_report(report: dict, skipped: bool = False) -> str:
    text = table(_table_rows(report), HEADER)
    state = "up to date" if skipped else f"{report.get('seconds', 0):.0f} s"
    files = report["files"]
    return f"{text}\nreport {files['md']}, {files['png']}, {files['json']} ({state})"
