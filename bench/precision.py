#!/usr/bin/env python3
"""INT8 recipes compared in one run on the reference model, same calibration images, same evaluator: trtbuild's
default (one-pass collector, percentile) and its previous default (ONNX Runtime entropy), every quantizable conv
INT8, no fallback; the default with learned int8 weights and scales (``--reconstruct adaquant``, ``adaround``); ONNX
Runtime's
``quantize_static`` with its defaults (QDQ, MinMax, per-tensor) and with the head decode left in float; ModelOpt
INT8 as ultralytics' TensorRT 11 export runs it. Each recipe's time on this host is printed beside its figures.

    python bench/precision.py [--calib calib_data] [--data datasets/shapes] [--num 512] [--hard] [--limit N]
        [--reconstruct adaquant,adaround] [--reconstruct-steps N] [--reconstruct-images N] [--modelopt-python PY]

Prints mAP50 / mAP50-95 per recipe and the drop against FP32 in points (a text table and the same as Markdown),
then checks the targets for every trtbuild recipe: a drop ≤ 0.5 point, and ≤ half of ModelOpt's drop.
``--hard`` adds the synthetic generator's harder split (smaller objects, more clutter). ModelOpt needs
``--modelopt-python`` (the interpreter of a venv holding nvidia-modelopt[onnx], e.g. ``make modelopt-venv``): its
recipe (max calibration, head output convs and DFL excluded) runs on the same calibration images.
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
    from trtbuild.stages.precision.heads import head_decode_nodes
    from trtbuild.stages.precision.ranges import CalibrationData

    data = list(CalibrationData(images, imgsz, batch=8))
    exclude = sorted(head_decode_nodes(load_onnx(sim_onnx, check=False))) if exclude_decode else None
    quantize_static(str(sim_onnx), str(out), _Reader(data, "images"), nodes_to_exclude=exclude)
    return out


def _own_copy(sim: Path, folder: Path) -> Path:
    """``sim`` copied into ``folder`` (created): each recipe gets a folder of its own, since every stage writes
    NAME.<stage> files beside its input."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    own = folder / sim.name
    shutil.copyfile(sim, own)
    return own


def _calibrated(sim: Path, work: Path, method: str, args, tensors) -> tuple[Path, dict, float, str]:
    """``sim`` copied into ``work/<method>/``, calibrated there with ``method`` and quantized: (int8 ONNX, its
    report, calibration seconds, a note when an earlier run's ranges were reused)."""
    from trtbuild import CalibrateConfig, calibrate
    from trtbuild.stages.precision.int8 import int8

    own = _own_copy(sim, work / method)
    cal = calibrate(own, CalibrateConfig(images=Path(args.calib), num=args.num, method=method, tensors=tensors),
                    progress=True)
    q = int8(own, cal.output)
    return q.output, q.report, cal.report["seconds"]["total"], " (an earlier run's, up to date)" if cal.skipped else ""


def _reconstructed(int8_onnx: Path, ranges: Path, work: Path, method: str, args) -> tuple[Path, dict]:
    """The default recipe's Q/DQ model with learned int8 weights and scales (``--reconstruct METHOD``), in
    ``work/METHOD/`` (its own folder: the int8 stage writes NAME.int8.onnx)."""
    from trtbuild import Int8Config
    from trtbuild.layout import Layout
    from trtbuild.stages.precision.int8 import int8

    own = _own_copy(Layout.of(int8_onnx).sim, work / method)
    cfg = Int8Config(reconstruct=method, reconstruct_steps=args.reconstruct_steps,
                     reconstruct_images=args.reconstruct_images)
    q = int8(own, ranges, cfg, progress=True)
    return q.output, q.report


def _timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def run(args) -> int:
    from trtbuild import EvalConfig, ExportConfig, evaluate, export, simplify
    from trtbuild.console import table
    from trtbuild.data.synth import generate_dataset
    from trtbuild.data.images import select_images
    from trtbuild.stages.precision.int8 import qdq_tensors

    work = Path(args.work)
    sim = simplify(export(args.model, ExportConfig(imgsz=(640, 640), out_dir=work)).output).output
    images, skipped = select_images(args.calib, args.num, 0)
    tensors = tuple(qdq_tensors(sim))
    recipes: dict[str, Path] = {}
    seconds: dict[str, str] = {}
    notes, ours = [], []
    for label, method in ((f"trtbuild previous default ({args.previous})", args.previous),
                          (f"trtbuild default ({args.method})", args.method)):
        model, rep, took, reused = _calibrated(sim, work, method, args, tensors)
        recipes[label], seconds[label] = model, f"{took:.0f} s{reused}"
        ours.append(label)
        notes.append(f"{label}: calibration {took:.0f} s{reused} on {len(images)} images ({len(skipped)} skipped), "
                     f"{len(rep['qdq']['quantized_convs'])} of {rep['qdq']['convs']} convs INT8")
    default = recipes[ours[-1]]
    for method in [m for m in args.reconstruct.split(",") if m] if args.reconstruct_steps else []:
        ranges = default.with_name(default.name.replace(".int8.onnx", ".ranges.json"))
        model, rep = _reconstructed(default, ranges, work, method, args)
        rec = rep["reconstruct"]
        label = (f"trtbuild {args.method} + --reconstruct {method} ({rec['images']} images, "
                 f"{rec['schedule']['iters']} steps)")
        recipes[label] = model
        seconds[label] = f"{seconds[ours[1]].split(' ')[0]} s + {rec['seconds']:.0f} s"
        ours.append(label)
        notes.append(f"{label}: {len(rep['qdq']['quantized_convs'])} of {rep['qdq']['convs']} convs INT8, "
                     f"{rec['changed_weights']['weights_changed']} of {rec['changed_weights']['weights']} weights "
                     f"off round-to-nearest, scales × {rec['changed_weights']['scale_ratio_min']}…"
                     f"{rec['changed_weights']['scale_ratio_max']}")
    label = "ORT quantize_static, defaults (QDQ, MinMax)"
    recipes[label], t = _timed(ort_quantize_static, sim, images, (640, 640), work / "ort-quantize-static.onnx")
    seconds[label] = f"{t:.0f} s"
    label = "ORT quantize_static, head decode in float"
    recipes[label], t = _timed(ort_quantize_static, sim, images, (640, 640), work / "ort-quantize-static-nodecode.onnx",
                               exclude_decode=True)
    seconds[label] = f"{t:.0f} s"
    modelopt = "ModelOpt INT8 (ultralytics TRT 11 recipe)"
    if args.modelopt_python:
        recipes[modelopt], t = _timed(modelopt_quantize, args.modelopt_python, sim, images, (640, 640),
                                      work / "modelopt-int8.onnx")
        seconds[modelopt] = f"{t:.0f} s"

    splits = [("val", Path(args.data))]
    if args.hard:
        hard = work / "hard"
        if not (hard / "data.yaml").is_file():
            generate_dataset(hard, n_train=0, n_val=args.hard_n, seed=2, difficulty="hard", progress=False)
        splits.append(("hard val", hard))
    results: dict[str, dict[str, tuple[float, float, float]]] = {"FP32 (ONNX Runtime)": {}}
    verdicts = []
    for split, data in splits:
        fp32 = evaluate(sim, EvalConfig(data=data, limit=args.limit), progress=True)
        base = fp32["map50_95"]
        results["FP32 (ONNX Runtime)"][split] = (fp32["map50"], base, 0.0)
        drops = {}
        for label, model in recipes.items():
            res = evaluate(model, EvalConfig(data=data, limit=args.limit), progress=True)
            drops[label] = (base - res["map50_95"]) * 100
            results.setdefault(label, {})[split] = (res["map50"], res["map50_95"], drops[label])
        for label in ours:
            mine = drops[label]
            line = f"{split}: {label} drops {mine:.2f} pt (≤ 0.5: {'MET' if mine <= 0.5 else 'NOT MET'}"
            if modelopt in drops:
                half = drops[modelopt] / 2
                line += (f"; ≤ ½ of ModelOpt's {drops[modelopt]:.2f}, {half:.2f}: "
                         f"{'MET' if mine <= half else 'NOT MET'}")
            verdicts.append(line + ")")
    header = ["recipe"]
    for split, _ in splits:
        header += [f"{split} mAP50", f"{split} mAP50-95", "drop (pt)"]
    header.append("time (this host)")
    rows = []
    for label, by_split in results.items():
        row = [label]
        for split, _ in splits:
            m50, m, d = by_split[split]
            row += [f"{m50:.4f}", f"{m:.4f}", "—" if label.startswith("FP32") else f"{d:.2f}"]
        rows.append(row + [seconds.get(label, "—")])
    n = f"first {args.limit}" if args.limit else "all"
    print(f"\nmAP on {n} images of each split; drop = FP32 − recipe, in points of mAP50-95")
    print(table(rows, header))
    print("\n| " + " | ".join(header) + " |\n|" + " --- |" + " ---: |" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
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
    ap.add_argument("--previous", default="entropy", help="the recipe it replaced [default: entropy]")
    ap.add_argument("--reconstruct", default="adaquant,adaround",
                    help="learned-INT8 rows (trtbuild engine --reconstruct METHOD), comma-separated; '' for none")
    ap.add_argument("--reconstruct-steps", type=int, default=None,
                    help="their optimizer steps [default: trtbuild's]; 0 leaves them out")
    ap.add_argument("--reconstruct-images", type=int, default=None,
                    help="calibration images they fit on [default: trtbuild's]")
    ap.add_argument("--limit", type=int, default=None, help="evaluate on the first N images only")
    ap.add_argument("--hard", action="store_true", help="also evaluate on a harder synthetic split")
    ap.add_argument("--hard-n", type=int, default=300)
    ap.add_argument("--modelopt-python", default=os.environ.get("TRTBUILD_MODELOPT_PYTHON"),
                    help="python of a venv with nvidia-modelopt[onnx]: adds ultralytics' TRT 11 recipe")
    ap.add_argument("--work", default=None, help="work folder for artifacts [default: a temporary folder]")
    args = ap.parse_args(argv)
    from trtbuild import Int8Config

    if args.reconstruct_steps is None:
        args.reconstruct_steps = Int8Config.reconstruct_steps
    if args.reconstruct_images is None:
        args.reconstruct_images = Int8Config.reconstruct_images
    if args.work:
        return run(args)
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        args.work = tmp
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
