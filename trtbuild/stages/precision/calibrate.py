"""The calibrate stage: pick images (``data/images.py``), measure activation ranges on them (``ranges.py``), write the ranges and the
TensorRT 10 table (``table.py``).

The ranges feed both INT8 paths: explicit Q/DQ in the ONNX (TensorRT 11, strongly typed) and the implicit-INT8
table TensorRT 10 reads (``<name>.calib.cache``). The table holds, for every tensor that gets a Q/DQ pair, the very
scale the Q/DQ ONNX will carry (its scale group's, ``qdq.quantize_qdq``), so a Jetson build from the table and a
build from the Q/DQ ONNX quantize alike. Images are letterboxed exactly as inference does. The stage is
keyed by the model's bytes, every selected image's bytes and the settings, so a changed image never reuses a
stale table.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...artifacts import Outputs, StageResult, package_version, run_stage, sha256_file, sha256_json
from ...config import CalibrateConfig
from ...data.images import few_images_warning, select_images
from ...errors import FewImagesWarning, InputError
from ...layout import Layout
from ...onnx.graph import load_onnx
from ...onnx.modelinfo import ModelInfo
from .qdq import quantize_qdq
from .ranges import DEFAULT_NUM_BINS, DEFAULT_QUANTIZED_BINS, CalibrationData, measure_ranges
from .table import format_table, ranges_to_scales, table_header

log = logging.getLogger(__name__)

STAGE = "calibrate"
STAGE_VERSION = 2  # 2: one-pass collector, percentile of |x|, table = Q/DQ scales
def calibration_key(model_path, images: Sequence[str | os.PathLike], imgsz, method: str, batch: int, **params) -> str:
    """Hash of everything the ranges depend on: model bytes, each image's bytes (in order), size, method, batch,
    parameters, the ORT version. Changing one image changes the key (a stale cache is never reused)."""
    return sha256_json({
        "stage": STAGE,
        "stage_version": STAGE_VERSION,
        "model_sha256": sha256_file(model_path),
        "images_sha256": [sha256_file(p) for p in images],
        "imgsz": list(imgsz),
        "method": method,
        "batch": int(batch),
        "params": params,
        "onnxruntime": package_version("onnxruntime"),
    })


def _run_hw(info: ModelInfo, src: Path, imgsz) -> tuple[int, int]:
    if imgsz is not None and info.static_hw and tuple(imgsz) != info.static_hw:
        h, w = info.static_hw
        raise InputError(f"{src}: its input is fixed at {h}x{w}; calibrate at that size (drop imgsz="
                         f"{imgsz[0]},{imgsz[1]})", param="imgsz")
    return info.run_hw(imgsz)


def calibrate(onnx_path: str | os.PathLike, config: CalibrateConfig = CalibrateConfig(), *,
              progress: bool = False) -> StageResult:
    """Calibrate ``onnx_path`` on the images under ``config.images``: writes ``<name>.ranges.json`` (ranges, key,
    selection, skipped files; the stage report) and ``<name>.calib.cache`` (TensorRT table) into ``config.out_dir``
    (default: beside the model). Skipped when the key (model, each image, settings) is unchanged."""
    cfg = config
    src = Path(onnx_path)
    info = ModelInfo.of_onnx(src)
    hw = _run_hw(info, src, cfg.imgsz)
    layout = Layout(Path(cfg.out_dir) if cfg.out_dir is not None else src.parent, Layout.of(src).name)
    ranges_path, table_path = layout.ranges, layout.calib_table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewImagesWarning)  # said once, in the report and by the caller
        selected, skipped = select_images(cfg.images, cfg.num, cfg.seed)
    header = table_header(cfg.trt_version)
    bins = cfg.num_bins or DEFAULT_NUM_BINS
    params = {"entropy": {"num_bins": bins, "num_quantized_bins": DEFAULT_QUANTIZED_BINS},
              "percentile": {"num_bins": bins, "percentile": cfg.percentile}, "mse": {"num_bins": bins},
              "minmax": {}}[cfg.method]
    params.update(tensors=list(cfg.tensors) if cfg.tensors is not None else None, table_header=header)
    key = calibration_key(src, selected, hw, cfg.method, cfg.batch, **params)

    def make(outputs: Outputs) -> dict:
        t0 = time.perf_counter()
        data = CalibrationData(selected, hw, cfg.batch, progress=progress)
        ranges, notes = measure_ranges(src, data, cfg.method, cfg.percentile, cfg.num_bins, cfg.tensors,
                                       DEFAULT_QUANTIZED_BINS)
        scales = table_scales(src, ranges)
        outputs.path(table_path).write_text(format_table(scales, header))
        root = Path(cfg.images)
        return {
            "model": str(src), "method": cfg.method, "params": params, "imgsz": list(hw), "batch": cfg.batch,
            "model_batch": info.batch, "seed": cfg.seed, "num_requested": cfg.num, "images_dir": str(root),
            "images": [p.relative_to(root).as_posix() for p in selected],
            "skipped": [{"path": p.relative_to(root).as_posix(), "reason": r} for p, r in skipped],
            "warning": few_images_warning(len(selected)),
            "padded_images": notes["padded_images"], "fallback_minmax": notes["fallback_minmax"],
            "collector": notes["collector"],
            "table": {"path": str(table_path), "header": header, "tensors": len(scales),
                      "qdq_scales": sum(1 for t in scales if t in ranges)},
            "seconds": {"collect": notes["collect_s"], "compute": notes["compute_s"],
                        "total": round(time.perf_counter() - t0, 3),
                        "images_per_s": round(len(selected) / max(time.perf_counter() - t0, 1e-9), 2)},
            "versions": {p: package_version(p) for p in ("onnxruntime", "onnx", "numpy")},
            "ranges": {k: [lo, hi] for k, (lo, hi) in ranges.items()},
        }

    return run_stage(STAGE, key, ranges_path, ranges_path, make, cfg.force, inputs={"model": src},
                     overwrite=cfg.overwrite)


def table_scales(model_path: Path, ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    """The TensorRT table's scales: ``amax / 127`` per tensor, except that every tensor the Q/DQ ONNX quantizes gets
    the float32 scale written there (its scale group's)."""
    scales = ranges_to_scales(ranges)
    _, plan = quantize_qdq(load_onnx(model_path, check=False), ranges)
    scales.update((t, float(np.float32(s))) for t, s in plan.quantized_tensors.items() if t in scales)
    return scales
