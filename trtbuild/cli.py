"""The ``trtbuild`` command line: a thin click layer that parses options and calls the stage functions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import __version__
from .config import DEFAULT_MODEL, DEFAULT_OPSET, DEFAULT_OUT_DIR, ExportConfig, PipelineConfig, SimplifyConfig
from .config import parse_imgsz, parse_precisions
from .errors import TrtbuildError


class _Group(click.Group):
    """Turns every ``TrtbuildError`` into ``error: <message>`` on stderr and the error's exit code.

    Commands defined in other modules (``synth``, ...) are imported only when invoked or listed in
    ``--help``, so ``trtbuild --version`` and friends never pay for cv2/onnxruntime imports.
    """

    lazy = {
        "synth": "trtbuild.synth:synth_command",
        "calibrate": "trtbuild.precision.calibrate:calibrate_command",
        "budget": "trtbuild.precision.budget:budget_command",
        "report": "trtbuild.precision.report:report_command",
        "build": "trtbuild.trt.build_cli:build_command",
        "inspect": "trtbuild.trt.inspect:inspect_command",
        "bench": "trtbuild.bench:bench_command",
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            import importlib

            module, attr = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TrtbuildError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _imgsz(ctx, param, value):
    try:
        return parse_imgsz(value)
    except TrtbuildError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trtbuild")
def cli():
    """Compile a YOLOv8 detector into TensorRT engines and run it fast.

    Pipeline: export (.pt/.yaml → ONNX) → simplify (onnxsim) → precision → build → run.
    `trtbuild engine` runs every stage this host can; `trtbuild doctor` says which those are.
    """


_export_options = [
    click.option("--imgsz", default="640", callback=_imgsz, show_default=True,
                 help="Input size: one integer, or H,W (multiples of 32)."),
    click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1),
                 help="Batch size (the static batch, or the example batch when --dynamic)."),
    click.option("--dynamic", is_flag=True, help="Dynamic batch axis."),
    click.option("--dynamic-hw", is_flag=True, help="Also make height and width dynamic (implies --dynamic)."),
    click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=click.IntRange(13, 23),
                 help="ONNX opset (17 parses on TensorRT 10.3 / JetPack 6 and newer)."),
    click.option("--out-dir", default=str(DEFAULT_OUT_DIR), show_default=True, type=click.Path(file_okay=False),
                 help="Where artifacts and reports go."),
    click.option("--name", default=None, help="Artifact base name [default: the model file's stem]."),
    click.option("--force", is_flag=True, help="Rerun even when the inputs are unchanged."),
]


def _with(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


@cli.command("export")
@click.argument("model", default=DEFAULT_MODEL)
@_with(_export_options)
@click.option("--nms", type=click.Choice(["onnx", "efficient"]), default=None,
              help="Also write the end-to-end model: NMS appended, output detections [B, max_det, 6] "
                   "(onnx: NonMaxSuppression, runs in ONNX Runtime and TensorRT 11; efficient: EfficientNMS_TRT).")
@click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1), help="--nms score threshold.")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="--nms IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(1, 3840), help="--nms boxes per image.")
def export_cmd(model, imgsz, batch, dynamic, dynamic_hw, opset, out_dir, name, force, nms, conf, iou, max_det):
    """Export a YOLOv8 detect MODEL (.pt checkpoint or .yaml config) to ONNX with ultralytics.

    Writes OUT_DIR/NAME.onnx and NAME.export.json (with --nms also NAME.nms.onnx); skipped when model and
    options are unchanged.
    """
    from .export_onnx import export
    from .pipeline import describe_export

    cfg = ExportConfig(imgsz=imgsz, batch=batch, dynamic=dynamic, dynamic_hw=dynamic_hw, opset=opset)
    res = export(model, cfg, out_dir, name, force)
    click.echo(describe_export(res))
    if nms:
        from .nms_graph import nms_stage

        e2e = nms_stage(res.output, nms, conf, iou, max_det, force=force)
        state = "is up to date" if e2e.skipped else f"written ({e2e.report['nodes_added']} nodes added)"
        click.echo(f"nms       {e2e.output} {state}: output detections {e2e.report['output_shape']}")


@cli.command("simplify")
@click.argument("onnx_path", metavar="ONNX")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Output [default: NAME.sim.onnx].")
@click.option("--rtol", default=1e-4, show_default=True, type=float,
              help="Largest allowed max|a-b|/max|a| between original and simplified outputs.")
@click.option("--strict", is_flag=True, help="Fail instead of keeping the unsimplified graph.")
@click.option("--force", is_flag=True, help="Rerun even when the input is unchanged.")
def simplify_cmd(onnx_path, out, rtol, strict, force):
    """Simplify ONNX with onnxsim, report what changed and check parity with ONNX Runtime."""
    from .console import human_bytes, table
    from .pipeline import describe_simplify
    from .simplify_onnx import simplify

    res = simplify(onnx_path, SimplifyConfig(rtol=rtol), out=out, force=force, strict=strict)
    click.echo(describe_simplify(res))
    r = res.report
    ops = sorted(set(r["ops_before"]) | set(r["ops_after"]), key=lambda o: -r["ops_before"].get(o, 0))
    rows = [(o, r["ops_before"].get(o, 0), r["ops_after"].get(o, 0)) for o in ops]
    rows.append(("total nodes", r["nodes_before"], r["nodes_after"]))
    rows.append(("file size", human_bytes(r["bytes_before"]), human_bytes(r["bytes_after"])))
    click.echo(table(rows, ("op", "before", "after")))
    click.echo(f"report: {res.report_path}")


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor_cmd(as_json):
    """Show what this host has (TensorRT, pycuda, GPU) and which stages can run here."""
    from .doctor_host import doctor, format_doctor

    info = doctor()
    click.echo(json.dumps(info, indent=2) if as_json else format_doctor(info))


@cli.command("engine")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="YOLOv8 .pt checkpoint or .yaml config.")
@_with(_export_options)
@click.option("--precision", default="fp16", show_default=True,
              help="fp32, fp16, int8, a comma list, or all.")
@click.option("--calib", default="calib_data", show_default=True, type=click.Path(file_okay=False),
              help="Calibration images (INT8; FP16 uses them to find values too large for FP16).")
@click.option("--calib-num", default=512, show_default=True, type=click.IntRange(min=1),
              help="Calibration images used at most.")
@click.option("--calib-method", default="entropy", show_default=True,
              type=click.Choice(["entropy", "percentile", "minmax"]), help="Activation range method.")
@click.option("--data", default=None, type=click.Path(),
              help="YOLO data set (data.yaml or its folder) for the INT8 accuracy budget and the precision report.")
@click.option("--max-map-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Points of mAP50-95 INT8 may lose vs FP32 before layers fall back (needs --data).")
@click.option("--strict", is_flag=True, help="Fail when a stage must be skipped on this host (e.g. no TensorRT).")
def engine_cmd(model, imgsz, batch, dynamic, dynamic_hw, opset, out_dir, name, force, precision, calib, calib_num,
               calib_method, data, max_map_drop, strict):
    """Run the whole pipeline for MODEL: every stage whose inputs changed, as far as this host allows."""
    from .pipeline import run_pipeline

    try:
        precisions = tuple(parse_precisions(precision))
    except TrtbuildError as exc:
        raise click.BadParameter(str(exc), param_hint="--precision") from None
    cfg = PipelineConfig(
        model=model,
        export=ExportConfig(imgsz=imgsz, batch=batch, dynamic=dynamic, dynamic_hw=dynamic_hw, opset=opset),
        precisions=precisions,
        calib=Path(calib),
        calib_num=calib_num,
        calib_method=calib_method,
        data=Path(data) if data else None,
        max_map_drop=max_map_drop,
        out_dir=Path(out_dir),
        name=name,
        strict=strict,
        force=force,
    )
    run_pipeline(cfg, echo=click.echo)


@cli.command("infer")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("source", type=click.Path())
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Write detections as JSON lines (one object per image or frame).")
@click.option("--save", "save_dir", default=None, type=click.Path(file_okay=False),
              help="Write annotated images into this folder.")
@click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1), help="Score threshold.")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(min=1), help="Boxes per image.")
@click.option("--batch", default=None, type=click.IntRange(min=1),
              help="Images per call for dynamic-batch models [default: the model's static batch, else 1].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def infer_cmd(model, source, json_path, save_dir, conf, iou, max_det, batch, quiet):
    """Detect objects in SOURCE (an image, a folder of images or a video) with MODEL (.onnx or .engine).

    Without --json, detections are printed as JSON lines on stdout.
    """
    from .infer import run_infer

    def on_skip(path, reason):
        click.echo(f"skipped {path}: {reason}", err=True)

    res = run_infer(model, source, json_path, save_dir, conf, iou, max_det, batch, progress=not quiet,
                    on_skip=on_skip)
    if not json_path:
        for rec in res["records"]:
            click.echo(json.dumps(rec))
    ms = res["ms_per_image"]
    summary = (
        f"infer     {res['images']} image(s), {res['detections']} detection(s)"
        + (f", {len(res['skipped'])} file(s) skipped" if res["skipped"] else "")
        + (f" → {json_path}" if json_path else "")
        + (f", annotated in {save_dir}/" if save_dir else "")
        + f" (per image: pre {ms['preprocess']:.1f} ms, infer {ms['infer']:.1f} ms, post {ms['postprocess']:.1f} ms)"
    )
    click.echo(summary, err=not json_path)


@cli.command("eval")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(),
              help="YOLO data set: a data.yaml, or a folder holding one.")
@click.option("--split", default="val", show_default=True, help="Split named in the data.yaml.")
@click.option("--conf", default=0.001, show_default=True, type=click.FloatRange(0, 1))
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1))
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", default=None, type=click.IntRange(min=1), help="Images per call (dynamic-batch models).")
@click.option("--report", default=None, type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_cmd(model, data, split, conf, iou, max_det, batch, report, quiet):
    """mAP50, mAP50-95, per-class AP, P and R of MODEL on a YOLO-format data set (ultralytics' val protocol)."""
    from .evaluate import evaluate, format_eval

    res = evaluate(model, data, split, conf, iou, max_det, batch, report=report, progress=not quiet)
    click.echo(format_eval(res))
    if report:
        click.echo(f"report: {report}")


def main() -> None:
    cli(prog_name="trtbuild")


if __name__ == "__main__":
    main()
