"""Commands on the TensorRT side: ``engine`` (the whole pipeline, ``make engine``), ``build`` (an engine from an
ONNX), ``check`` and ``inspect`` (what TensorRT made of it)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..artifacts import write_bytes_atomic, write_json_atomic
from ..config import (
    CALIB_METHODS,
    DEFAULT_CALIB,
    DEFAULT_MODEL,
    DEFAULT_OUT_DIR,
    HW_COMPAT,
    INT8_MODES,
    RECONSTRUCT_METHODS,
    REFERENCE_MODEL,
    TRT_FLAVORS,
    BudgetConfig,
    BuildConfig,
    CalibrateConfig,
    CheckConfig,
    ExportConfig,
    Int8Config,
    PipelineConfig,
    ReportConfig,
    parse_precisions,
)
from ..errors import DeprecatedPluginWarning, InputError, TrtbuildError
from ..layout import layers_path
from ..tasks.pipeline import run_pipeline
from ..trt.builder import build
from ..trt.check import check, require_ok
from ..trt.inspect import format_markdown, format_text, inspect_path, plot_histogram
from .common import (
    EXPORT_OPTIONS,
    FLAVOR_OPTIONS,
    OVERWRITE_OPTION,
    current_host,
    imgsz_option,
    warning_lines,
    with_flags,
    with_options,
)
from .present import describe


@click.command("build")
@click.argument("onnx", type=click.Path(dir_okay=False))
@click.option("--precision", default="fp16", show_default=True, type=click.Choice(["fp32", "fp16", "int8"]),
              help="Engine precision. fp16/int8 use NAME.fp16.onnx / NAME.int8.onnx beside ONNX where the TensorRT "
                   "version needs typed input (11.x; 10.12+ strongly typed).")
@click.option("--int8-mode", default="auto", show_default=True, type=click.Choice(INT8_MODES),
              help="qdq: Q/DQ ONNX (10.x and 11.x); table: implicit INT8 from NAME.calib.cache (10.x); "
                   "calibrate: live TensorRT calibration on the --calib images (10.x, needs pycuda); auto: qdq.")
@click.option("--calib", default=str(DEFAULT_CALIB), show_default=True, type=click.Path(file_okay=False),
              help="Images for --int8-mode calibrate.")
@click.option("--min-batch", type=click.IntRange(min=1), help="Smallest batch of the profile (dynamic-batch ONNX).")
@click.option("--opt-batch", type=click.IntRange(min=1), help="Batch TensorRT tunes for [default: max].")
@click.option("--max-batch", type=click.IntRange(min=1), help="Largest batch [default: 8].")
@click.option("--min-hw", callback=imgsz_option, help="Smallest H,W (dynamic-H/W ONNX).")
@click.option("--opt-hw", callback=imgsz_option, help="H,W TensorRT tunes for (required for dynamic-H/W ONNX).")
@click.option("--max-hw", callback=imgsz_option, help="Largest H,W.")
@click.option("--workspace-mb", type=click.IntRange(min=16),
              help="Builder workspace limit [default: 4096, 1024 on integrated GPUs (Jetson)].")
@click.option("--opt-level", default=3, show_default=True, type=click.IntRange(0, 5),
              help="Builder optimization level (higher: longer build, maybe faster engine).")
@click.option("--hardware-compat", default="none", show_default=True, type=click.Choice(HW_COMPAT),
              help="ampere+: the engine runs on any Ampere or newer GPU; same-cc: any GPU of this compute "
                   "capability (TensorRT ≥ 10.13).")
@click.option("--version-compatible", is_flag=True, help="Engine runs on later TensorRT versions of this major.")
@click.option("--dla-core", type=click.IntRange(min=0), help="Jetson: run on this DLA core (GPU fallback on).")
@click.option("--no-gpu-fallback", is_flag=True, help="With --dla-core: fail on layers DLA cannot run.")
@click.option("--typing", type=click.Choice(["auto", "strong", "weak"]), default="auto", show_default=True,
              help="auto: strong on 11.x and 10.12+, weak (FP16/INT8 flags) on older 10.x.")
@click.option("--nms", type=click.Choice(["onnx", "efficient"]),
              help="End-to-end engine with NMS in the graph: onnx (ONNX NonMaxSuppression → INMSLayer; TensorRT 10 "
                   "and 11) or efficient (EfficientNMS_TRT plugin; deprecated since TensorRT 10.12, which warns). "
                   "Output [B, max_det, 6].")
@with_options(FLAVOR_OPTIONS)
@click.option("--out-dir", default=str(DEFAULT_OUT_DIR), show_default=True, type=click.Path(file_okay=False),
              help="Where the engine, its sidecar and the timing cache go.")
@click.option("--name", default=None, help="Engine base name [default: the ONNX's model name].")
@click.option("--force", is_flag=True, help="Rebuild even when an up-to-date engine exists.")
@OVERWRITE_OPTION
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def build_cmd(onnx, precision, int8_mode, calib, min_batch, opt_batch, max_batch, min_hw, opt_hw, max_hw,
              workspace_mb, opt_level, hardware_compat, version_compatible, dla_core, no_gpu_fallback, typing, nms,
              flavor, target_cc, out_dir, name, force, overwrite, no_progress):
    """Build a TensorRT engine from ONNX: OUT_DIR/NAME.PRECISION[.rtx].engine + .engine.json sidecar (+ .layers.json).

    Skipped when an engine with the same key (ONNX content, precision, profiles, flags, TensorRT flavor and
    version, GPU or target compute capabilities) exists; --force rebuilds. Standard TensorRT needs a GPU;
    TensorRT-RTX (`pip install tensorrt-rtx`) builds on any host (`trtbuild doctor` says what this host has).

    \b
    Examples:
      trtbuild build engines/shapes-yolov8n.sim.onnx --precision fp16
      trtbuild build model.sim.onnx --precision int8 --max-batch 8 --flavor rtx --target-cc 8.9,12.0
    """
    path = Path(onnx)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file; make one with `trtbuild export` or `trtbuild engine`")
    options = BuildConfig(
        precision=precision, int8_mode=int8_mode, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
        min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw, workspace_mb=workspace_mb, opt_level=opt_level,
        hardware_compat=hardware_compat, version_compatible=version_compatible, dla_core=dla_core,
        gpu_fallback=not no_gpu_fallback, strongly_typed={"auto": None, "strong": True, "weak": False}[typing],
        nms=nms, calib_images=str(calib), flavor=flavor, target_cc=target_cc, out_dir=Path(out_dir), name=name,
        force=force, overwrite=overwrite)
    with warning_lines(DeprecatedPluginWarning) as warned:  # --nms efficient on TensorRT ≥ 10.12
        res = build(path, options, host=current_host(), progress=not no_progress)
    click.echo(describe(res))
    if not res.skipped:
        for note in res.report.get("notes", []):
            if note not in warned:
                click.echo(f"note: {with_flags(note)}")
        layers = f"; layers: `trtbuild inspect {res.output}`" if layers_path(res.output).is_file() else ""
        click.echo(f"sidecar: {res.report_path}{layers}")


@click.command("check")
@click.argument("onnx", type=click.Path(dir_okay=False))
@click.option("--flavor", type=click.Choice(TRT_FLAVORS), default="auto", show_default=True,
              help="The TensorRT to check with [auto: the one a build would use].")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--force", is_flag=True, help="Check again even when the file and TensorRT are unchanged.")
@OVERWRITE_OPTION
def check_cmd(onnx, flavor, as_json, force, overwrite):
    """Preflight: parse ONNX with the installed TensorRT (TensorRT-RTX on a CPU host) and say what it makes of it.

    Reports nodes the parser cannot import (name, operator), the layer count, the input profile a build would use,
    whether the Q/DQ pairs became quantize layers, and layers the flavor cannot build. Exit 2 when it finds any
    problem. Example: trtbuild check engines/shapes-yolov8n.int8.onnx
    """
    res = check(onnx, CheckConfig(flavor, force=force, overwrite=overwrite), host=current_host())
    r = res.report
    if as_json:
        click.echo(json.dumps(r, indent=2))
    else:
        click.echo(describe(res))
        click.echo("inputs: " + ", ".join(f"{i['name']}{i['shape']} {i['dtype']}" for i in r["inputs"])
                   + (f"; profile {r['profiles']}" if r.get("profiles") else f"; {r.get('profile_note', '')}"))
        click.echo("layers: " + ", ".join(f"{t} {n}" for t, n in list(r["layer_types"].items())[:12]))
    require_ok(res)


@click.command("inspect")
@click.argument("target", metavar="ENGINE_OR_JSON", type=click.Path(dir_okay=False))
@click.option("--onnx", "onnx_path", default=None, type=click.Path(dir_okay=False),
              help="ONNX to compare with [default: the source_onnx in the engine's .json sidecar].")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Write the full report as JSON.")
@click.option("--md", "md_out", default=None, type=click.Path(dir_okay=False), help="Write a Markdown report.")
@click.option("--plot", "plot_out", default=None, type=click.Path(dir_okay=False),
              help="Write a PNG bar chart of the precision histogram.")
@click.option("--top", default=None, type=click.IntRange(min=1),
              help="Show only the N layers that absorbed the most ONNX nodes [default: all, in engine order].")
@OVERWRITE_OPTION
def inspect_cmd(target, onnx_path, json_out, md_out, plot_out, top, overwrite):
    """Show how TensorRT compiled the ONNX graph: engine layers, the ONNX nodes each fused, precisions, tactics.

    ENGINE_OR_JSON is an engine's <engine>.layers.json (written by `trtbuild build`) or the .engine itself (its
    .layers.json is used when present, else the inspector is run, which needs TensorRT).

    \b
    Examples:
      trtbuild inspect engines/shapes-yolov8n.fp16.engine --top 20
      trtbuild inspect engines/shapes-yolov8n.int8.engine.layers.json --md int8.md --plot int8.png
    """
    report = inspect_path(target, onnx=onnx_path, host=current_host())
    click.echo(format_text(report, top))
    if json_out:
        click.echo(f"wrote {write_json_atomic(json_out, report, overwrite)}")
    if md_out:
        click.echo(f"wrote {write_bytes_atomic(md_out, format_markdown(report, top).encode(), overwrite)}")
    if plot_out:
        click.echo(f"wrote {plot_histogram(report, plot_out, overwrite)}")


@click.command("engine")
@click.option("--model", default=None,
              help=f"YOLOv8 .pt checkpoint or .yaml config [default: {REFERENCE_MODEL}, the project's reference "
                   f"model, where it exists; else {DEFAULT_MODEL}, random weights].")
@with_options(EXPORT_OPTIONS)
@click.option("--precision", default="fp16", show_default=True,
              help="fp32, fp16, int8, a comma list, or all.")
@click.option("--calib", default=str(DEFAULT_CALIB), show_default=True, type=click.Path(file_okay=False),
              help="Calibration images (INT8; FP16 uses them to find values too large for FP16).")
@click.option("--calib-num", default=512, show_default=True, type=click.IntRange(min=1),
              help="Calibration images used at most.")
@click.option("--calib-method", default="percentile", show_default=True, type=click.Choice(CALIB_METHODS),
              help="Activation range method (percentile: 99.9999 % of |x|; see `trtbuild calibrate --help`).")
@click.option("--reconstruct", default="none", show_default=True, type=click.Choice(RECONSTRUCT_METHODS),
              help="Learn the INT8 model on the calibration images, its outputs matched to FP32 (minutes on a "
                   "CPU): adaquant, the int8 weights, biases and activation scales; adaround, only each weight's "
                   "rounding (up or down) and the scales. none: round to nearest.")
@click.option("--reconstruct-steps", default=Int8Config.reconstruct_steps, show_default=True,
              type=click.IntRange(min=0), help="Optimizer steps of --reconstruct.")
@click.option("--reconstruct-images", default=Int8Config.reconstruct_images, show_default=True,
              type=click.IntRange(min=1), help="Calibration images --reconstruct fits on.")
@click.option("--data", default=None, type=click.Path(),
              help="YOLO data set (data.yaml or its folder) for the INT8 accuracy budget and the precision report.")
@click.option("--max-map-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Points of mAP50-95 INT8 may lose vs FP32 before layers fall back (needs --data).")
@click.option("--eval-limit", default=None, type=click.IntRange(min=1),
              help="The budget and the precision report evaluate the first N images of --data [default: all].")
@with_options(FLAVOR_OPTIONS)
@click.option("--strict", is_flag=True, help="Fail when a stage must be skipped on this host (e.g. no TensorRT).")
def engine_cmd(model, imgsz, batch, dynamic, dynamic_hw, opset, out_dir, name, force, overwrite, precision, calib,
               calib_num, calib_method, reconstruct, reconstruct_steps, reconstruct_images, data, max_map_drop,
               eval_limit, flavor, target_cc, strict):
    """Run the whole pipeline for MODEL: every stage whose inputs changed, as far as this host allows.

    \b
    Examples:
      trtbuild engine --model models/shapes-yolov8n.pt                       # FP16 engine (what make engine runs)
      trtbuild engine --model yolov8s.pt --precision all --calib my_images/ --data my_data/data.yaml
      trtbuild engine --model best.pt --dynamic --batch 8 --flavor rtx --target-cc 8.9       # batch 1..8 profile
      trtbuild engine --model best.pt --precision int8 --calib my_images/ --reconstruct adaquant  # learned INT8
    """
    if model is None:
        model = REFERENCE_MODEL if Path(REFERENCE_MODEL).is_file() else DEFAULT_MODEL
        note = "the project's reference model" if model == REFERENCE_MODEL else \
            "random weights: detections are meaningless; pass --model YOUR.pt"
        click.echo(f"model     no --model given: {model} ({note})", err=True)
    try:
        precisions = tuple(parse_precisions(precision))
    except TrtbuildError as exc:
        raise click.BadParameter(f"{precision!r}: {str(exc).split(': ', 1)[-1]}", param_hint="--precision") from None
    try:
        calibrate = CalibrateConfig(images=Path(calib), num=calib_num, method=calib_method)
    except TrtbuildError as exc:  # CalibrateConfig's ``num`` is this command's --calib-num
        raise InputError(f"calib_num={calib_num}: {str(exc).split(': ', 1)[-1]}", param="calib_num") from None
    cfg = PipelineConfig(
        model=model,
        export=ExportConfig(imgsz=imgsz, batch=batch, dynamic=dynamic, dynamic_hw=dynamic_hw, opset=opset,
                            out_dir=Path(out_dir), name=name),
        precisions=precisions,
        calibrate=calibrate,
        int8=Int8Config(reconstruct=reconstruct, reconstruct_steps=reconstruct_steps,
                        reconstruct_images=reconstruct_images),
        budget=BudgetConfig(data=Path(data), max_map_drop=max_map_drop, limit=eval_limit) if data else None,
        report=ReportConfig(data=Path(data), limit=eval_limit) if data else None,
        build=BuildConfig(flavor=flavor, target_cc=target_cc),
        strict=strict,
        force=force,
        overwrite=overwrite,
    )
    run_pipeline(cfg, host=current_host(), on_result=lambda label, res: click.echo(describe(res, label)))
