"""Commands that make the model's artifacts: ``export``, ``simplify``, ``engine`` (the whole pipeline), ``doctor``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import (
    DEFAULT_MODEL,
    ExportConfig,
    NmsConfig,
    SimplifyConfig,
)
from ..console import human_bytes, table
from ..stages.export import export
from ..stages.nms import nms_stage
from ..stages.simplify import simplify
from ..tasks.doctor import doctor, format_doctor
from ..trt.compat import nms_plugin_notice
from .common import EXPORT_OPTIONS, OVERWRITE_OPTION, current_host, with_flags, with_options
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
