"""Precision stages as hash-keyed artifact functions: ``<name>.fp16.onnx`` and ``<name>.int8.onnx``.

They wrap the graph rewrites (``fp16.convert_fp16``, ``qdq.quantize_qdq``) with what the pipeline needs:
inputs hashed into a key, atomic outputs, a JSON report per artifact, and skipping when nothing changed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from ..artifacts import (
    StageResult,
    atomic_path,
    cached_report,
    output_hashes,
    package_version,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from .calibrate import artifact_name

STAGE_VERSION = 1
FP16_RANGE_IMAGES = 32  # images whose min/max decide which nodes must stay FP32


def _save(model, out: Path) -> None:
    import onnx

    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))


def _counts(model) -> dict:
    ops = [n.op_type for n in model.graph.node]
    return {
        "nodes": len(ops),
        "qdq_pairs": ops.count("QuantizeLinear"),
        "dequantize_nodes": ops.count("DequantizeLinear"),
        "casts": ops.count("Cast"),
    }


def fp16_ranges(sim_onnx: Path, images: list[Path], imgsz) -> dict[str, tuple[float, float]]:
    """Observed min/max of every tensor on the first ``FP16_RANGE_IMAGES`` calibration images."""
    from .calibrate import CalibrationData, compute_ranges

    data = CalibrationData(images[:FP16_RANGE_IMAGES], imgsz, batch=8)
    return compute_ranges(sim_onnx, data, method="minmax")


def fp16_stage(sim_onnx: str | Path, images: list[Path], imgsz, max_abs: float = 512.0,
               keep_io_types: bool = True, force: bool = False) -> StageResult:
    """``<name>.sim.onnx`` → ``<name>.fp16.onnx`` (+ ``<name>.fp16.json``): FP16 where safe, FP32 decode."""
    from ..graph import load_onnx
    from .fp16 import convert_fp16

    src = Path(sim_onnx)
    name = artifact_name(src)
    out, report_path = src.with_name(f"{name}.fp16.onnx"), src.with_name(f"{name}.fp16.json")
    key = sha256_json({
        "stage": "fp16", "stage_version": STAGE_VERSION, "model": sha256_file(src),
        "images": [sha256_file(p) for p in images[:FP16_RANGE_IMAGES]], "imgsz": list(imgsz),
        "max_abs": max_abs, "keep_io_types": keep_io_types, "onnx": package_version("onnx"),
    })
    if not force and (report := cached_report(report_path, key, [out])):
        return StageResult(out, report_path, report, skipped=True)
    t0 = time.perf_counter()
    model = load_onnx(src)
    # without calibration images the decode is found by graph pattern instead of by observed values
    ranges = fp16_ranges(src, images, imgsz) if images else None
    converted, rep = convert_fp16(model, ranges, keep_io_types=keep_io_types, max_abs=max_abs)
    _save(converted, out)
    report = {
        "stage": "fp16", "key": key, "input": str(src), "output": str(out), "outputs": output_hashes([out]),
        "max_abs": max_abs, "keep_io_types": keep_io_types, "range_images": len(images[:FP16_RANGE_IMAGES]),
        **_counts(converted),
        "conversion": rep.to_dict(), "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json_atomic(report_path, report)
    return StageResult(out, report_path, report, skipped=False)


def int8_stage(sim_onnx: str | Path, ranges_json: str | Path, exclude: Iterable[str] = (),
               suffix: str = "int8", force: bool = False) -> StageResult:
    """``<name>.sim.onnx`` + calibration ranges → ``<name>.<suffix>.onnx`` with TensorRT-fusable Q/DQ.

    ``exclude`` names Conv nodes kept in float (the accuracy-budget fallback).
    """
    from ..graph import load_onnx
    from .calibrate import load_ranges
    from .qdq import quantize_qdq

    src, ranges_json = Path(sim_onnx), Path(ranges_json)
    name = artifact_name(src)
    out, report_path = src.with_name(f"{name}.{suffix}.onnx"), src.with_name(f"{name}.{suffix}.json")
    exclude = sorted(set(exclude))
    key = sha256_json({
        "stage": "int8", "stage_version": STAGE_VERSION, "model": sha256_file(src),
        "ranges": sha256_file(ranges_json), "exclude": exclude, "onnx": package_version("onnx"),
    })
    if not force and (report := cached_report(report_path, key, [out])):
        return StageResult(out, report_path, report, skipped=True)
    t0 = time.perf_counter()
    quantized, rep = quantize_qdq(load_onnx(src), load_ranges(ranges_json), exclude_nodes=set(exclude))
    _save(quantized, out)
    report = {
        "stage": "int8", "key": key, "input": str(src), "ranges": str(ranges_json), "output": str(out),
        "outputs": output_hashes([out]), "exclude": exclude, **_counts(quantized),
        "qdq": rep.to_dict(), "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json_atomic(report_path, report)
    return StageResult(out, report_path, report, skipped=False)


def qdq_tensors(sim_onnx: str | Path) -> list[str]:
    """Activation tensors that get Q/DQ (so calibration need only measure these): found by planning with
    placeholder ranges for every tensor."""
    from ..graph import load_onnx
    from .qdq import quantize_qdq

    model = load_onnx(sim_onnx, check=False)
    names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    _, rep = quantize_qdq(model, {t: (-1.0, 1.0) for t in names})
    return sorted(rep.quantized_tensors)
