"""The engine's key and sidecar: ``<engine>.json`` carries what a loader must know without deserializing the engine
(which TensorRT and GPU it is for, I/O specs, profiles, class names), and is checked before an engine is loaded:
an engine built for another TensorRT version or GPU is refused with the command that rebuilds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..artifacts import read_json, sha256_json
from ..config import BuildConfig
from ..errors import EngineMismatchError, InputError
from ..iospec import IOSpec
from ..layout import Layout, model_name, sidecar_path
from ..onnx.graph import parse_literal
from ..version import version_tuple
from .buildspec import BuildPlan
from .compat import LABELS
from .host import Target


def cache_key(plan: BuildPlan, target: Target, source_sha: str, table_sha: str | None = None) -> str:
    """Same key ⇒ same engine: the ONNX content, precision, typing, profiles, flags, TensorRT flavor and version,
    and the GPU it was built on (standard TensorRT) or the compute capabilities it targets (TensorRT-RTX)."""
    opts = plan.options.to_dict()
    opts.pop("profiling_verbosity")  # changes what the inspector shows, not the engine's kernels
    if plan.int8_source != "calibrate":
        opts.pop("calib_images")  # read only by live calibration
    return sha256_json({
        "onnx": source_sha, "options": opts, "typing": plan.typing, "flags": sorted(plan.flags),
        "int8": plan.int8_source, "table": table_sha, "profiles": plan.profiles, "workspace": plan.workspace_bytes,
        "trt": target.trt_version, "gpu": target.gpu_name, "cc": target.compute_capability,
        **({"flavor": plan.flavor, "targets": list(plan.targets)} if plan.flavor != "tensorrt" else {}),
    })


def sidecar(plan: BuildPlan, target: Target, *, source_sha: str, metadata: Mapping[str, str],
            io: Sequence[dict], engine_bytes: int, seconds: float, table_sha: str | None) -> dict:
    """The fields of ``<engine>.json`` (read by the runtime, `inspect`, and people); ``run_stage`` adds key,
    outputs and hashes."""
    names = parse_literal(metadata.get("names"), {})
    return {
        "engine": plan.engine.name,
        "engine_bytes": engine_bytes,
        "precision": plan.options.precision,
        "typing": plan.typing,
        "int8_source": plan.int8_source,
        "calibration": ({"table": str(plan.calib_table), "sha256": table_sha} if plan.calib_table else None),
        "names": {str(k): v for k, v in dict(names).items()} if isinstance(names, Mapping) else names,
        "imgsz": parse_literal(metadata.get("imgsz")),
        "stride": parse_literal(metadata.get("stride")),
        "end2end": bool(plan.options.nms),
        "io": list(io),
        "profiles": {k: [list(s) for s in v] for k, v in plan.profiles.items()},
        "flavor": plan.flavor,
        "tensorrt_version": target.trt_version,
        "target_compute_capabilities": list(plan.targets) or None,
        "gpu": None if plan.flavor == "rtx" else {"name": target.gpu_name, "compute_capability":
                                                  target.compute_capability, "integrated": target.integrated},
        "dla_core": plan.options.dla_core,
        "hardware_compat": plan.options.hardware_compat,
        "version_compatible": plan.options.version_compatible,
        "source_onnx": _relative(plan.source, plan.engine.parent),
        "build_input": _relative(plan.build_input or plan.source, plan.engine.parent),
        "source_onnx_sha256": source_sha,
        "build_flags": sorted(plan.flags),
        "options": plan.options.to_dict(),
        "workspace_bytes": plan.workspace_bytes,
        "build_seconds": round(seconds, 2),
        "notes": plan.notes,
        "metadata": dict(metadata),
    }


def io_entry(spec: IOSpec, mode: str) -> dict:
    return {"name": spec.name, "mode": mode, "shape": list(spec.shape), "dtype": spec.dtype}


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)


def _cc(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(v).split(".")[:2])


def engine_mismatch(meta: Mapping, trt_version: str | None, gpu_name: str | None, cc: str | None) -> str | None:
    """Why an engine with sidecar ``meta`` cannot run on this host (``trt_version``: of the engine's flavor here),
    or None.

    TensorRT engines are tied to the TensorRT version that built them (a version-compatible engine runs on
    the same major, same or newer version) and to the GPU model (hardware compatibility 'same-cc' relaxes
    that to the compute capability, 'ampere+' to any Ampere or newer GPU). A TensorRT-RTX engine runs on the
    GPUs of the compute capabilities it was built for.
    """
    problems = []
    label = LABELS.get(meta.get("flavor", "tensorrt"), "TensorRT")
    built = meta.get("tensorrt_version")
    if built and trt_version:
        bv, hv = version_tuple(built), version_tuple(trt_version)
        if meta.get("version_compatible"):
            if bv[:1] != hv[:1] or hv < bv:
                problems.append(f"{label} {built} (version-compatible: runs on {bv[0]}.x ≥ {built}) "
                                f"vs {trt_version} here")
        elif bv != hv:
            problems.append(f"{label} {built} vs {trt_version} here")
    targets = meta.get("target_compute_capabilities") or []
    if targets and cc and _cc(cc) not in {_cc(t) for t in targets}:
        problems.append(f"compute capabilities {', '.join(targets)} vs {gpu_name} (sm {cc}) here")
    gpu = meta.get("gpu") or {}
    if gpu and gpu_name and cc:
        compat = meta.get("hardware_compat", "none")
        if compat == "ampere+":
            if _cc(cc) < (8, 0):
                problems.append(f"an Ampere-or-newer GPU (hardware compat) vs {gpu_name} (sm {cc}) here")
        elif compat == "same-cc":
            if _cc(cc) != _cc(gpu["compute_capability"]):
                problems.append(f"compute capability {gpu['compute_capability']} vs {cc} ({gpu_name}) here")
        elif gpu.get("name") != gpu_name or _cc(cc) != _cc(gpu.get("compute_capability", "0")):
            problems.append(f"{gpu.get('name')} (sm {gpu.get('compute_capability')}) vs {gpu_name} (sm {cc}) here")
    if not problems:
        return None
    return "built for " + "; ".join(problems)


def check_engine_host(engine: Path, meta: Mapping | None, trt_version: str | None, gpu_name: str | None,
                      cc: str | None) -> None:
    """Refuse, before deserializing, an engine whose sidecar names another TensorRT or GPU; say how to rebuild."""
    if not meta:
        return
    why = engine_mismatch(meta, trt_version, gpu_name, cc)
    if why:
        raise EngineMismatchError(f"{engine}: {why}; rebuild it on this host: {rebuild_command(engine, meta)}")


def rebuild_command(engine: Path, meta: Mapping) -> str:
    """The `trtbuild build` command that makes ``engine`` again with the options its sidecar records."""
    src = meta.get("build_input") or meta.get("source_onnx") or "MODEL.sim.onnx"
    parts = ["trtbuild build", str(engine.parent / src), f"--precision {meta.get('precision', 'fp16')}"]
    opts, defaults = dict(meta.get("options") or {}), BuildConfig().to_dict()
    for key, value in opts.items():
        if key in ("precision", "profiling_verbosity") or value == defaults.get(key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "strongly_typed":
            parts.append(f"--typing {'strong' if value else 'weak'}")
        elif key == "gpu_fallback":
            parts.append("--no-gpu-fallback")
        elif key == "version_compatible":
            parts.append(flag)
        elif key == "calib_images":
            parts.append(f"--calib {value}")
        elif key.endswith("_hw"):
            parts.append(f"{flag} {value[0]},{value[1]}")
        else:
            parts.append(f"{flag} {value}")
    rebuilt = BuildConfig(**{k: v for k, v in opts.items() if k in defaults})
    if engine.name != Layout(engine.parent, model_name(src)).engine(rebuilt.precision, rebuilt.nms,
                                                                     rebuilt.dla_core).name:
        parts.append(f"--name {engine.name.split('.')[0]}")
    return " ".join(parts + [f"--out-dir {engine.parent}", "--force"])


def read_sidecar(engine: str | Path) -> dict | None:
    """The sidecar of ``engine``; None when there is none, InputError when there is one that is not JSON."""
    path = sidecar_path(engine)
    meta = read_json(path)
    if meta is None and path.exists():
        raise InputError(f"{path}: the sidecar of {Path(engine).name} is not readable JSON (damaged or edited); "
                         "rebuild the engine (force=True) to rewrite both")
    return meta
