#!/usr/bin/env python3
"""Calibration speed, previous default against the new one, in one run on the same images and tensors.

    python bench/calibration.py [--calib calib_data] [--num 512] [--model models/shapes-yolov8n.pt]

The baseline is ONNX Runtime's entropy calibrator (trtbuild's default until 2026-11-29: its histograms, then a
pure-Python KL search per tensor); the candidate is trtbuild's one-pass collector with the percentile threshold
(the default now). Both measure the tensors the Q/DQ ONNX quantizes, on the same letterboxed images, uncached.
Prints seconds, images per second and the ratio; the target is ≥ 3×.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    from trtbuild import CalibrateConfig, ExportConfig, calibrate, export, simplify
    from trtbuild.stages.precision.int8 import qdq_tensors

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "models" / "shapes-yolov8n.pt"))
    ap.add_argument("--calib", default=str(REPO / "calib_data"))
    ap.add_argument("--num", type=int, default=512)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        sim = simplify(export(args.model, ExportConfig(out_dir=Path(tmp))).output).output
        tensors = tuple(qdq_tensors(sim))
        rows = []
        for label, method in (("previous default: ONNX Runtime entropy", "entropy"),
                              ("new default: one-pass collector, percentile", "percentile")):
            t0 = time.perf_counter()
            res = calibrate(sim, CalibrateConfig(images=Path(args.calib), num=args.num, method=method, tensors=tensors,
                                                 out_dir=Path(tmp) / method, force=True), progress=True)
            seconds = time.perf_counter() - t0
            n = len(res.report["images"])
            rows.append((label, seconds, n))
            print(f"{label}: {n} images, {len(tensors)} tensors, {seconds:.1f} s ({n / seconds:.2f} images/s)",
                  flush=True)
    (_, base, _), (_, new, _) = rows
    print(f"one-pass percentile is {base / new:.2f}× faster than ONNX Runtime entropy (target ≥ 3×): "
          f"{'MET' if base / new >= 3 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
