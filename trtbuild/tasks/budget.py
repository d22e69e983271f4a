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
and labels, split, budget and limit, so a second run with the same inputs is a no-op (``artifacts.run_stage``).
Each evaluation records the evaluated model's sha256 and the data key, so ``report.py`` can reuse the figures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..console import progress_bar
from .. import owned
from ..artifacts import Outputs, StageResult, package_version, read_json, run_stage, sha256_file, sha256_json
from ..config import BudgetConfig, EvalConfig, Int8Config
from ..data.dataset import load_dataset
from ..errors import InputError
from ..layout import Layout
from ..onnx.compare import sensitivity
from ..onnx.graph import load_onnx
from ..onnx.modelinfo import ModelInfo
from ..runtime.onnx import OnnxRunner
from ..stages.precision.ranges import load_ranges
from ..stages.precision.int8 import int8
from ..stages.precision.qdq import quantize_qdq, sensitivity_candidates
from ..vision.io import read_batch
from .evaluate import evaluate

STAGE_VERSION = 1
EVAL_PROTOCOL = {"conf": 0.001, "iou": 0.7, "max_det": 300}  # evaluate()'s defaults, part of the data key


def layer_sensitivity(sim_onnx: str | os.PathLike, ranges: dict, images: Sequence[Path],
                      imgsz: tuple[int, int] | None = None, candidates: Iterable[str] | None = None,
                      progress: bool = True) -> list[dict]:
    """Sensitivity of each candidate conv to INT8, most sensitive first: ``[{conv, score, cls_err, box_err}]``.

    Each conv is quantized alone (``quantize_qdq`` with every other candidate excluded) and run on ``images``
    (held-out images, e.g. 16 calibration images); the errors are :func:`trtbuild.onnx.compare.sensitivity`
    against FP32. ``candidates`` defaults to :func:`qdq.sensitivity_candidates` (every conv INT8 would quantize).
    """
    model = load_onnx(sim_onnx, check=False)
    hw = ModelInfo.of_onnx(model).run_hw(imgsz)
    cands = list(candidates) if candidates is not None else sensitivity_candidates(model)
    batch = read_batch(list(images), hw)
    ref = OnnxRunner(model).infer_all(batch)
    rows = []
    for conv in progress_bar(cands, desc="sensitivity", unit="conv", leave=False, disable=not progress):
        q, _ = quantize_qdq(model, ranges, exclude_nodes=set(cands) - {conv})
        rows.append({"conv": conv, **sensitivity(ref, OnnxRunner(q).infer_all(batch), hw)})
    rows.sort(key=lambda r: -r["score"])
    return rows


def data_key(data: str | os.PathLike, split: str = "val", limit: int | None = None) -> str:
    """Hash of what an evaluation's figures depend on besides the model: each image's bytes and labels (of the
    first ``limit`` items), the split, the limit and the evaluation protocol."""
    ds = load_dataset(data, split)
    items = ds.items[:limit] if limit else ds.items
    return sha256_json({
        "split": split, "limit": limit, "protocol": EVAL_PROTOCOL, "names": ds.names,
        "items": [(sha256_file(p), np.asarray(labels, np.float32).round(6).tolist()) for p, labels in items],
    })


def _eval(model: Path, data, split, limit, progress) -> dict:
    res = evaluate(model, EvalConfig(data=data, split=split, limit=limit), progress=progress)
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


def _held_out_images(ranges_json: Path, cfg: BudgetConfig) -> list[Path]:
    if cfg.images is not None:
        return list(cfg.images)
    cal = read_json(ranges_json) or {}
    root = Path(cal.get("images_dir", "."))
    images = [root / p for p in cal.get("images", [])][: cfg.sensitivity_images]
    if not images:
        raise InputError(f"{ranges_json} lists no calibration images; pass held-out images (images=DIR)",
                         param="images")
    return images


def fit_budget(sim_onnx: str | os.PathLike, ranges_json: str | os.PathLike | None, config: BudgetConfig, *,
               progress: bool = False) -> StageResult:
    """Fit INT8 into the accuracy budget (see the module docstring). The result's output is the model to deploy:
    ``<name>.int8.onnx`` when full INT8 fits, else ``<name>.int8fb.onnx`` (a stale one is removed when full INT8
    fits); its report is ``<name>.budget.json``.

    ``ranges_json`` None means ``<name>.ranges.json`` beside the model; ``config.images`` (held-out images for the
    sensitivity ranking) defaults to the first ``config.sensitivity_images`` calibration images listed in it.
    """
    cfg = config
    src = Path(sim_onnx)
    layout = Layout.of(src)
    ranges_json = Path(ranges_json) if ranges_json else layout.ranges
    if not ranges_json.is_file():
        raise InputError(f"{ranges_json} does not exist; run `trtbuild calibrate {src}` first")
    images = _held_out_images(ranges_json, cfg)
    hw = ModelInfo.of_onnx(src).run_hw(cfg.imgsz)
    dkey = data_key(cfg.data, cfg.split, cfg.limit)
    candidates = list(cfg.candidates) if cfg.candidates is not None else None
    key = sha256_json({
        "stage": "budget", "stage_version": STAGE_VERSION, "model": sha256_file(src),
        "ranges": sha256_file(ranges_json), "data": dkey, "split": cfg.split, "max_map_drop": float(cfg.max_map_drop),
        "limit": cfg.limit, "images": [sha256_file(p) for p in images], "imgsz": list(hw),
        "candidates": sorted(candidates) if candidates is not None else None,
        **({"int8": cfg.int8.to_dict()} if cfg.int8 != Int8Config() else {}),  # keys of earlier runs stay valid
        "versions": {p: package_version(p) for p in ("onnxruntime", "onnx")},
    })

    def make(outputs: Outputs) -> dict:
        data, split, limit = cfg.data, cfg.split, cfg.limit
        fp32 = _eval(src, data, split, limit, progress)
        full = int8(src, ranges_json, replace(cfg.int8, overwrite=cfg.overwrite), progress=progress)
        step0 = {**_eval(full.output, data, split, limit, progress), "step": 0, "excluded": []}
        step0["drop"] = _drop(fp32, step0)
        steps, ranking = [step0], []
        met = step0["drop"] <= cfg.max_map_drop + 1e-9
        if met:
            for stale in (layout.int8fb, layout.typed_report("int8fb")):
                owned.remove(stale, cfg.overwrite)  # an earlier budget's fallback model, if trtbuild's
        else:
            ranking = layer_sensitivity(src, load_ranges(ranges_json), images, hw, candidates, progress)
            ranked = [r["conv"] for r in ranking]
            for i, k in enumerate(_steps(len(ranked)), start=1):
                fb = int8(src, ranges_json, replace(cfg.int8, exclude=tuple(ranked[:k]), tag="int8fb",
                                                    overwrite=cfg.overwrite), progress=progress)
                step = {**_eval(fb.output, data, split, limit, progress), "step": i, "excluded": ranked[:k]}
                step["drop"] = _drop(fp32, step)
                steps.append(step)
                if step["drop"] <= cfg.max_map_drop + 1e-9:
                    met = True
                    break
        final = steps[-1]
        output = full.output if final["step"] == 0 else layout.int8fb
        outputs.record(output)
        return {
            "data_key": dkey, "input": str(src), "ranges": str(ranges_json), "data": str(data), "split": split,
            "limit": limit, "max_map_drop": float(cfg.max_map_drop), "sensitivity_images": [str(p) for p in images],
            "imgsz": list(hw), "fp32": fp32, "steps": steps, "met": met, "chosen_step": final["step"],
            "output": str(output), "excluded": final["excluded"],
            "message": (f"{'within' if met else 'could not meet'} the budget of {cfg.max_map_drop:g} point(s): "
                        f"mAP50-95 drop {final['drop']:.2f} with {len(final['excluded'])} conv(s) kept float"),
            "sensitivity": ranking,
        }

    return run_stage("budget", key, layout.budget, None, make, cfg.force, inputs={"model": src, "ranges": ranges_json},
                     overwrite=cfg.overwrite)
