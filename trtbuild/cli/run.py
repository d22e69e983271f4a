"""Commands that run a model: ``infer``, ``eval``, ``bench``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import owned
from ..artifacts import output_folders, write_bytes_atomic, write_json_atomic
from ..config import DEFAULT_OUT_DIR, BenchConfig, EvalConfig, StreamConfig
from ..layout import Layout, model_name
from ..stream import Hooks, status_lines
from ..tasks.bench import run_bench
from ..tasks.bench_report import bench_files, format_bench, write_bench_report
from ..tasks.bench_streams import format_bench_streams, run_bench_streams
from ..tasks.bench_triton import run_bench_triton
from ..tasks.evaluate import evaluate, format_eval
from ..tasks.infer import run_infer
from .common import DETECT_OPTIONS, OVERWRITE_OPTION, config_group, current_host, imgsz_option
from .status import LiveStatus


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


def _ints(ctx, param, value):
    """click callback: ``1,2,4`` → (1, 2, 4); None stays None."""
    return None if value is None else tuple(_batches(ctx, param, value))


STREAM_OPTIONS = [
    click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
                 help="Write detections as JSON lines (one object per image or frame), flushed as they come."),
    click.option("--save", "save_dir", default=None, type=click.Path(file_okay=False),
                 help="Write annotated pictures (image sources) and one annotated video per stream into this "
                      "folder."),
    *DETECT_OPTIONS,
    click.option("--batch", default=None, type=click.IntRange(min=1),
                 help="Frames per model call, filled across streams [default: the model's static batch, else one "
                      "per stream, at most 8]."),
    click.option("--max-wait-ms", default=20.0, show_default=True, type=click.FloatRange(min=0),
                 help="How long a batch may wait for frames of other streams before it runs part-full."),
    click.option("--vid-stride", default=1, show_default=True, type=click.IntRange(min=1),
                 help="Every n-th frame of videos and live sources."),
    click.option("--reconnect-s", default=None, type=click.FloatRange(min=0),
                 help="How long a lost live source is retried before it is given up [default: until stopped]."),
    click.option("--devices", default=None, callback=_ints,
                 help="TensorRT: one runner per GPU, e.g. 0,1; batches are spread across them."),
    OVERWRITE_OPTION,
]


@click.command("infer")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("sources", metavar="SOURCE [SOURCE ...]", nargs=-1, required=True)
@config_group("cfg", STREAM_OPTIONS, StreamConfig)
@click.option("--stats", "stats_path", default=None, type=click.Path(dir_okay=False),
              help="Write the run's figures (per stream and per stage) as JSON at the end.")
@click.option("--triton", default=None, metavar="URL",
              help="Send the frames to a Triton server (grpc://host:8001 or http://host:8000); MODEL is then the "
                   "name given to `trtbuild deploy triton`.")
@click.option("--quiet", is_flag=True, help="No live status.")
def infer_cmd(model, sources, cfg, stats_path, triton, quiet):
    """Detect objects in every SOURCE with MODEL (.onnx or .engine): images, folders, videos, RTSP / HTTP(S) URLs,
    webcam indices, or a .streams file listing one source per line.

    The streams are decoded in parallel, batched together into the model, and each stream's results come out in
    order; a live source the model cannot keep up with drops frames (counted), a lost one reconnects. Without
    --json, detections are printed as JSON lines on stdout, as they come. --save must not be (or hold) a source;
    a picture or video never replaces a file trtbuild did not write: it goes beside it as NAME_2. Ctrl-C ends a
    live run: the JSON lines and videos so far are kept.

    \b
    Examples:
      trtbuild infer engines/yolov8n.fp16.engine photos/ --json dets.jsonl --save annotated/
      trtbuild infer engines/yolov8n.fp16.engine cams.streams --stats run.json    # many cameras, one engine
      trtbuild infer engines/yolov8n.sim.onnx rtsp://127.0.0.1:8554/live a.mp4 b.mp4
      trtbuild infer --triton grpc://localhost:8001 yolov8n street.mp4
    """
    live = LiveStatus(enabled=not quiet)

    def on_event(stream, kind, text):
        if kind == "skip":  # "<file>: why it was skipped"
            live.say(f"skipped {text}")
        elif kind == "short":  # "<file>: frames a-b could not be read: …"
            live.say(f"warning: {text}")
        else:
            live.say(f"stream {stream}: {kind}: {text}")

    def on_record(rec):
        if not json_path:
            click.echo(json.dumps(rec))

    json_path, save_dir, overwrite = cfg.json_path, cfg.save_dir, cfg.overwrite
    if stats_path:
        owned.check_replaceable(stats_path, overwrite)
    try:
        hooks = Hooks(on_status=None if quiet else live.update, on_event=on_event, on_record=on_record)
        res = run_infer(model, list(sources), cfg, host=None if triton else current_host(), triton=triton,
                        hooks=hooks)
    finally:
        live.close()
    if stats_path:
        write_json_atomic(stats_path, res["stats"], overwrite)
    ms = res["ms_per_image"]
    summary = (
        f"infer     {res['images']} {'frame' if res['video'] else 'image'}(s), {res['detections']} detection(s)"
        + (f", {res['skipped']} file(s) skipped" if res["skipped"] else "")
        + (f" → {json_path}" if json_path else "")
        + (f", annotated in {save_dir}/" if save_dir else "")
        + f" (per image: pre {ms['preprocess']:.1f} ms, infer {ms['infer']:.1f} ms, post {ms['postprocess']:.1f} ms)"
    )
    click.echo(summary, err=not json_path)
    if len(sources) > 1 or res["video"]:
        for line in status_lines(res["stats"]):
            click.echo(line, err=not json_path)
    for failure in res["failures"]:
        click.echo(f"warning: {failure}", err=True)


EVAL_OPTIONS = [
    click.option("--data", required=True, type=click.Path(), help="YOLO data set: a data.yaml, or a folder holding one."),
    click.option("--split", default="val", show_default=True, help="Split named in the data.yaml."),
    click.option("--conf", default=0.001, show_default=True, type=click.FloatRange(0, 1),
                 help="Score threshold (ultralytics' val default: keep nearly everything for the PR curve)."),
    *DETECT_OPTIONS[1:],
    click.option("--batch", default=None, type=click.IntRange(min=1), help="Images per call (dynamic-batch models)."),
    click.option("--limit", default=None, type=click.IntRange(min=1), help="Evaluate the first N images only."),
    click.option("--report", default=None, type=click.Path(dir_okay=False), help="Write the JSON report here."),
    OVERWRITE_OPTION,
]


@click.command("eval")
@click.argument("model", type=click.Path(dir_okay=False))
@config_group("cfg", EVAL_OPTIONS, EvalConfig)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_cmd(model, cfg, quiet):
    """mAP50, mAP50-95, per-class AP, P and R of MODEL on a YOLO-format data set (ultralytics' val protocol).

    Refused when no image of the split has labels, or when the model's classes do not match the data set's.

    \b
    Examples:
      trtbuild eval engines/shapes-yolov8n.sim.onnx --data datasets/shapes --report engines/eval.json
      trtbuild eval engines/shapes-yolov8n.int8.onnx --data datasets/shapes --limit 100
    """
    res = evaluate(model, cfg, host=current_host(), progress=not quiet)
    click.echo(format_eval(res))
    if cfg.report:
        click.echo(f"report: {cfg.report}")


BENCH_OPTIONS = [
    click.option("--batch", "batches", default=None, callback=_ints,
                 help="Batch sizes, e.g. 1,2,4 [default: 1, plus each static-batch model's own batch]."),
    click.option("--warmup", default=None, type=click.IntRange(min=0),
                 help="Untimed calls first [default: 10; with --triton, 2 per client]."),
    click.option("--iters", default=100, show_default=True, type=click.IntRange(min=1), help="Timed calls."),
    click.option("--images", default=None, type=click.Path(),
                 help="Folder of images to cycle through [default: ultralytics' bus.jpg and zidane.jpg]."),
    click.option("--imgsz", default=None, callback=imgsz_option,
                 help="Input size H,W for dynamic-H/W models [default: the model's metadata, else 640]."),
    *DETECT_OPTIONS[:2],
    click.option("--cpu-preprocess", is_flag=True,
                 help="Letterbox on the CPU for TensorRT engines too [default: GPU letterbox into the input buffer]."),
]


def _bench_config(cpu_preprocess: bool, **options) -> BenchConfig:
    return BenchConfig(gpu_preprocess=not cpu_preprocess, **options)


@click.command("bench")
@click.argument("models", metavar="MODEL [MODEL ...]", nargs=-1, required=True, type=click.Path(dir_okay=False))
@config_group("cfg", BENCH_OPTIONS, _bench_config)
@click.option("--triton", default=None, metavar="URL",
              help="Load-test the model deployed on this Triton server (grpc://host:8001 or http://host:8000); "
                   "MODEL is the deployed name.")
@click.option("--concurrency", default="1,8", show_default=True, callback=_batches,
              help="With --triton: concurrent clients per level; the first level is the baseline.")
@click.option("--requests", default=50, show_default=True, type=click.IntRange(min=1),
              help="With --triton: requests per client at each level.")
@click.option("--out-dir", default=str(DEFAULT_OUT_DIR), show_default=True, type=click.Path(file_okay=False),
              help="Where the report files go.")
@click.option("--name", default=None, help="Report base name: NAME.bench.{json,md,png} [default: the first model's name, e.g. yolov8n for yolov8n.sim.onnx].")
@click.option("--streams", "stream_sources", multiple=True, metavar="SOURCE",
              help="Measure the streaming pipeline on these video files (repeat, or one .streams file): model only, "
                   "end to end, host capacity (recorded outputs) and the serial host path, in one run.")
@OVERWRITE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_cmd(models, cfg, triton, concurrency, requests, out_dir, name, stream_sources, overwrite, quiet):
    """Time MODEL(s) end to end (letterbox → infer → decode/NMS) per batch size; the first model is the baseline.

    Reports latency percentiles, throughput, time per stage and device memory, and ratios against the first
    model, in OUT_DIR/NAME.bench.{json,md,png}. With --triton, the deployed MODEL is load-tested instead: at each
    --concurrency level, that many clients send --requests requests each; the report adds errors, wall-clock
    throughput and the batch sizes the server's dynamic batcher formed.

    \b
    Examples:
      trtbuild bench engines/yolov8n.sim.onnx engines/yolov8n.fp16.engine --batch 1,8
      trtbuild bench --triton grpc://localhost:8001 yolov8n --concurrency 1,8 --requests 50
      trtbuild bench engines/yolov8n.sim.onnx --streams a.mp4 --streams b.mp4 --batch 4   # streaming pipeline
    """
    if stream_sources:
        if len(models) != 1 or triton:
            raise click.BadParameter("with --streams, give one local MODEL", param_hint="MODEL")
        sources = list(stream_sources) if len(stream_sources) > 1 else stream_sources[0]
        stem = name or model_name(models[0])
        files = {ext: Layout(Path(out_dir), stem).stream_bench(ext) for ext in ("json", "md")}
        with output_folders(out_dir):
            for f in files.values():
                owned.check_replaceable(f, overwrite)
            stream_cfg = StreamConfig(conf=cfg.conf, iou=cfg.iou, batch=cfg.batches[0] if cfg.batches else None)
            report = run_bench_streams(models[0], sources, stream_cfg, host=current_host())
            text = format_bench_streams(report)
            write_json_atomic(files["json"], report, overwrite)
            write_bytes_atomic(files["md"], f"```\n{text}\n```\n".encode(), overwrite)
        click.echo(text)
        click.echo(f"report {files['md']}, {files['json']}")
        return
    if triton:
        if len(models) != 1:
            raise click.BadParameter("with --triton, give one MODEL: the name it was deployed under",
                                     param_hint="MODEL")
        batch = cfg.batches[0] if cfg.batches else 1
        with output_folders(out_dir):  # checked before the load test; removed again if it fails
            bench_files(out_dir, name or f"{models[0]}.triton", overwrite)
            result = run_bench_triton(triton, models[0], concurrency, requests, 2 if cfg.warmup is None else
                                      cfg.warmup, batch, cfg.images, progress=not quiet)
            files = write_bench_report(result, Path(out_dir), name or f"{models[0]}.triton", overwrite)
        click.echo(format_bench(result))
        click.echo(f"report {files['md']}, {files['png']}, {files['json']}")
        return
    paths = [Path(m) for m in models]
    with output_folders(out_dir):  # the report's folder and files are checked before minutes of benchmarking
        bench_files(out_dir, name or model_name(paths[0]), overwrite)
        result = run_bench(paths, cfg, host=current_host(), progress=not quiet)
        files = write_bench_report(result, Path(out_dir), name or model_name(paths[0]), overwrite)
    click.echo(format_bench(result))
    click.echo(f"report {files['md']}, {files['png']}, {files['json']}")
