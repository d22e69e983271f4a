"""Stage 2: ONNX → simplified ONNX with onnxsim, a before/after report and an ONNX Runtime parity check.

onnxsim does the work; we add what a build step needs around it: the parity check on random input
(max abs and relative error, with a failure threshold), and the rule that a failed or non-equivalent
simplification keeps the unsimplified graph (said in the report and on the console) instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from ..artifacts import (Outputs, StageResult, deferred_interrupts, package_version, run_stage, sha256_file,
                         sha256_json)
from ..config import SimplifyConfig
from ..console import capture_fd_stderr
from ..errors import ParityError, UnsupportedModelError
from ..layout import sim_path, simplify_report_path
from ..onnx.compare import parity_error
from ..onnx.graph import io_specs, load_onnx, op_histogram
from ..onnx.modelinfo import DEFAULT_IMGSZ, ModelInfo

STAGE = "simplify"
STAGE_VERSION = 2


def _concrete_input(spec, cfg: SimplifyConfig, hw: tuple[int, int]) -> tuple[int, ...]:
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif axis == 0:
            shape.append(cfg.check_batch)
        else:
            shape.append(hw[axis - 2] if axis in (2, 3) else 1)
    return tuple(shape)


def _run_hw(model: onnx.ModelProto) -> tuple[int, int]:
    """The size a YOLO model runs at (its static size, else its export's); the default size for any other graph."""
    try:
        return ModelInfo.of_onnx(model).run_hw()
    except UnsupportedModelError:
        return DEFAULT_IMGSZ


def parity(reference, candidate, cfg: SimplifyConfig) -> dict:
    """Run both ONNX models (paths or bytes) in ONNX Runtime on the same seeded random input; compare outputs
    with :func:`trtbuild.onnx.compare.parity_error` (per output channel: a YOLO head ``[B, 4+nc, A]`` mixes box
    coordinates (hundreds) and scores (0..1), and a scale taken over the whole tensor would hide score errors).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref = ort.InferenceSession(reference, opts, providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(candidate, opts, providers=["CPUExecutionProvider"])
    ref_model = load_onnx(reference, check=False) if isinstance(reference, (str, Path)) else None
    ins, _ = io_specs(ref_model) if ref_model is not None else ([], [])
    hw = _run_hw(ref_model) if ref_model is not None else DEFAULT_IMGSZ
    rng = np.random.default_rng(cfg.seed)
    feeds = {}
    for spec in ins:
        feeds[spec.name] = rng.random(_concrete_input(spec, cfg, hw), dtype=np.float32)
    err = parity_error(ref.run(None, feeds), cand.run(None, feeds))
    if "reason" in err:
        return {"ok": False, "reason": err["reason"]}
    ok = err["max_rel"] <= cfg.rtol
    return {
        "ok": ok,
        "max_abs": err["max_abs"],
        "max_rel": err["max_rel"],
        "rtol": cfg.rtol,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "reason": None if ok else f"max relative error {err['max_rel']:.3g} exceeds {cfg.rtol:g}",
    }


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


def simplify(onnx_path: str | os.PathLike, config: SimplifyConfig = SimplifyConfig()) -> StageResult:
    """Simplify ``onnx_path`` to ``<name>.sim.onnx`` (+ ``<name>.simplify.json``); skipped when up to date.

    If onnxsim fails or its result breaks parity, the unsimplified graph is written instead and the report
    says why (``config.strict`` raises instead).
    """
    cfg = config
    src = Path(onnx_path)
    original = load_onnx(src)  # clear error for a missing/truncated/invalid file before anything else
    out = Path(cfg.out) if cfg.out else sim_path(src)

    def make(outputs: Outputs) -> dict:
        import onnxsim

        before_bytes = src.stat().st_size
        simplified_ok, reason, check = False, None, None
        try:
            with deferred_interrupts(), capture_fd_stderr() as native_log:  # C++ warnings go to the report
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
            if cfg.strict:
                raise ParityError(f"{src}: simplification rejected ({reason}); rerun without strict=True to keep the "
                                  "original", param="strict")
            candidate = original
        tmp = outputs.path(out, ".onnx")
        onnx.save(candidate, str(tmp))
        return {
            "input": str(src),
            "output": str(out),
            "simplified": simplified_ok,
            "reason": reason,
            "config": cfg.to_dict(),
            "nodes_before": len(original.graph.node),
            "nodes_after": len(candidate.graph.node),
            "ops_before": op_histogram(original),
            "ops_after": op_histogram(candidate),
            "bytes_before": before_bytes,
            "bytes_after": tmp.stat().st_size,
            "parity": check,
            "onnxsim_log": native_log.lines[:50],
            "versions": {p: package_version(p) for p in ("onnxsim", "onnx", "onnxruntime")},
        }

    return run_stage(STAGE, simplify_key(src, cfg), simplify_report_path(out), out, make, cfg.force,
                     inputs={"model": src}, overwrite=cfg.overwrite)
