"""What the CLI prints: one line per stage result (``describe``), and the budget's step table.

Library functions return results; only the CLI decides how they read on a terminal.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..artifacts import StageResult
from ..console import human_bytes, table
from ..stages.precision.qdq import QDQReport
from ..stages.precision.table import amax
from ..trt.compat import LABELS


def _export(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"export    {res.output} is up to date"
    shape = " ".join(f"{s['name']}{list(s['shape'])}" for s in r["outputs_spec"])
    return (f"export    {r['model']} → {res.output} ({human_bytes(r['file_size'])}, {r['nodes']} nodes, "
            f"{shape}, {r['seconds']:.1f} s)")


def _simplify(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"simplify  {res.output} is up to date"
    if not r["simplified"]:
        return f"simplify  kept the unsimplified graph in {res.output}: {r['reason']}"
    p = r["parity"]
    return (f"simplify  {r['input']} → {res.output} ({r['nodes_before']} → {r['nodes_after']} nodes, "
            f"parity max abs {p['max_abs']:.3g}, rel {p['max_rel']:.3g} ≤ {p['rtol']:g}, {r['seconds']:.1f} s)")


def _typed(res: StageResult, label: str) -> str:
    r = res.report
    if res.skipped:
        return f"{label:<9} {res.output} is up to date"
    if r["stage"] == "fp16":
        kept = r["conversion"]["kept_fp32"]
        return (f"{label:<9} {r['input']} → {res.output} ({len(kept)} node(s) kept FP32 for range, "
                f"{r['casts']} casts, {r['seconds']:.1f} s)")
    q = r["qdq"]
    line = (f"{label:<9} {r['input']} → {res.output} ({len(q['quantized_convs'])}/{q['convs']} convs INT8, "
            f"{r['qdq_pairs']} Q/DQ pairs; float: {_float_summary(q)}, {r['seconds']:.1f} s)")
    if label != "int8" or "reconstruct" not in r or r.get("prequantized"):
        return line
    rec = r["reconstruct"]
    if rec is None:
        return line + ("\n          learned INT8 weights are off: --reconstruct adaquant (make: RECONSTRUCT=adaquant; "
                       "minutes, docs/precision.md)")
    return (line + f"\n          learned INT8 weights ({rec['method']}): {rec['images']} images, "
            f"{rec['schedule']['iters']} steps, {rec['changed_weights']['weights_changed']} of "
            f"{rec['changed_weights']['weights']} weights off round-to-nearest, {rec['seconds']:.0f} s")


def _float_summary(q: dict) -> str:
    """``QDQReport.float_summary`` from the report's dict (reports written before it lack ``float_ops``)."""
    return QDQReport(excluded_convs=q["excluded_convs"], float_ops=q.get("float_ops", {})).float_summary()


def _calibrate(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"calibrate {res.output} is up to date ({len(r['ranges'])} tensors, {len(r['images'])} images)"
    amaxes = [amax(v) for v in r["ranges"].values()] or [0.0]
    skipped = f" ({len(r['skipped'])} file(s) skipped)" if r["skipped"] else ""
    return (f"calibrate {r['model']}: {len(r['images'])} image(s) from {r['images_dir']}{skipped}, {r['method']}, "
            f"batch {r['batch']}, {r['imgsz'][0]}x{r['imgsz'][1]} → {len(r['ranges'])} tensors "
            f"(amax {min(amaxes):.3g}…{max(amaxes):.3g}, {r['seconds']['total']:.1f} s)")


def _budget(res: StageResult) -> str:
    if res.skipped:
        return f"budget    {res.output} is up to date"
    r = res.report
    steps = r["steps"]
    chosen = steps[-1]
    state = "met" if r["met"] else "NOT met"
    return (f"budget    INT8 drop {steps[0]['drop']:.2f} pt of mAP50-95 → {chosen['drop']:.2f} pt with "
            f"{len(chosen['excluded'])} conv(s) in float ({state}, budget {r['max_map_drop']} pt); "
            f"deploy {res.output}")


def _report(res: StageResult) -> str:
    state = "is up to date" if res.skipped else "written"
    return f"report    {res.output} {state} (+ .json, .png)"


def _build(res: StageResult) -> str:
    meta = res.report
    label = f"{LABELS[meta.get('flavor', 'tensorrt')]} {meta['tensorrt_version']}"
    if res.skipped:
        return f"engine    {res.output} is up to date ({meta['precision']}, {label})"
    prof = ", ".join(f"{k} {v[0]}→{v[2]}" for k, v in meta["profiles"].items() if v[0] != v[2]) or "static shapes"
    source = os.path.normpath(Path(res.output).parent / meta["source_onnx"])
    where = (f"for sm {', '.join(meta['target_compute_capabilities'])}, no GPU needed"
             if meta.get("target_compute_capabilities") else f"on {meta['gpu']['name']}")
    return (f"engine    {source} → {res.output} ({human_bytes(meta['engine_bytes'])}, "
            f"{meta['precision']}, {meta['typing']} typing, {prof}, {label} {where}, {meta['build_seconds']:.1f} s)")


def _check(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"check     {r['input']} is up to date ({r['tensorrt']}: {'ok' if r['ok'] else 'problems'})"
    q = r["qdq"]
    qdq = (f", {q['quantize_layers']}/{q['onnx_quantize']} Q/DQ pairs accepted" if q["onnx_quantize"] else "")
    verdict = "ok" if r["ok"] else f"{len(r['problems'])} problem(s): {r['problems'][0]}"
    return f"check     {r['input']}: {r['tensorrt']} parsed {r['layers']} layers{qdq}; {verdict}"


def _qat(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"qat       {res.output} is up to date"
    m = r["metrics"]
    val = f", val mAP50-95 {m['metrics/mAP50-95(B)']:.4f}" if "metrics/mAP50-95(B)" in m else ""
    return (f"qat       {r['model']} → {res.output} (INT8 quantization-aware training, {r['config']['epochs']} "
            f"epoch(s) on {r['train_images']} images at {r['config']['imgsz']}{val}, {r['seconds']:.0f} s)")


def _nms(res: StageResult) -> str:
    state = "is up to date" if res.skipped else f"written ({res.report['nodes_added']} nodes added)"
    return f"nms       {res.output} {state}: output detections {res.report['output_shape']}"


_LINES = {"export": _export, "simplify": _simplify, "calibrate": _calibrate, "budget": _budget, "report": _report,
          "build": _build, "nms": _nms, "check": _check, "qat": _qat}


def describe(res: StageResult | str, label: str | None = None) -> str:
    """One line for a stage result (a text line is passed through): what it made, or that it is up to date."""
    if isinstance(res, str):
        return res
    stage = res.stage
    if stage in ("fp16", "int8"):
        return _typed(res, label or stage)
    return _LINES[stage](res)


def format_budget(res: StageResult) -> str:
    """The budget's steps as a text table (FP32 first), then the verdict."""
    report = res.report
    fp = report["fp32"]
    rows = [("FP32", "-", f"{fp['map50']:.4f}", f"{fp['map50_95']:.4f}", "0.00", "")]
    for s in report["steps"]:
        ex = s["excluded"]
        label = "none" if not ex else (ex[0] if len(ex) == 1 else f"{len(ex)} convs")
        ok = "yes" if s["drop"] <= report["max_map_drop"] + 1e-9 else "no"
        rows.append((f"INT8 step {s['step']}", label, f"{s['map50']:.4f}", f"{s['map50_95']:.4f}",
                     f"{s['drop']:.2f}", ok))
    text = table(rows, ("model", "kept float", "mAP50", "mAP50-95", "drop (pts)", "within budget"))
    state = "up to date" if res.skipped else f"{report['seconds']:.0f} s"
    return f"{text}\n{report['message']} → {report['output']} ({state})"
