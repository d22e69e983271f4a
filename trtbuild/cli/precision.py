"""Commands of the precision stages on the CPU: ``calibrate``, ``budget`` (INT8 accuracy budget), ``report``."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import (
    CALIB_METHODS,
    DEFAULT_CALIB,
    DEFAULT_OUT_DIR,
    DEFAULT_PERCENTILE,
    BudgetConfig,
    CalibrateConfig,
    QatConfig,
    ReportConfig,
)
from ..data.images import select_images
from ..stages.precision.calibrate import calibrate
from ..tasks.budget import fit_budget
from ..tasks.qat import qat
from ..tasks.report import format_report, precision_report
from .common import OVERWRITE_OPTION
from .present import describe, format_budget


@click.command("calibrate")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(dir_okay=False))
@click.option("--images", "images_dir", default=str(DEFAULT_CALIB), show_default=True,
              type=click.Path(file_okay=False), help="Folder of calibration images (searched recursively).")
@click.option("--num", default=512, show_default=True, type=click.IntRange(min=1), help="Images to use at most.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per calibration step (independent of the engine batch).")
@click.option("--method", default="percentile", show_default=True, type=click.Choice(CALIB_METHODS),
              help="percentile / mse / minmax: trtbuild's one-pass collector; entropy: ONNX Runtime's KL calibrator "
                   "(TensorRT's method; slow, and it clips this detector's large activations).")
@click.option("--percentile", default=DEFAULT_PERCENTILE, show_default=True,
              type=click.FloatRange(0, 100, min_open=True), help="Kept fraction of values, for --method percentile.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds which images are picked.")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False),
              help="Folder for NAME.ranges.json and NAME.calib.cache [default: beside ONNX].")
@click.option("--force", is_flag=True, help="Rerun even when model, images and options are unchanged.")
@OVERWRITE_OPTION
def calibrate_cmd(onnx_path, images_dir, num, batch, method, percentile, seed, out_dir, force, overwrite):
    """Measure INT8 activation ranges of ONNX on calibration images (on the CPU).

    Writes NAME.ranges.json (ranges and report) and NAME.calib.cache (TensorRT implicit-INT8 table). Unreadable
    files are skipped and listed; fewer than 8 usable images are refused.

    \b
    Examples:
      trtbuild calibrate engines/shapes-yolov8n.sim.onnx --images calib_data
      trtbuild calibrate model.sim.onnx --images my_images/ --num 256 --method mse
    """
    cfg = CalibrateConfig(images=Path(images_dir), num=num, batch=batch, method=method, seed=seed,
                          percentile=percentile, out_dir=Path(out_dir) if out_dir else None, force=force,
                          overwrite=overwrite)
    res = calibrate(onnx_path, cfg, progress=True)
    r = res.report
    click.echo(describe(res))
    if r.get("warning"):
        click.echo(f"warning: {r['warning']}", err=True)
    for s in r["skipped"][:10]:
        click.echo(f"skipped   {Path(r['images_dir']) / s['path']}: {s['reason']}")
    if len(r["skipped"]) > 10:
        click.echo(f"skipped   … and {len(r['skipped']) - 10} more (listed in {res.report_path})")
    click.echo(f"ranges    {res.report_path}")
    click.echo(f"table     {r['table']['path']} ({r['table']['header']})")


@click.command("budget")
@click.argument("sim_onnx", metavar="SIM_ONNX", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", required=True, type=click.Path(exists=True), help="YOLO data set (data.yaml or folder).")
@click.option("--split", default="val", show_default=True, help="Split of the data YAML to evaluate on.")
@click.option("--ranges", "ranges_json", default=None, type=click.Path(dir_okay=False),
              help="Calibration ranges [default: NAME.ranges.json beside SIM_ONNX].")
@click.option("--max-map-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Points of mAP50-95 INT8 may lose against FP32.")
@click.option("--images", "images_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Held-out images for the sensitivity ranking [default: the calibration images].")
@click.option("--num-images", default=16, show_default=True, type=click.IntRange(min=1),
              help="Held-out images the sensitivity of each conv is measured on.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Evaluate the first N images only.")
@click.option("--force", is_flag=True, help="Rerun even when nothing changed.")
@OVERWRITE_OPTION
def budget_cmd(sim_onnx, data, split, ranges_json, max_map_drop, images_dir, num_images, limit, force, overwrite):
    """Keep INT8's mAP50-95 drop within --max-map-drop, falling back the most sensitive convs to float.

    Writes NAME.budget.json and, when full INT8 does not fit, NAME.int8fb.onnx.

    \b
    Examples:
      trtbuild budget engines/shapes-yolov8n.sim.onnx --data datasets/shapes --max-map-drop 0.5
    """
    images = tuple(select_images(images_dir, num_images)[0]) if images_dir else None
    cfg = BudgetConfig(data=Path(data), split=split, max_map_drop=max_map_drop, images=images,
                       sensitivity_images=num_images, limit=limit, force=force, overwrite=overwrite)
    res = fit_budget(sim_onnx, ranges_json, cfg, progress=True)
    click.echo(format_budget(res))
    if res.report["sensitivity"]:
        click.echo("most sensitive: " + ", ".join(f"{r['conv']} ({r['score']:.3g})"
                                                  for r in res.report["sensitivity"][:5]))


@click.command("report")
@click.argument("sim_onnx", metavar="SIM_ONNX", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", required=True, type=click.Path(exists=True), help="YOLO data set (data.yaml or folder).")
@click.option("--split", default="val", show_default=True, help="Split of the data YAML to evaluate on.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Evaluate the first N images only.")
@click.option("--compare-images", "compare_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Images for the output error against FP32 [default: the first 8 of the split].")
@click.option("--num-compare", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images the output error against FP32 is measured on.")
@click.option("--out-prefix", default=None, type=click.Path(dir_okay=False),
              help="Write PREFIX.precision.{json,md,png} [default: NAME beside SIM_ONNX].")
@click.option("--force", is_flag=True, help="Rebuild even when nothing changed.")
@OVERWRITE_OPTION
def report_cmd(sim_onnx, data, split, limit, compare_dir, num_compare, out_prefix, force, overwrite):
    """Compare the FP32/FP16/INT8/INT8+fallback ONNX variants beside SIM_ONNX: mAP, output error, size.

    \b
    Examples:
      trtbuild report engines/shapes-yolov8n.sim.onnx --data datasets/shapes
    """
    images = tuple(select_images(compare_dir, num_compare)[0]) if compare_dir else None
    cfg = ReportConfig(data=Path(data), split=split, compare_images=images, num_compare=num_compare, limit=limit,
                       out_prefix=Path(out_prefix) if out_prefix else None, force=force, overwrite=overwrite)
    res = precision_report(sim_onnx, cfg, progress=True)
    click.echo(format_report(res.report, skipped=res.skipped))


@click.command("qat")
@click.argument("model", metavar="MODEL", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Labelled YOLO data set with train and val splits (data.yaml or its folder).")
@click.option("--epochs", default=QatConfig.epochs, show_default=True, type=click.IntRange(min=1),
              help="Fine-tuning epochs with INT8 fake quantization.")
@click.option("--imgsz", default=QatConfig.imgsz, show_default=True, type=click.IntRange(min=32),
              help="Training image size (square).")
@click.option("--batch", default=QatConfig.batch, show_default=True, type=click.IntRange(min=1),
              help="Training batch size.")
@click.option("--lr0", default=QatConfig.lr0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Initial learning rate (fine-tuning: lower than ultralytics' from-scratch 0.01).")
@click.option("--fraction", default=QatConfig.fraction, show_default=True,
              type=click.FloatRange(0, 1, min_open=True), help="Share of the train split used.")
@click.option("--device", default=QatConfig.device, show_default=True, help="cpu, or a CUDA device such as 0.")
@click.option("--workers", default=QatConfig.workers, show_default=True, type=click.IntRange(min=0),
              help="Data loader worker processes.")
@click.option("--out-dir", default=str(DEFAULT_OUT_DIR), show_default=True, type=click.Path(file_okay=False),
              help="Folder NAME-qat.pt and its report are written to.")
@click.option("--name", default=None, help="NAME of NAME-qat.pt [default: the model file's stem].")
@click.option("--force", is_flag=True, help="Train again even when model, data and options are unchanged.")
@OVERWRITE_OPTION
def qat_cmd(model, data, epochs, imgsz, batch, lr0, fraction, device, workers, out_dir, name, force, overwrite):
    """INT8 quantization-aware training of MODEL (ultralytics quantize=8, NVIDIA ModelOpt) → OUT_DIR/NAME-qat.pt.

    Then `trtbuild engine --model OUT_DIR/NAME-qat.pt --precision int8` builds it: the Q/DQ of the training are
    kept (no calibration). Needs the qat extra (nvidia-modelopt).

    \b
    Examples:
      trtbuild qat models/shapes-yolov8n.pt --data datasets/shapes-train --epochs 10 --device 0
    """
    cfg = QatConfig(data=Path(data), epochs=epochs, imgsz=imgsz, batch=batch, lr0=lr0, fraction=fraction,
                    device=device, workers=workers, out_dir=Path(out_dir), name=name, force=force,
                    overwrite=overwrite)
    res = qat(model, cfg, progress=True)
    click.echo(describe(res))
    click.echo(f"next      trtbuild engine --model {res.output} --precision int8")
