"""``trtbuild engine`` / ``make engine``: run every stage whose inputs changed, as far as this host allows.

Each stage is hash-keyed (see artifacts.py), so a second run with nothing changed only re-hashes files.
On a host without TensorRT or a GPU the engine build is skipped with one line saying why (an error
with ``strict``), after every stage that can run here has run.
"""

from __future__ import annotations

import warnings
from typing import Callable

from .artifacts import StageResult
from .config import PipelineConfig
from .console import human_bytes
from .cuda_probe import probe_cuda
from .errors import DependencyMissingError, TrtbuildError
from .export_onnx import export
from .simplify_onnx import simplify
from .trt.compat import INSTALL_HINT, tensorrt_info


def describe_export(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"export    {res.output} is up to date"
    shape = " ".join(f"{s['name']}{list(s['shape'])}" for s in r["outputs_spec"])
    return (
        f"export    {r['model']} → {res.output} ({human_bytes(r['file_size'])}, {r['nodes']} nodes, "
        f"{shape}, {r['seconds']:.1f} s)"
    )


def describe_simplify(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"simplify  {res.output} is up to date"
    if not r["simplified"]:
        return f"simplify  kept the unsimplified graph in {res.output}: {r['reason']}"
    p = r["parity"]
    return (
        f"simplify  {r['input']} → {res.output} ({r['nodes_before']} → {r['nodes_after']} nodes, "
        f"parity max abs {p['max_abs']:.3g}, rel {p['max_rel']:.3g} ≤ {p['rtol']:g}, {r['seconds']:.1f} s)"
    )


def engine_build_blocker() -> str | None:
    """Why no engine can be built on this host, or None when TensorRT and a GPU are both here."""
    trt = tensorrt_info()
    if not trt.installed:
        return f"TensorRT is {trt.error} on this host ({INSTALL_HINT})"
    cuda = probe_cuda()
    if not cuda.gpus:
        return f"TensorRT {trt.version} is installed but {cuda.error}"
    return None


def describe_precision(res: StageResult, label: str) -> str:
    r = res.report
    if res.skipped:
        return f"{label:<9} {res.output} is up to date"
    if r["stage"] == "fp16":
        kept = r["conversion"]["kept_fp32"]
        return (f"{label:<9} {r['input']} → {res.output} ({len(kept)} node(s) kept FP32 for range, "
                f"{r['casts']} casts, {r['seconds']:.1f} s)")
    q = r["qdq"]
    return (f"{label:<9} {r['input']} → {res.output} ({len(q['quantized_convs'])}/{q['convs']} convs INT8, "
            f"{r['qdq_pairs']} Q/DQ pairs, {len(r['exclude'])} kept in float, {r['seconds']:.1f} s)")


def _precision_stages(cfg: PipelineConfig, sim: StageResult, echo) -> dict:
    """FP16 typed ONNX and INT8 (calibration ranges, TensorRT table, Q/DQ ONNX) as requested."""
    from .graph import io_specs, load_onnx
    from .precision.calibrate import calibrate, describe_calibrate, select_images
    from .precision.stages import fp16_stage, int8_stage, qdq_tensors

    results: dict = {}
    if not ({"fp16", "int8"} & set(cfg.precisions)) and not cfg.data:
        return results
    (inp,), _ = io_specs(load_onnx(sim.output, check=False))
    imgsz = tuple(inp.shape[2:4])
    images: list = []
    if cfg.calib.is_dir():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the calibrate stage reports a small set in its own words
                images, _ = select_images(cfg.calib, cfg.calib_num, 0)
        except TrtbuildError:
            if "int8" in cfg.precisions:
                raise
    if "fp16" in cfg.precisions:
        results["fp16"] = fp16_stage(sim.output, images, imgsz, force=cfg.force)
        echo(describe_precision(results["fp16"], "fp16"))
    if "int8" in cfg.precisions:
        cal = calibrate(sim.output, cfg.calib, num=cfg.calib_num, batch=cfg.calib_batch, method=cfg.calib_method,
                        force=cfg.force, tensors=qdq_tensors(sim.output), progress=True)
        echo(describe_calibrate(cal))
        if cal.report.get("warning"):
            echo(f"calibrate warning: {cal.report['warning']}")
        results["calibrate"] = cal
        results["int8"] = int8_stage(sim.output, cal.output, force=cfg.force)
        echo(describe_precision(results["int8"], "int8"))
        if cfg.data:
            from .precision.budget import fit_budget

            budget = fit_budget(sim.output, cal.output, cfg.data, max_map_drop=cfg.max_map_drop,
                                force=cfg.force, progress=True)
            results["budget"] = budget
            echo(describe_budget(budget))
    if cfg.data:
        from .precision.report import precision_report

        report = precision_report(sim.output, cfg.data, force=cfg.force, progress=True)
        results["report"] = report
        state = "is up to date" if report.get("skipped") else "written"
        echo(f"report    {report['files']['md']} {state} (+ .json, .png)")
    return results


def describe_budget(budget: dict) -> str:
    if budget.get("skipped"):
        return f"budget    {budget['output']} is up to date"
    steps = budget["steps"]
    chosen = steps[-1]
    state = "met" if budget["met"] else "NOT met"
    return (f"budget    INT8 drop {steps[0]['drop']:.2f} pt of mAP50-95 → {chosen['drop']:.2f} pt with "
            f"{len(chosen['excluded'])} conv(s) in float ({state}, budget {budget['max_map_drop']} pt); "
            f"deploy {budget['output']}")


def run_pipeline(cfg: PipelineConfig, echo: Callable[[str], None] = print) -> dict:
    """Run the stages; return a summary dict (stage results and the build decision)."""
    exp = export(cfg.model, cfg.export, cfg.out_dir, cfg.name, cfg.force)
    echo(describe_export(exp))
    sim = simplify(exp.output, cfg.simplify, force=cfg.force, strict=cfg.strict)
    echo(describe_simplify(sim))
    precision = _precision_stages(cfg, sim, echo)
    blocker = engine_build_blocker()
    precisions = ",".join(cfg.precisions)
    engines = {}
    if blocker:
        message = f"build skipped ({precisions}): {blocker}"
        if cfg.strict:
            raise DependencyMissingError(f"engine {message} [STRICT=1 makes this an error]")
        echo(f"engine    {message}; the ONNX artifacts above are ready for a TensorRT host")
    else:
        engines = _build_engines(cfg, sim, echo)
    return {"export": exp, "simplify": sim, **precision, "engines": engines, "engine_skipped": blocker}


def _build_engines(cfg: PipelineConfig, sim: StageResult, echo) -> dict:
    """One engine per precision from the ONNX artifacts above (cached by key: a no-op when nothing changed)."""
    from .trt.build_cli import describe_build
    from .trt.buildspec import BuildOptions
    from .trt.builder import build

    dynamic = cfg.export.dynamic or cfg.export.dynamic_hw
    engines = {}
    for p in cfg.precisions:
        options = BuildOptions(precision=p, max_batch=cfg.export.batch if dynamic else None,
                               opt_hw=cfg.export.imgsz if cfg.export.dynamic_hw else None)
        engines[p] = build(sim.output, options, cfg.out_dir, cfg.name, force=cfg.force)
        echo(describe_build(engines[p]))
    return engines
