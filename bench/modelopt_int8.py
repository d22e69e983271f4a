#!/usr/bin/env python3
"""Run NVIDIA ModelOpt's ONNX INT8 PTQ the way ultralytics' TensorRT 11 export does (max calibration on the
CPU; the head's last convs (``*.2/Conv``) and the DFL conv excluded), in ModelOpt's own environment.

Called by bench/precision.py with the interpreter of a separate venv: nvidia-modelopt[onnx] pins onnx~=1.21
and onnxruntime-gpu, which cannot share trtbuild's environment.

    MODELOPT_PYTHON bench/modelopt_int8.py MODEL.onnx CALIB.npy OUT.onnx
"""

import sys

import numpy as np


def main(argv: list[str]) -> int:
    model, calib_npy, out = argv
    from modelopt.onnx.quantization import quantize

    calib = np.load(calib_npy, mmap_mode="r")
    quantize(
        model,
        quantize_mode="int8",
        calibration_data={"images": np.ascontiguousarray(calib)},
        calibration_method="max",
        calibration_eps=["cpu"],
        nodes_to_exclude=[r".*\.2/Conv$", r".*/dfl/"],
        output_path=out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
