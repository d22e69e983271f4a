#!/usr/bin/env python3
"""INT8 recipes compared in one run on the reference model, same calibration images, same evaluator: trtbuild's
new default (one-pass collector, percentile) and its previous default (ONNX Runtime entropy), every quantizable
conv INT8, no fallback; ONNX Runtime's ``quantize_static`` with its defaults (QDQ, MinMax, per-tensor) and with
the head decode left in float; ModelOpt INT8 as ultralytics' TensorRT 11 export runs it.

    python bench/precision.py [--calib calib_data] [--data datasets/shapes] [--num 512] [--hard] [--limit N]

Prints mAP50 / mAP50-95 per recipe and the drop against FP32 in points, then checks the targets: the new default
drops ≤ 0.5 point, and ≤ half of ModelOpt's drop. ``--hard`` adds the synthetic generator's harder split (smaller
objects, more clutter). ModelOpt needs ``--modelopt-python`` (the interpreter of a venv holding
nvidia-modelopt[onnx], e.g. ``make modelopt-venv``): its recipe (max calibration, head output convs and DFL
excluded) runs on the same calibration images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELOPT_NOTE = (
    "ModelOpt: not run (pass --modelopt-python, e.g. .venv-modelopt/bin/python from `make modelopt-venv`): "
    "nvidia-modelopt[onnx] pins onnx~=1.21 and onnxruntime-gpu, so it lives in a venv of its own."
)


def modelopt_quantize(python: str, sim_onnx: Path, images: list[Path], imgsz, out: Path) -> Path:
    """ultralytics' TensorRT 11 INT8 recipe through ModelOpt, run by ``python`` (ModelOpt's own venv)."""
    import subprocess

    import numpy as np

    from trtbuild.stages.precision.ranges import CalibrationData

    calib = out.with_suffix(".calib.npy")
    batches = list(CalibrationData(images, imgsz, batch=8))
    arr = np.lib.format.open_memmap(calib, mode="w+", dtype=np.float32,
                                    shape=(sum(len(b) for b in batches), 3, *imgsz))
    start = 0
    for b in batches:
        arr[start : start + len(b)] = b
        start += len(b)
    arr.flush()
    del arr
    try:
        subprocess.run([python, str(Path(__file__).with_name("modelopt_int8.py")), str(sim_onnx), str(calib),
                        str(out)], check=True, stdout=subprocess.DEVNULL)
    finally:
        calib.unlink(missing_ok=True)
    return out


class _Reader:
    """ONNX Runtime CalibrationDataReader over trtbuild's calibration batches, one image per feed (the model
    has a static batch of 1)."""

    def __init__(self, batches, input_name: str):
        self._feeds = iter([{input_name: b[i : i + 1]} for b in batches for i in range(len(b))])

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):  # not needed by quantize_static's single pass
        pass


def ort_quantize_static(sim_onnx: Path, images: list[Path], imgsz, out: Path, exclude_decode: bool = False) -> Path:
    """ONNX Runtime's quantize_static with its defaults (QDQ, MinMax, per-tensor int8); ``exclude_decode`` also
    leaves trtbuild's detected head decode in float, to show what the defaults' failure comes from."""
    from onnxruntime.quantization import quantize_static

    from trtbuild.onnx.graph import load_onnx
    from trtbuild.stages.precision.qdq import head_decode_nodes
    from trtbuild.stages.precision.ranges import CalibrationData

    data = list(CalibrationData(images, imgsz, batch=8))
    exclude = sorted(head_decode_nodes(load_onnx(sim_onnx, check=False))) if exclude_decode else None
    quantize_static(str(sim_onnx), str(out), _Reader(data, "images"), nodes_to_exclude=exclude)
    return out


def _calibrated(sim: Path, work: Path, method: str, args, tensors) -> tuple[Path, dict, str]:
    """``sim`` copied into ``work/<method>/``, calibrated there with ``method`` and quantized: (int8 ONNX, its
    report, how long calibration took)."""
    import shutil

    from trtbuild import CalibrateConfig, calibrate
    from trtbuild.stages.precision.int8 import int8

    folder = work / method
    folder.mkdir(parents=True, exist_ok=True)
    own = folder / sim.name
    shutil.copyfile(sim, own)
    cal = calibrate(own, CalibrateConfig(images=Path(args.calib), num=args.num, method=method, tensors=tensors),
                    progress=True)
    took = f"{cal.report['seconds']['total']:.0f} s" + (" (an earlier run: up to date)" if cal.skipped else "")
    q = int8(own, cal.output)
    return q.output, q.report, took


def run(args) -> int:
    from trtbuild import EvalConfig, ExportConfig, evaluate, export, simplify
    from trtbuild.console import table
    from trtbuild.data.synth import generate_dataset
    from trtbuild.stages.precision.calibrate import select_images
    from trtbuild.stages.precision.int8 import qdq_tensors

    work = Path(args.work)
    sim = simplify(export(args.model, ExportConfig(imgsz=(640, 640), out_dir=work)).output).output
    images, skipped = select_images(args.calib, args.num, 0)
    tensors = tuple(qdq_tensors(sim))
    recipes: dict[str, Path] = {}
    notes = []
    for label, method in ((f"trtbuild previous default ({args.previous})", args.previous),
                          (f"trtbuild new default ({args.method})", args.method)):
        model, rep, took = _calibrated(sim, work, method, args, tensors)
        recipes[label] = model
        notes.append(f"{label}: calibration {took} on {len(images)} images ({len(skipped)} skipped), "
                     f"{len(rep['qdq']['quantized_convs'])} of {rep['qdq']['convs']} convs INT8")
    ours = list(recipes)[-1]
    recipes["ORT quantize_static, defaults (QDQ, MinMax)"] = ort_quantize_static(
        sim, images, (640, 640), work / "ort-quantize-static.onnx")
    recipes["ORT quantize_static, head decode in float"] = ort_quantize_static(
        sim, images, (640, 640), work / "ort-quantize-static-nodecode.onnx", exclude_decode=True)
    modelopt = "ModelOpt INT8 (ultralytics TRT 11 recipe)"
    if args.modelopt_python:
        recipes[modelopt] = modelopt_quantize(args.modelopt_python, sim, images, (640, 640),
                                              work / "modelopt-int8.onnx")

    splits = [("val", Path(args.data))]
    if args.hard:
        hard = work / "hard"
        if not (hard / "data.yaml").is_file():
            generate_dataset(hard, n_train=0, n_val=args.hard_n, seed=2, difficulty="hard", progress=False)
        splits.append(("hard val", hard))
    rows, verdicts = [], []
    for split, data in splits:
        fp32 = evaluate(sim, EvalConfig(data=data, limit=args.limit), progress=True)
        base = fp32["map50_95"]
        rows.append((split, "FP32 (ONNX Runtime)", f"{fp32['map50']:.4f}", f"{base:.4f}", "—"))
        drops = {}
        for label, model in recipes.items():
            res = evaluate(model, EvalConfig(data=data, limit=args.limit), progress=True)
            drops[label] = (base - res["map50_95"]) * 100
            rows.append((split, label, f"{res['map50']:.4f}", f"{res['map50_95']:.4f}", f"{drops[label]:.2f}"))
        mine = drops[ours]
        verdicts.append(f"{split}: new default drops {mine:.2f} pt with every quantizable conv INT8 (target ≤ 0.5): "
                        f"{'MET' if mine <= 0.5 else 'NOT MET'}")
        if modelopt in drops:
            verdicts.append(f"{split}: ModelOpt drops {drops[modelopt]:.2f} pt; the new default ≤ half of it "
                            f"(≤ {drops[modelopt] / 2:.2f}): {'MET' if mine <= drops[modelopt] / 2 else 'NOT MET'}")
    n = f"first {args.limit}" if args.limit else "all"
    print(f"\nmAP on {n} images of each split; drop = FP32 − recipe, in points of mAP50-95")
    print(table(rows, ("split", "recipe", "mAP50", "mAP50-95", "drop (pt)")))
    print()
    for line in notes + verdicts:
        print(line)
    if not args.modelopt_python:
        print(MODELOPT_NOTE)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "models" / "shapes-yolov8n.pt"))
    ap.add_argument("--calib", default=str(REPO / "calib_data"), help="calibration images (make calib)")
    ap.add_argument("--data", default=str(REPO / "datasets" / "shapes"), help="eval data set (make data)")
    ap.add_argument("--num", type=int, default=512, help="calibration images")
    ap.add_argument("--method", default="percentile", choices=("percentile", "mse", "minmax", "entropy"),
                    help="trtbuild's recipe under test [default: the default, percentile]")
    ap.add_argument("--previous", default="entropy", help="the recipe it replaces [default: entropy]")
    ap.add_argument("--limit", type=int, default=None, help="evaluate on the first N images only")
    ap.add_argument("--hard", action="store_true", help="also evaluate on a harder synthetic split")
    ap.add_argument("--hard-n", type=int, default=300)
    ap.add_argument("--modelopt-python", default=os.environ.get("TRTBUILD_MODELOPT_PYTHON"),
                    help="python of a venv with nvidia-modelopt[onnx]: adds ultralytics' TRT 11 recipe")
    ap.add_argument("--work", default=None, help="work folder for artifacts [default: a temporary folder]")
    args = ap.parse_args(argv)
    if args.work:
        return run(args)
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        args.work = tmp
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
