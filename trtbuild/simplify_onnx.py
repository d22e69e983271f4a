"""Stage 2: ONNX → simplified ONNX with onnxsim, a before/after report and an ONNX Runtime parity check.

onnxsim does the work; we add what a build step needs around it: the parity check on random input
(max abs and relative error, with a failure threshold), and the rule that a failed or non-equivalent
simplification keeps the unsimplified graph (said in the report and on the console) instead of failing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .artifacts import (
    StageResult,
    atomic_path,
    cached_report,
    output_hashes,
    package_version,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from .config import SimplifyConfig
from .console import capture_fd_stderr
from .errors import ParityError

STAGE = "simplify"
STAGE_VERSION = 2


def sim_path_for(onnx_path: Path) -> Path:
    """``engines/yolov8n.onnx`` → ``engines/yolov8n.sim.onnx``."""
    return onnx_path.with_name(onnx_path.name[: -len(".onnx")] + ".sim.onnx")


def _concrete_input(spec, cfg: SimplifyConfig, meta_imgsz) -> tuple[int, ...]:
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif axis == 0:
            shape.append(cfg.check_batch)
        elif axis in (2, 3) and meta_imgsz:
            shape.append(int(meta_imgsz[axis - 2]))
        else:
            shape.append(640 if axis in (2, 3) else 1)
    return tuple(shape)


def parity(reference, candidate, cfg: SimplifyConfig) -> dict:
    """Run both ONNX models (paths or bytes) in ONNX Runtime on the same seeded random input; compare outputs.

    ``rel`` is max |a - b| / max |a| taken per channel (axis 1) of each output, worst one reported: a YOLO
    head ``[B, 4+nc, A]`` mixes box coordinates (hundreds) and scores (0..1), and a scale taken over the
    whole tensor would hide any error in the scores.
    """
    import onnxruntime as ort

    from .graph import get_metadata, io_specs, load_onnx, parse_literal

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref = ort.InferenceSession(reference, opts, providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(candidate, opts, providers=["CPUExecutionProvider"])
    ref_model = load_onnx(reference, check=False) if isinstance(reference, (str, Path)) else None
    meta_imgsz = parse_literal(get_metadata(ref_model).get("imgsz")) if ref_model is not None else None
    ins, _ = io_specs(ref_model) if ref_model is not None else ([], [])
    rng = np.random.default_rng(cfg.seed)
    feeds = {}
    for spec in ins:
        feeds[spec.name] = rng.random(_concrete_input(spec, cfg, meta_imgsz), dtype=np.float32)
    a = ref.run(None, feeds)
    b = cand.run(None, feeds)
    max_abs = max_rel = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return {"ok": False, "reason": f"output shapes differ: {x.shape} vs {y.shape}"}
        diff = np.abs(x.astype(np.float64) - y)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(np.max(_per_channel(diff) / _per_channel(np.abs(x)).clip(1e-12))))
    ok = max_rel <= cfg.rtol
    return {
        "ok": ok,
        "max_abs": max_abs,
        "max_rel": max_rel,
        "rtol": cfg.rtol,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "reason": None if ok else f"max relative error {max_rel:.3g} exceeds {cfg.rtol:g}",
    }


def _per_channel(values: np.ndarray) -> np.ndarray:
    """Max over every axis but 1 (the channel axis); the whole-tensor max for outputs of rank < 2."""
    if values.ndim < 2:
        return np.array([values.max()]) if values.size else np.zeros(1)
    return values.max(axis=tuple(i for i in range(values.ndim) if i != 1))


def simplify_key(src: Path, cfg: SimplifyConfig) -> str:
    return sha256_json(
        {
            "stage": STAGE,
            "stage_version": STAGE_VERSION,
            "input_sha256": sha256_file(src),
            "config": cfg.to_dict(),
            "onnxsim": package_version("onnxsim"),
            "onnx": package_version("onnx"),
            "onnxruntime": package_version("onnxruntime"),
        }
    )


def simplify(
    onnx_path: str | os.PathLike,
    config: SimplifyConfig | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    strict: bool = False,
) -> StageResult:
    """Simplify ``onnx_path`` to ``<name>.sim.onnx`` (+ ``<name>.simplify.json``); skipped when up to date.

    If onnxsim fails or its result breaks parity, the unsimplified graph is written instead and the report
    says why (``strict=True`` raises instead).
    """
    import onnx

    from .graph import load_onnx, op_histogram

    cfg = config or SimplifyConfig()
    src = Path(onnx_path)
    original = load_onnx(src)  # clear error for a missing/truncated/invalid file before anything else
    out = Path(out) if out else sim_path_for(src)
    report_path = out.with_name(out.name[: -len(".sim.onnx")] + ".simplify.json") if out.name.endswith(
        ".sim.onnx"
    ) else out.with_suffix(".simplify.json")
    key = simplify_key(src, cfg)
    if not force and (report := cached_report(report_path, key, [out])):
        return StageResult(out, report_path, report, skipped=True)

    import onnxsim

    t0 = time.perf_counter()
    before_bytes = src.stat().st_size
    simplified_ok, reason, check = False, None, None
    try:
        with capture_fd_stderr() as native_log:  # onnxsim's C++ warnings go to the report, not the console
            candidate, checked = onnxsim.simplify(original, check_n=0)
        if not checked:
            reason = "onnxsim reported the simplified model as not equivalent"
    except Exception as exc:
        candidate, reason = None, f"onnxsim failed: {type(exc).__name__}: {str(exc).strip()[:200]}"
    if candidate is not None and reason is None:
        check = parity(str(src), candidate.SerializeToString(), cfg)
        if check["ok"]:
            simplified_ok = True
        else:
            reason = f"parity check failed: {check['reason']}"
    if not simplified_ok:
        if strict:
            raise ParityError(f"{src}: simplification rejected ({reason}); rerun without --strict to keep the original")
        candidate = original
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save(candidate, str(tmp))
    report = {
        "stage": STAGE,
        "key": key,
        "input": str(src),
        "output": str(out),
        "outputs": output_hashes([out]),
        "simplified": simplified_ok,
        "reason": reason,
        "config": cfg.to_dict(),
        "nodes_before": len(original.graph.node),
        "nodes_after": len(candidate.graph.node),
        "ops_before": op_histogram(original),
        "ops_after": op_histogram(candidate),
        "bytes_before": before_bytes,
        "bytes_after": out.stat().st_size,
        "parity": check,
        "onnxsim_log": native_log.lines[:50],
        "seconds": round(time.perf_counter() - t0, 3),
        "versions": {p: package_version(p) for p in ("onnxsim", "onnx", "onnxruntime")},
    }
    write_json_atomic(report_path, report)
    return StageResult(out, report_path, report, skipped=False)
