#!/usr/bin/env python3
"""INT8 recipes compared in one run on the reference model: trtbuild's Q/DQ (+ accuracy budget) against ONNX
Runtime's ``quantize_static`` with its defaults (QDQ, MinMax, per-tensor), same calibration images, same eval.

    python bench/precision.py [--calib calib_data] [--data datasets/shapes] [--num 512] [--limit N]

Prints mAP50 / mAP50-95 per recipe and the drop against FP32 in points, then checks the targets: ours drops
≤ 1.0 point and ≤ half of ONNX Runtime's drop. If ONNX Runtime's own drop is under 0.5 point the split is too
easy to tell recipes apart; ``--hard`` adds the synthetic generator's harder split (smaller objects, more clutter).
With ``--modelopt-python`` (the interpreter of a venv holding nvidia-modelopt[onnx], e.g. ``make
modelopt-venv``) ultralytics' TensorRT 11 recipe (ModelOpt INT8, max calibration, head output convs and DFL
excluded) is a third recipe, on the same calibration images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
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


def run(args) -> int:
    from trtbuild import BudgetConfig, CalibrateConfig, ExportConfig, budget, calibrate, evaluate, export, simplify
    from trtbuild.console import table
    from trtbuild.data.synth import generate_dataset
    from trtbuild.stages.precision.calibrate import select_images
    from trtbuild.stages.precision.int8 import qdq_tensors

    work = Path(args.work)
    sim = simplify(export(args.model, ExportConfig(imgsz=(640, 640), out_dir=work)).output).output
    images, skipped = select_images(args.calib, args.num, 0)
    t0 = time.perf_counter()
    cal = calibrate(sim, CalibrateConfig(images=Path(args.calib), num=args.num, method=args.method,
                                         tensors=tuple(qdq_tensors(sim))), progress=True)
    print(f"calibration: {len(images)} images ({len(skipped)} skipped), {args.method}, "
          f"{time.perf_counter() - t0:.0f} s{' (cached)' if cal.skipped else ''}")
    ort_model = ort_quantize_static(sim, images, (640, 640), work / "ort-quantize-static.onnx")
    ort_nodecode = ort_quantize_static(sim, images, (640, 640), work / "ort-quantize-static-nodecode.onnx",
                                       exclude_decode=True)
    mo_model = None
    if args.modelopt_python:
        mo_model = modelopt_quantize(args.modelopt_python, sim, images, (640, 640), work / "modelopt-int8.onnx")

    splits = [("val", Path(args.data))]
    if args.hard:
        hard = work / "hard"
        if not (hard / "data.yaml").is_file():
            generate_dataset(hard, n_train=0, n_val=args.hard_n, seed=2, difficulty="hard", progress=False)
        splits.append(("hard val", hard))
    rows, verdicts = [], []
    for label, data in splits:
        fitted = budget(sim, cal.output, BudgetConfig(data=data, max_map_drop=args.max_map_drop, limit=args.limit),
                        progress=True).report
        fp32 = fitted["fp32"]  # the budget evaluated FP32 on the same images
        ort = evaluate(ort_model, data, limit=args.limit)
        steps = fitted["steps"]
        ours_plain, ours_final = steps[0], steps[-1]
        base = fp32["map50_95"]

        def drop(m):
            return (base - m) * 100

        rows += [
            (label, "FP32 (ONNX Runtime)", f"{fp32['map50']:.4f}", f"{base:.4f}", "—"),
            (label, "ORT quantize_static (QDQ, MinMax)", f"{ort['map50']:.4f}", f"{ort['map50_95']:.4f}",
             f"{drop(ort['map50_95']):.2f}"),
            (label, f"trtbuild INT8 ({args.method})", f"{ours_plain['map50']:.4f}",
             f"{ours_plain['map50_95']:.4f}", f"{drop(ours_plain['map50_95']):.2f}"),
        ]
        ort_nd = evaluate(ort_nodecode, data, limit=args.limit)
        rows.append((label, "ORT quantize_static, head decode in float", f"{ort_nd['map50']:.4f}",
                     f"{ort_nd['map50_95']:.4f}", f"{drop(ort_nd['map50_95']):.2f}"))
        if mo_model is not None:
            mo = evaluate(mo_model, data, limit=args.limit)
            rows.append((label, "ModelOpt INT8 (ultralytics TRT 11 recipe)", f"{mo['map50']:.4f}",
                         f"{mo['map50_95']:.4f}", f"{drop(mo['map50_95']):.2f}"))
        if len(steps) > 1:
            rows.append((label, f"trtbuild INT8 + fallback ({len(ours_final['excluded'])} convs)",
                         f"{ours_final['map50']:.4f}", f"{ours_final['map50_95']:.4f}",
                         f"{drop(ours_final['map50_95']):.2f}"))
        ours_drop, ort_drop = drop(ours_final["map50_95"]), drop(ort["map50_95"])
        verdicts.append(f"{label}: ours drops {ours_drop:.2f} pt (target ≤ {args.max_map_drop}): "
                        f"{'MET' if ours_drop <= args.max_map_drop else 'NOT MET'}; ONNX Runtime drops "
                        f"{ort_drop:.2f} pt, ours ≤ half of it: {'MET' if ours_drop <= ort_drop / 2 else 'NOT MET'}")
        if ort_drop < 0.5:
            verdicts.append(f"{label}: ONNX Runtime's own drop is under 0.5 pt: this split is too easy to tell "
                            "recipes apart" + ("" if args.hard else " (rerun with --hard)"))
    n = f"first {args.limit}" if args.limit else "all"
    print(f"\nmAP on {n} images of each split; drop = FP32 − recipe, in points of mAP50-95")
    print(table(rows, ("split", "recipe", "mAP50", "mAP50-95", "drop (pt)")))
    print()
    for v in verdicts:
        print(v)
    if not args.modelopt_python:
        print(MODELOPT_NOTE)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "models" / "shapes-yolov8n.pt"))
    ap.add_argument("--calib", default=str(REPO / "calib_data"), help="calibration images (make calib)")
    ap.add_argument("--data", default=str(REPO / "datasets" / "shapes"), help="eval data set (make data)")
    ap.add_argument("--num", type=int, default=512, help="calibration images")
    ap.add_argument("--method", default="entropy", choices=("entropy", "percentile", "minmax"))
    ap.add_argument("--max-map-drop", type=float, default=1.0)
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
