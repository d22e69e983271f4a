"""The INT8 accuracy budget: keep the mAP50-95 lost to INT8 within ``--max-map-drop`` points of FP32.

Quantizing every conv is fastest but a few layers (often the first conv, which sees raw pixels, and convs
right before the head) carry most of the INT8 error. The budget finds and keeps those few in float:

1. evaluate FP32 (the simplified ONNX) and full INT8 (``<name>.int8.onnx``) on the eval split; if the drop
   in points, (FP32 − INT8) × 100 of mAP50-95, is within the budget, stop;
2. otherwise rank the quantizable convs by sensitivity: each conv alone is quantized (every other candidate
   kept float), run on held-out images (the calibration images, never the eval split, so the ranking is not
   tuned on the figures it is judged by) and compared with the FP32 output;
3. fall back the most sensitive convs in doubling steps (1, 2, 4, 8, … convs float), writing
   ``<name>.int8fb.onnx`` and evaluating each, until the drop fits (with every candidate float the model is
   FP32 again, so a budget ≥ 0 always terminates being met).

Every step is recorded in ``<name>.budget.json``, keyed by the hashes of the model, the ranges, the eval images
and labels, split, budget and limit, so a second run with the same inputs is a no-op. Each evaluation records
the evaluated model's sha256 and the data key, so ``report.py`` can reuse the figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import click
import numpy as np

from ..artifacts import (
    cached_report,
    output_hashes,
    package_version,
    read_json,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from ..errors import InputError
from ..runtime.onnx import OnnxRunner
from .calibrate import artifact_name

STAGE_VERSION = 1
SENSITIVITY_IMAGES = 16
SCORE_THRESHOLD = 0.25  # anchors whose FP32 best class score passes this count for the box error
EVAL_PROTOCOL = {"conf": 0.001, "iou": 0.7, "max_det": 300}  # evaluate()'s defaults, part of the data key


# -- running models on letterboxed images ------------------------------------------------------------------------


def load_batch(images: Sequence[Path], imgsz) -> np.ndarray:
    """Letterboxed [N,3,H,W] float32 batch of ``images`` (the inference preprocessing)."""
    from ..vision.io import read_image
    from ..vision.letterbox import letterbox_batch

    frames = []
    for p in images:
        frame = read_image(p)
        if frame is None:
            raise InputError(f"image {p} cannot be read")
        frames.append(frame)
    if not frames:
        raise InputError("no images to run the model on")
    return letterbox_batch(frames, imgsz)[0]


def output_errors(ref: np.ndarray, out: np.ndarray, imgsz) -> dict:
    """Sensitivity errors of ``out`` against ``ref`` (both ``output0`` [B, 4+nc, A]): ``cls_err`` = 1 − cosine
    similarity of the class-score rows (per image, averaged), ``box_err`` = mean |Δ| of the box rows on anchors
    whose FP32 best score > 0.25, divided by the input size (max of H, W); ``score`` = their sum."""
    cls_ref, cls_out = (x[:, 4:].reshape(len(x), -1).astype(np.float64) for x in (ref, out))
    dot = (cls_ref * cls_out).sum(1)
    norm = np.linalg.norm(cls_ref, axis=1) * np.linalg.norm(cls_out, axis=1)
    cos = np.clip(np.where(norm > 0, dot / np.maximum(norm, 1e-300), 1.0), -1.0, 1.0)
    cls_err = float(np.mean(1.0 - cos))
    mask = ref[:, 4:].max(1) > SCORE_THRESHOLD  # [B, A]
    if mask.any():
        delta = np.abs(ref[:, :4] - out[:, :4]).transpose(0, 2, 1)[mask]  # [anchors, 4]
        box_err = float(delta.mean()) / float(max(imgsz))
    else:
        box_err = 0.0
    return {"score": cls_err + box_err, "cls_err": cls_err, "box_err": box_err}


def model_imgsz(model, imgsz=None) -> tuple[int, int]:
    """(H, W) the model runs at: its static input size, else ``imgsz``, else its metadata's, else 640."""
    from .calibrate import _resolve_imgsz, model_input

    _, _, hw, _ = model_input(model)
    return _resolve_imgsz(model, Path("model.onnx"), hw, imgsz)


def layer_sensitivity(sim_onnx, ranges: dict, images: Sequence[Path], imgsz=None,
                      candidates: Iterable[str] | None = None, progress: bool = True) -> list[dict]:
    """Sensitivity of each candidate conv to INT8, most sensitive first: ``[{conv, score, cls_err, box_err}]``.

    Each conv is quantized alone (``quantize_qdq`` with every other candidate excluded) and run on ``images``
    (held-out images, e.g. 16 calibration images); the errors are those of :func:`output_errors` against FP32.
    ``candidates`` defaults to :func:`qdq.sensitivity_candidates` (every conv INT8 would quantize).
    """
    from tqdm import tqdm

    from ..graph import load_onnx
    from .qdq import quantize_qdq, sensitivity_candidates

    model = load_onnx(sim_onnx, check=False)
    hw = model_imgsz(model, imgsz)
    cands = list(candidates) if candidates is not None else sensitivity_candidates(model)
    batch = load_batch(list(images), hw)
    ref = OnnxRunner(model).infer_all(batch)
    rows = []
    for conv in tqdm(cands, desc="sensitivity", unit="conv", leave=False, disable=not progress):
        q, _ = quantize_qdq(model, ranges, exclude_nodes=set(cands) - {conv})
        rows.append({"conv": conv, **output_errors(ref, OnnxRunner(q).infer_all(batch), hw)})
    rows.sort(key=lambda r: -r["score"])
    return rows


# -- the eval data's identity --------------------------------------------------------------------------------------


def data_key(data, split: str = "val", limit: int | None = None) -> str:
    """Hash of what an evaluation's figures depend on besides the model: each image's bytes and labels (of the
    first ``limit`` items), the split, the limit and the evaluation protocol."""
    from ..dataset import load_dataset

    ds = load_dataset(data, split)
    items = ds.items[:limit] if limit else ds.items
    return sha256_json({
        "split": split, "limit": limit, "protocol": EVAL_PROTOCOL, "names": ds.names,
        "items": [(sha256_file(p), np.asarray(labels, np.float32).round(6).tolist()) for p, labels in items],
    })


def _eval(model: Path, data, split, limit, progress) -> dict:
    from ..evaluate import evaluate

    res = evaluate(model, data, split, limit=limit, progress=progress)
    return {"model": str(model), "model_sha256": res["model_sha256"], "map50": res["map50"],
            "map50_95": res["map50_95"], "n_images": res["n_images"]}


def _drop(fp32: dict, other: dict) -> float:
    return round((fp32["map50_95"] - other["map50_95"]) * 100.0, 4)


def _steps(n: int) -> list[int]:
    """Exclusion counts 1, 2, 4, … capped at ``n`` (the last step excludes every candidate)."""
    out, k = [], 1
    while n and k < n:
        out.append(k)
        k *= 2
    return out + [n] if n else []


def fit_budget(sim_onnx, ranges_json=None, data=None, split: str = "val", max_map_drop: float = 1.0,
               images: Sequence[Path] | None = None, imgsz=None, limit: int | None = None,
               sensitivity_images: int = SENSITIVITY_IMAGES, candidates: Iterable[str] | None = None,
               force: bool = False, progress: bool = False) -> dict:
    """Fit INT8 into the accuracy budget (see the module docstring); returns the report (also written to
    ``<name>.budget.json``; ``report["skipped"]`` says whether it was reused).

    ``ranges_json`` defaults to ``<name>.ranges.json`` beside the model; ``images`` (held-out images for the
    sensitivity ranking) to the first ``sensitivity_images`` calibration images listed in it. ``limit`` caps
    the eval images; ``candidates`` restricts the convs that may fall back (default: every quantized conv).
    ``report["output"]`` is the model to deploy: ``<name>.int8.onnx`` when full INT8 fits,
    else ``<name>.int8fb.onnx`` (a stale one is removed when full INT8 fits).
    """
    from ..graph import load_onnx
    from .calibrate import load_ranges
    from .stages import int8_stage

    src = Path(sim_onnx)
    candidates = list(candidates) if candidates is not None else None
    if data is None:
        raise InputError("the accuracy budget needs an eval data set (--data)")
    if max_map_drop < 0:
        raise InputError(f"--max-map-drop {max_map_drop}: must be ≥ 0 points")
    name = artifact_name(src)
    ranges_json = Path(ranges_json) if ranges_json else src.with_name(f"{name}.ranges.json")
    if not ranges_json.is_file():
        raise InputError(f"{ranges_json} does not exist; run `trtbuild calibrate {src}` first")
    if images is None:
        cal = read_json(ranges_json) or {}
        root = Path(cal.get("images_dir", "."))
        images = [root / p for p in cal.get("images", [])][:sensitivity_images]
        if not images:
            raise InputError(f"{ranges_json} lists no calibration images; pass held-out images (--images)")
    images = [Path(p) for p in images]
    hw = model_imgsz(load_onnx(src, check=False), imgsz)
    report_path = src.with_name(f"{name}.budget.json")
    dkey = data_key(data, split, limit)
    key = sha256_json({
        "stage": "budget", "stage_version": STAGE_VERSION, "model": sha256_file(src),
        "ranges": sha256_file(ranges_json), "data": dkey, "split": split, "max_map_drop": float(max_map_drop),
        "limit": limit, "images": [sha256_file(p) for p in images], "imgsz": list(hw),
        "candidates": sorted(candidates) if candidates is not None else None,
        "versions": {p: package_version(p) for p in ("onnxruntime", "onnx")},
    })
    prev = read_json(report_path)
    if not force and prev and prev.get("key") == key:
        outs = [report_path.parent / n for n in prev.get("outputs", {})]
        if (rep := cached_report(report_path, key, outs)) is not None:
            return {**rep, "skipped": True}

    t0 = time.perf_counter()
    fp32 = _eval(src, data, split, limit, progress)
    full = int8_stage(src, ranges_json)
    step0 = {**_eval(full.output, data, split, limit, progress), "step": 0, "excluded": []}
    step0["drop"] = _drop(fp32, step0)
    steps, sensitivity = [step0], []
    fb_path = src.with_name(f"{name}.int8fb.onnx")
    met = step0["drop"] <= max_map_drop + 1e-9
    if met:
        for stale in (fb_path, src.with_name(f"{name}.int8fb.json")):
            stale.unlink(missing_ok=True)
    else:
        sensitivity = layer_sensitivity(src, load_ranges(ranges_json), images, hw, candidates, progress)
        ranked = [r["conv"] for r in sensitivity]
        for i, k in enumerate(_steps(len(ranked)), start=1):
            fb = int8_stage(src, ranges_json, exclude=ranked[:k], suffix="int8fb")
            step = {**_eval(fb.output, data, split, limit, progress), "step": i, "excluded": ranked[:k]}
            step["drop"] = _drop(fp32, step)
            steps.append(step)
            if step["drop"] <= max_map_drop + 1e-9:
                met = True
                break
    final = steps[-1]
    output = full.output if final["step"] == 0 else fb_path
    report = {
        "stage": "budget", "key": key, "data_key": dkey, "input": str(src), "ranges": str(ranges_json),
        "data": str(data), "split": split, "limit": limit, "max_map_drop": float(max_map_drop),
        "sensitivity_images": [str(p) for p in images], "imgsz": list(hw),
        "fp32": fp32, "steps": steps, "met": met, "chosen_step": final["step"], "output": str(output),
        "excluded": final["excluded"],
        "message": (f"{'within' if met else 'could not meet'} the budget of {max_map_drop:g} point(s): "
                    f"mAP50-95 drop {final['drop']:.2f} with {len(final['excluded'])} conv(s) kept float"),
        "sensitivity": sensitivity,
        "outputs": output_hashes([output]),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json_atomic(report_path, report)
    return {**report, "skipped": False}


def format_budget(report: dict) -> str:
    """The steps as a text table (FP32 first), then the verdict."""
    from ..console import table

    fp = report["fp32"]
    rows = [("FP32", "-", f"{fp['map50']:.4f}", f"{fp['map50_95']:.4f}", "0.00", "")]
    for s in report["steps"]:
        ex = s["excluded"]
        label = "none" if not ex else (ex[0] if len(ex) == 1 else f"{len(ex)} convs")
        ok = "yes" if s["drop"] <= report["max_map_drop"] + 1e-9 else "no"
        rows.append((f"INT8 step {s['step']}", label, f"{s['map50']:.4f}", f"{s['map50_95']:.4f}",
                     f"{s['drop']:.2f}", ok))
    text = table(rows, ("model", "kept float", "mAP50", "mAP50-95", "drop (pts)", "within budget"))
    state = "up to date" if report.get("skipped") else f"{report['seconds']:.0f} s"
    return f"{text}\n{report['message']} → {report['output']} ({state})"


@click.command("budget")
@click.argument("sim_onnx", metavar="SIM_ONNX", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", required=True, type=click.Path(exists=True), help="YOLO data set (data.yaml or folder).")
@click.option("--split", default="val", show_default=True)
@click.option("--ranges", "ranges_json", default=None, type=click.Path(dir_okay=False),
              help="Calibration ranges [default: NAME.ranges.json beside SIM_ONNX].")
@click.option("--max-map-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Points of mAP50-95 INT8 may lose against FP32.")
@click.option("--images", "images_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Held-out images for the sensitivity ranking [default: the calibration images].")
@click.option("--num-images", default=SENSITIVITY_IMAGES, show_default=True, type=click.IntRange(min=1))
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Evaluate the first N images only.")
@click.option("--force", is_flag=True, help="Rerun even when nothing changed.")
def budget_command(sim_onnx, data, split, ranges_json, max_map_drop, images_dir, num_images, limit, force):
    """Keep INT8's mAP50-95 drop within --max-map-drop, falling back the most sensitive convs to float.

    Writes NAME.budget.json and, when full INT8 does not fit, NAME.int8fb.onnx.
    """
    images = None
    if images_dir:
        from .calibrate import select_images

        images = select_images(images_dir, num_images)[0]
    rep = fit_budget(sim_onnx, ranges_json, data, split, max_map_drop, images=images, limit=limit,
                     sensitivity_images=num_images, force=force, progress=True)
    click.echo(format_budget(rep))
    if rep["sensitivity"]:
        click.echo("most sensitive: " + ", ".join(f"{r['conv']} ({r['score']:.3g})" for r in rep["sensitivity"][:5]))
