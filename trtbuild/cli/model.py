"""Commands that make the model's artifacts: ``export``, ``simplify``, ``engine`` (the whole pipeline), ``doctor``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import (
    CALIB_METHODS,
    DEFAULT_CALIB,
    DEFAULT_MODEL,
    RECONSTRUCT_METHODS,
    REFERENCE_MODEL,
    ExportConfig,
    Int8Config,
    NmsConfig,
    PipelineConfig,
    SimplifyConfig,
    parse_precisions,
)
from ..console import human_bytes, table
from ..errors import TrtbuildError
from ..stages.export import export
from ..stages.nms import nms_stage
from ..stages.simplify import simplify
from ..tasks.doctor import doctor, format_doctor
from ..tasks.pipeline import run_pipeline
from ..trt.compat import nms_plugin_notice
from .common import EXPORT_OPTIONS, FLAVOR_OPTIONS, OVERWRITE_OPTION, current_host, with_flags, with_options
from .present import describe


@click.command("export")
@click.argument("model", default=DEFAULT_MODEL)
@with_options(EXPORT_OPTIONS)
@click.option("--nms", type=click.Choice(["onnx", "efficient"]), default=None,
              help="Also write the end-to-end model: NMS appended, output detections [B, max_det, 6] "
                   "(onnx: NonMaxSuppression, runs in ONNX Runtime and TensorRT; efficient: the EfficientNMS_TRT "
                   "plugin, TensorRT only, deprecated since 10.12).")
@click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1), help="--nms score threshold.")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="--nms IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(1, 3840), help="--nms boxes per image.")
def export_cmd(model, imgsz, batch, dynamic, dynamic_hw, opset, out_dir, name, force, overwrite, nms, conf, iou,
               max_det):
    """Export a YOLOv8 detect MODEL (.pt checkpoint or .yaml config) to ONNX with ultralytics.

    Writes OUT_DIR/NAME.onnx and NAME.export.json (with --nms also NAME.nms.onnx); skipped when model and
    options are unchanged.

    \b
    Examples:
      trtbuild export models/shapes-yolov8n.pt                  # engines/shapes-yolov8n.onnx
      trtbuild export yolov8s.pt --imgsz 384,640 --dynamic --out-dir build
      trtbuild export best.pt --nms onnx --conf 0.25                # also best.nms.onnx (NMS in the graph)
    """
    cfg = ExportConfig(imgsz=imgsz, batch=batch, dynamic=dynamic, dynamic_hw=dynamic_hw, opset=opset,
                       out_dir=Path(out_dir), name=name, force=force, overwrite=overwrite)
    res = export(model, cfg)
    click.echo(describe(res))
    if nms:
        e2e = nms_stage(res.output, NmsConfig(variant=nms, conf=conf, iou=iou, max_det=max_det, force=force,
                                                 overwrite=overwrite))
        click.echo(describe(e2e))
        # the plugin's deprecation, for this host's TensorRT (or, without one, for whichever will build the file)
        notice = nms_plugin_notice(current_host().tensorrt, nms, param="variant")
        if notice:
            click.echo(f"warning: {with_flags(notice)}", err=True)


@click.command("simplify")
@click.argument("onnx_path", metavar="ONNX")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Output [default: NAME.sim.onnx].")
@click.option("--rtol", default=1e-4, show_default=True, type=float,
              help="Largest allowed max|a-b|/max|a| between original and simplified outputs.")
@click.option("--strict", is_flag=True, help="Fail instead of keeping the unsimplified graph.")
@click.option("--force", is_flag=True, help="Rerun even when the input is unchanged.")
@OVERWRITE_OPTION
def simplify_cmd(onnx_path, out, rtol, strict, force, overwrite):
    """Simplify ONNX with onnxsim, report what changed and check parity with ONNX Runtime.

    Writes NAME.sim.onnx beside ONNX (or --out) and NAME.simplify.json; when onnxsim fails or changes the outputs
    beyond --rtol, the original graph is kept (an error with --strict).

    \b
    Examples:
      trtbuild simplify engines/shapes-yolov8n.onnx    # → engines/shapes-yolov8n.sim.onnx
    """
    res = simplify(onnx_path, SimplifyConfig(rtol=rtol, out=Path(out) if out else None, strict=strict, force=force,
                                                overwrite=overwrite))
    click.echo(describe(res))
    r = res.report
    ops = sorted(set(r["ops_before"]) | set(r["ops_after"]), key=lambda o: -r["ops_before"].get(o, 0))
    rows = [(o, r["ops_before"].get(o, 0), r["ops_after"].get(o, 0)) for o in ops]
    rows.append(("total nodes", r["nodes_before"], r["nodes_after"]))
    rows.append(("file size", human_bytes(r["bytes_before"]), human_bytes(r["bytes_after"])))
    click.echo(table(rows, ("op", "before", "after")))
    click.echo(f"report: {res.report_path}")


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor_cmd(as_json):
    """Show what this host has (TensorRT, pycuda, GPU) and which stages can run here.

    \b
    Examples:
      trtbuild doctor
      trtbuild doctor --json > host.json
    """
    info = doctor(current_host(pycuda=True))
    click.echo(json.dumps(info, indent=2) if as_json else format_doctor(info))


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
    cfg = PipelineConfig(
        model=model,
        export=ExportConfig(imgsz=imgsz, batch=batch, dynamic=dynamic, dynamic_hw=dynamic_hw, opset=opset,
                            out_dir=Path(out_dir), name=name),
        precisions=precisions,
        calib=Path(calib),
        calib_num=calib_num,
        calib_method=calib_method,
        int8=Int8Config(reconstruct=reconstruct, reconstruct_steps=reconstruct_steps,
                        reconstruct_images=reconstruct_images),
        data=Path(data) if data else None,
        max_map_drop=max_map_drop,
        eval_limit=eval_limit,
        flavor=flavor,
        target_cc=target_cc,
        strict=strict,
        force=force,
        overwrite=overwrite,
    )
    run_pipeline(cfg, host=current_host(), on_result=lambda label, res: click.echo(describe(res, label)))
