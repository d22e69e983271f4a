"""Commands that run a model: ``infer``, ``eval``, ``bench``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..artifacts import output_folders
from ..config import DEFAULT_OUT_DIR
from ..layout import model_name
from ..tasks.bench import run_bench
from ..tasks.bench_report import bench_files, format_bench, write_bench_report
from ..tasks.bench_triton import run_bench_triton
from ..tasks.evaluate import evaluate, format_eval
from ..tasks.infer import run_infer
from .common import OVERWRITE_OPTION, current_host, imgsz_option


@click.command("infer")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("source", type=click.Path())
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Write detections as JSON lines (one object per image or frame).")
@click.option("--save", "save_dir", default=None, type=click.Path(file_okay=False),
              help="Write annotated images into this folder (not SOURCE's).")
@click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1), help="Score threshold.")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(min=1), help="Boxes per image.")
@click.option("--batch", default=None, type=click.IntRange(min=1),
              help="Images per call for dynamic-batch models [default: the model's static batch, else 1].")
@click.option("--triton", default=None, metavar="URL",
              help="Send the images to a Triton server (grpc://host:8001 or http://host:8000); MODEL is then the "
                   "name given to `trtbuild deploy triton`.")
@OVERWRITE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def infer_cmd(model, source, json_path, save_dir, conf, iou, max_det, batch, triton, overwrite, quiet):
    """Detect objects in SOURCE (an image, a folder of images or a video) with MODEL (.onnx or .engine).

    Without --json, detections are printed as JSON lines on stdout, as they come. --save writes annotated
    pictures into a folder that must not be (or hold) SOURCE; a picture never replaces a file trtbuild did not
    write: it goes beside it as NAME_2.jpg, and its JSON line names it ("saved").

    \b
    Examples:
      trtbuild infer engines/yolov8n.fp16.engine photos/ --json dets.jsonl --save annotated/
      trtbuild infer --triton grpc://localhost:8001 yolov8n street.mp4
    """
    def on_skip(path, reason):
        click.echo(f"skipped {path}: {reason}", err=True)

    def on_record(rec):
        if not json_path:
            click.echo(json.dumps(rec))

    res = run_infer(model, source, json_path, save_dir, conf, iou, max_det, batch, progress=not quiet,
                    on_skip=on_skip, host=None if triton else current_host(), triton=triton, on_record=on_record,
                    overwrite=overwrite)
    ms = res["ms_per_image"]
    summary = (
        f"infer     {res['images']} {'frame' if res['video'] else 'image'}(s), {res['detections']} detection(s)"
        + (f", {len(res['skipped'])} file(s) skipped" if res["skipped"] else "")
        + (f" → {json_path}" if json_path else "")
        + (f", annotated in {save_dir}/" if save_dir else "")
        + f" (per image: pre {ms['preprocess']:.1f} ms, infer {ms['infer']:.1f} ms, post {ms['postprocess']:.1f} ms)"
    )
    click.echo(summary, err=not json_path)


@click.command("eval")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(),
              help="YOLO data set: a data.yaml, or a folder holding one.")
@click.option("--split", default="val", show_default=True, help="Split named in the data.yaml.")
@click.option("--conf", default=0.001, show_default=True, type=click.FloatRange(0, 1),
              help="Score threshold (ultralytics' val default: keep nearly everything for the PR curve).")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(min=1), help="Boxes per image.")
@click.option("--batch", default=None, type=click.IntRange(min=1), help="Images per call (dynamic-batch models).")
@click.option("--report", default=None, type=click.Path(dir_okay=False), help="Write the JSON report here.")
@OVERWRITE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_cmd(model, data, split, conf, iou, max_det, batch, report, overwrite, quiet):
    """mAP50, mAP50-95, per-class AP, P and R of MODEL on a YOLO-format data set (ultralytics' val protocol).

    Refused when no image of the split has labels, or when the model's classes do not match the data set's.

    \b
    Examples:
      trtbuild eval engines/shapes-yolov8n.sim.onnx --data datasets/shapes --report engines/eval.json
      trtbuild eval engines/shapes-yolov8n.int8.onnx --data datasets/shapes --limit 100
    """
    res = evaluate(model, data, split, conf, iou, max_det, batch, report=report, progress=not quiet,
                   host=current_host(), overwrite=overwrite)
    click.echo(format_eval(res))
    if report:
        click.echo(f"report: {report}")


def _batches(ctx, param, value):
    if value is None:
        return None
    try:
        out = list(dict.fromkeys(int(v) for v in value.split(",") if v.strip()))
    except ValueError:
        out = []
    if not out or any(b < 1 for b in out):
        raise click.BadParameter(f"{value!r}: expected positive integers separated by commas, e.g. 1,2,4")
    return out


@click.command("bench")
@click.argument("models", metavar="MODEL [MODEL ...]", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--batch", "batches", default=None, callback=_batches,
              help="Batch sizes, e.g. 1,2,4 [default: 1, plus each static-batch model's own batch].")
@click.option("--warmup", default=None, type=click.IntRange(min=0),
              help="Untimed calls first [default: 10; with --triton, 2 per client].")
@click.option("--iters", default=100, show_default=True, type=click.IntRange(min=1), help="Timed calls.")
@click.option("--triton", default=None, metavar="URL",
              help="Load-test the model deployed on this Triton server (grpc://host:8001 or http://host:8000); "
                   "MODEL is the deployed name.")
@click.option("--concurrency", default="1,8", show_default=True, callback=_batches,
              help="With --triton: concurrent clients per level; the first level is the baseline.")
@click.option("--requests", default=50, show_default=True, type=click.IntRange(min=1),
              help="With --triton: requests per client at each level.")
@click.option("--images", default=None, type=click.Path(),
              help="Folder of images to cycle through [default: ultralytics' bus.jpg and zidane.jpg].")
@click.option("--imgsz", default=None, callback=imgsz_option,
              help="Input size H,W for dynamic-H/W models [default: the model's metadata, else 640].")
@click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1), help="Score threshold.")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold.")
@click.option("--out-dir", default=str(DEFAULT_OUT_DIR), show_default=True, type=click.Path(file_okay=False),
              help="Where the report files go.")
@click.option("--name", default=None, help="Report base name: NAME.bench.{json,md,png} [default: the first model's name, e.g. yolov8n for yolov8n.sim.onnx].")
@click.option("--cpu-preprocess", is_flag=True,
              help="Letterbox on the CPU for TensorRT engines too [default: GPU letterbox into the input buffer].")
@OVERWRITE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_cmd(models, batches, warmup, iters, triton, concurrency, requests, images, imgsz, conf, iou, out_dir, name,
              cpu_preprocess, overwrite, quiet):
    """Time MODEL(s) end to end (letterbox → infer → decode/NMS) per batch size; the first model is the baseline.

    Reports latency percentiles, throughput, time per stage and device memory, and ratios against the first
    model, in OUT_DIR/NAME.bench.{json,md,png}. With --triton, the deployed MODEL is load-tested instead: at each
    --concurrency level, that many clients send --requests requests each; the report adds errors, wall-clock
    throughput and the batch sizes the server's dynamic batcher formed.

    \b
    Examples:
      trtbuild bench engines/yolov8n.sim.onnx engines/yolov8n.fp16.engine --batch 1,8
      trtbuild bench --triton grpc://localhost:8001 yolov8n --concurrency 1,8 --requests 50
    """
    if triton:
        if len(models) != 1:
            raise click.BadParameter("with --triton, give one MODEL: the name it was deployed under",
                                     param_hint="MODEL")
        batch = batches[0] if batches else 1
        with output_folders(out_dir):  # checked before the load test; removed again if it fails
            bench_files(out_dir, name or f"{models[0]}.triton", overwrite)
            result = run_bench_triton(triton, models[0], concurrency, requests, 2 if warmup is None else warmup,
                                      batch, images, progress=not quiet)
            files = write_bench_report(result, Path(out_dir), name or f"{models[0]}.triton", overwrite)
        click.echo(format_bench(result))
        click.echo(f"report {files['md']}, {files['png']}, {files['json']}")
        return
    warmup = 10 if warmup is None else warmup
    paths = [Path(m) for m in models]
    with output_folders(out_dir):  # the report's folder and files are checked before minutes of benchmarking
        bench_files(out_dir, name or model_name(paths[0]), overwrite)
        result = run_bench(paths, batches, warmup, iters, images, imgsz, conf, iou, progress=not quiet,
                           gpu_preprocess=not cpu_preprocess, host=current_host())
        files = write_bench_report(result, Path(out_dir), name or model_name(paths[0]), overwrite)
    click.echo(format_bench(result))
    click.echo(f"report {files['md']}, {files['png']}, {files['json']}")
