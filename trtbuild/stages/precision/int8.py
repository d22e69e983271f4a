"""The int8 stage: ``<name>.sim.onnx`` + calibration ranges → ``<name>.int8.onnx`` with TensorRT-fusable Q/DQ.

It wraps the graph rewrite (``qdq.quantize_qdq``) in the stage contract (``artifacts.run_stage``): inputs hashed
into a key, an atomic output and a JSON report, skipped when nothing changed. With ``reconstruct="adaquant"`` or
``"adaround"`` (opt-in: minutes on a CPU) the Q/DQ model's int8 weights, biases and activation scales are then
learned on calibration images (``reconstruct.py``); the output keeps the same form, so the build and everything
after it are unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import onnx

from ...artifacts import Outputs, StageResult, package_version, read_json, run_stage, sha256_file, sha256_json
from ...config import Int8Config
from ...errors import InputError
from ...layout import Layout
from ...onnx.graph import graph_counts, load_onnx
from ...onnx.modelinfo import ModelInfo
from .qdq import prequantized_report, quantize_qdq
from .ranges import CalibrationData, load_ranges
from .reconstruct import Schedule, reconstruct

STAGE_VERSION = 1


def _schedule(cfg: Int8Config) -> Schedule:
    """adaquant: free int8 weights (straight-through) and float biases; adaround: each weight rounded up or down.
    Both with the activation scales, every parameter at once on the head's detection-aware loss."""
    if cfg.reconstruct == "adaround":
        return Schedule(iters=cfg.reconstruct_steps, weights="round", bias=False)
    return Schedule(iters=cfg.reconstruct_steps)


def reconstruction_images(ranges_json: str | os.PathLike, num: int) -> list[Path]:
    """``num`` of the calibration images the ranges were measured on (listed in ``ranges_json``), evenly spread."""
    report = read_json(ranges_json) or {}
    root = Path(report.get("images_dir", "."))
    listed = [root / p for p in report.get("images", [])]
    if not listed:
        raise InputError(f"{ranges_json} lists no calibration images; recalibrate (trtbuild calibrate)")
    pick = np.linspace(0, len(listed) - 1, min(num, len(listed))).round().astype(int)
    chosen = [listed[i] for i in dict.fromkeys(pick.tolist())]
    if missing := [p for p in chosen if not p.is_file()]:
        raise InputError(f"{missing[0]}: a calibration image listed in {ranges_json} is gone; recalibrate "
                         f"(trtbuild calibrate) or pass reconstruct=none", param="reconstruct")
    return chosen


def _prequantized(src: Path, layout: Layout, cfg: Int8Config) -> StageResult:
    """A model exported with its own Q/DQ (quantization-aware training): written as NAME.int8.onnx as trained."""
    out = layout.typed(cfg.tag)
    if cfg.exclude or cfg.reconstruct != "none":
        raise InputError(f"{src} already has Q/DQ (a quantization-aware-trained export): it is built as trained, "
                         "without exclusions or reconstruction", param="reconstruct" if not cfg.exclude else "exclude")
    key = sha256_json({"stage": "int8", "stage_version": STAGE_VERSION, "model": sha256_file(src),
                       "prequantized": True})

    def make(outputs: Outputs) -> dict:
        model = load_onnx(src)
        rep = prequantized_report(model)
        tmp = outputs.path(out, ".onnx")
        onnx.save(model, str(tmp))
        return {"input": str(src), "ranges": None, "output": str(out), "exclude": [], "prequantized": True,
                **graph_counts(model), "qdq": rep.to_dict(), "bytes": tmp.stat().st_size, "reconstruct": None}

    return run_stage("int8", key, layout.typed_report(cfg.tag), out, make, cfg.force, inputs={"model": src},
                     overwrite=cfg.overwrite)


def int8(sim_onnx: str | os.PathLike, ranges_json: str | os.PathLike | None, config: Int8Config = Int8Config(), *,
         progress: bool = False) -> StageResult:
    """``<name>.sim.onnx`` + ranges → ``<name>.<tag>.onnx`` (+ ``.json``); ``config.exclude`` keeps those convs
    float; ``config.reconstruct`` learns the INT8 rounding and scales on calibration images. A model that already
    has Q/DQ (quantization-aware training) needs no ranges (``ranges_json`` None) and is written as trained."""
    cfg = config
    src = Path(sim_onnx)
    layout = Layout.of(src)
    if prequantized_report(load_onnx(src, check=False)) is not None:
        return _prequantized(src, layout, cfg)
    if ranges_json is None:
        raise InputError(f"{src}: INT8 needs calibration ranges (trtbuild calibrate {src})", param="ranges_json")
    ranges_json = Path(ranges_json)
    out = layout.typed(cfg.tag)
    exclude = sorted(cfg.exclude)
    parts = {"stage": "int8", "stage_version": STAGE_VERSION, "model": sha256_file(src),
             "ranges": sha256_file(ranges_json), "exclude": exclude, "onnx": package_version("onnx")}
    images: list[Path] = []
    if cfg.reconstruct != "none":
        images = reconstruction_images(ranges_json, cfg.reconstruct_images)
        parts.update(reconstruct=cfg.reconstruct, schedule=dataclasses.asdict(_schedule(cfg)),
                     images=[sha256_file(p) for p in images], torch=package_version("torch"))
    key = sha256_json(parts)

    def make(outputs: Outputs) -> dict:
        model = load_onnx(src)
        quantized, rep = quantize_qdq(model, load_ranges(ranges_json), exclude_nodes=set(exclude))
        if not rep.quantized_convs and len(exclude) < rep.convs:
            why = next(iter(rep.excluded_convs.values()), "no conv")
            raise InputError(f"{ranges_json}: no conv of {src} could be quantized with these ranges ({why}): the "
                             f"result would not be INT8; recalibrate this model: trtbuild calibrate {src}")
        learned = None
        if images:
            hw = ModelInfo.of_onnx(model).run_hw()
            pixels = np.empty((len(images), 3, *hw), np.float16)  # half the memory; fitted in float32
            start = 0
            for batch in CalibrationData(images, hw, batch=8):
                pixels[start : start + len(batch)] = batch
                start += len(batch)
            quantized, learned = reconstruct(quantized, model, pixels, _schedule(cfg), progress=progress)
            learned.update(method=cfg.reconstruct, image_files=[str(p) for p in images])
        tmp = outputs.path(out, ".onnx")
        onnx.save(quantized, str(tmp))
        return {"input": str(src), "ranges": str(ranges_json), "output": str(out), "exclude": exclude,
                **graph_counts(quantized), "qdq": rep.to_dict(), "bytes": tmp.stat().st_size,
                "reconstruct": learned}

    return run_stage("int8", key, layout.typed_report(cfg.tag), out, make, cfg.force,
                     inputs={"model": src, "ranges": ranges_json}, overwrite=cfg.overwrite)


def qdq_tensors(sim_onnx: str | os.PathLike) -> list[str]:
    """Activation tensors that get Q/DQ (so calibration need only measure these): found by planning with
    placeholder ranges for every tensor."""
    model = load_onnx(sim_onnx, check=False)
    names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    _, rep = quantize_qdq(model, {t: (-1.0, 1.0) for t in names})
    return sorted(rep.quantized_tensors)
