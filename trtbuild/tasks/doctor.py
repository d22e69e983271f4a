"""``trtbuild doctor``: what this host has (Python packages, TensorRT, pycuda, CUDA driver, GPUs, Jetson)
and therefore which pipeline stages can run here. Probes only; never installs or changes anything."""

from __future__ import annotations

import platform
import sys
from importlib.util import find_spec
from pathlib import Path

from ..artifacts import package_version
from ..console import human_bytes
from ..errors import INSTALL_HINT
from ..trt.compat import RTX_INSTALL_HINT
from ..trt.host import Host, probe_host


def _jetson_model() -> str | None:
    model_file = Path("/proc/device-tree/model")
    if Path("/etc/nv_tegra_release").exists() or (
        model_file.exists() and "jetson" in model_file.read_text(errors="ignore").lower()
    ):
        return model_file.read_text(errors="ignore").strip("\x00\n ") if model_file.exists() else "Jetson"
    return None


def doctor(host: Host | None = None) -> dict:
    """Everything ``trtbuild doctor`` prints, as a dict (also its ``--json`` output), for ``host`` (default: probe
    this one, pycuda included)."""
    host = host or probe_host(pycuda=True)
    trt, rtx, cuda = host.tensorrt, host.rtx, host.cuda
    pycuda_ok, pycuda_text = host.pycuda.usable, host.pycuda.text
    have = {name: find_spec(mod) is not None for name, mod in (
        ("ultralytics", "ultralytics"), ("torch", "torch"), ("onnx", "onnx"),
        ("onnxsim", "onnxsim"), ("onnxruntime", "onnxruntime"),
    )}
    gpu = bool(cuda.gpus)
    why_no_engine = (
        f"TensorRT {trt.error}; {INSTALL_HINT}" if not trt.installed else (None if gpu else cuda.error)
    )
    stages = {
        "export (ultralytics → ONNX)": (have["ultralytics"] and have["torch"] and have["onnx"], "needs ultralytics"),
        "simplify (onnxsim + parity)": (have["onnxsim"] and have["onnxruntime"], "needs onnxsim, onnxruntime"),
        "infer / eval / bench with ONNX Runtime": (have["onnxruntime"], "needs onnxruntime"),
        "build TensorRT engines": (trt.installed and gpu, why_no_engine),
        "run TensorRT engines (pycuda runtime)": (
            trt.installed and gpu and pycuda_ok,
            why_no_engine or (None if pycuda_ok else f"pycuda {pycuda_text}"),
        ),
        "build TensorRT-RTX engines (ahead of time, no GPU needed)": (
            rtx.installed, f"TensorRT-RTX {rtx.error}; {RTX_INSTALL_HINT}"),
        "run TensorRT-RTX engines (RTX GPUs, pycuda runtime)": (
            rtx.installed and gpu and pycuda_ok,
            f"TensorRT-RTX {rtx.error}; {RTX_INSTALL_HINT}" if not rtx.installed else (
                cuda.error if not gpu else (None if pycuda_ok else f"pycuda {pycuda_text}"))),
    }
    return {
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "jetson": _jetson_model(),
        "packages": {p: package_version(p) or "not installed" for p in (
            "trtbuild", "numpy", "onnx", "onnxruntime", "onnxsim", "ultralytics", "torch", "tensorrt-rtx")},
        "tensorrt": {
            "installed": trt.installed,
            "version": trt.version,
            "status": trt.version if trt.installed else trt.error,
            "typing": trt.typing_summary(),
        },
        "tensorrt_rtx": {
            "installed": rtx.installed,
            "version": rtx.version,
            "status": rtx.version if rtx.installed else rtx.error,
            "typing": rtx.typing_summary(),
        },
        "pycuda": {"usable": pycuda_ok, "status": pycuda_text},
        "cuda_driver": cuda.driver_version,
        "cuda_error": cuda.error,
        "gpus": [vars(g) for g in cuda.gpus],
        "stages": {k: {"available": bool(ok), "why_not": None if ok else why} for k, (ok, why) in stages.items()},
    }


def format_doctor(info: dict) -> str:
    trt, rtx = info["tensorrt"], info["tensorrt_rtx"]
    lines = [
        f"Python:       {info['python']} ({info['platform']})",
        *(f"{name + ':':<13} {ver}" for name, ver in info["packages"].items()),
        f"TensorRT:     {trt['status'] if trt['installed'] else 'not installed'}"
        + (f" — {trt['typing']}" if trt["installed"] else f" ({INSTALL_HINT})"),
        f"TensorRT-RTX: {rtx['status'] if rtx['installed'] else 'not installed'}"
        + (f" — {rtx['typing']}" if rtx["installed"] else f" ({RTX_INSTALL_HINT})"),
        f"pycuda:       {info['pycuda']['status']}",
        f"CUDA driver:  {info['cuda_driver'] or info['cuda_error']}",
    ]
    for g in info["gpus"]:
        kind = "integrated" if g["integrated"] else "discrete"
        lines.append(
            f"GPU {g['index']}:        {g['name']} (compute capability {g['compute_capability']}, "
            f"{human_bytes(g['total_memory'])}, {kind})"
        )
    lines.append(f"Jetson:       {info['jetson'] or 'no'}")
    lines.append("Stages on this host:")
    for stage, st in info["stages"].items():
        mark = "yes" if st["available"] else "no "
        lines.append(f"  [{mark}] {stage}" + ("" if st["available"] else f" — {st['why_not']}"))
    return "\n".join(lines)
