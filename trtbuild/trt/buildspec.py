"""What an engine build is, without TensorRT: options, profiles, source choice, cache key, sidecar, refusals.

Everything here is pure Python so it is tested on every host; ``builder.py`` turns a ``BuildPlan`` into
TensorRT calls. The sidecar ``<engine>.json`` carries what a loader must know without deserializing the
engine (which TensorRT and GPU it is for, I/O specs, profiles) — the engine file itself stays plain so
trtexec, C++ and DeepStream load it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..artifacts import read_json, sha256_file, sha256_json
from ..errors import InputError, TrtbuildError
from ..runtime.base import IOSpec
from .compat import TensorRTInfo, version_tuple

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("auto", "qdq", "table", "calibrate")
HW_COMPAT = ("none", "ampere+", "same-cc")
DEFAULT_WORKSPACE_MB = 4096
DEFAULT_WORKSPACE_MB_INTEGRATED = 1024  # Jetson: the GPU shares the board's RAM with everything else
TIMING_CACHE_NAME = "timing.cache"
# ONNX artifact suffixes made by the earlier stages, stripped to get the model's base name
_STAGE_SUFFIXES = (".int8fb", ".int8", ".fp16", ".sim", ".nms", ".nms-efficient")


class EngineMismatchError(TrtbuildError):
    """An engine (by its sidecar) was built for another TensorRT version or GPU than this host has."""


@dataclass(frozen=True)
class BuildOptions:
    """Every user choice of a build; the defaults are what `trtbuild build` uses."""

    precision: str = "fp16"
    int8_mode: str = "auto"  # qdq: Q/DQ ONNX; table: implicit INT8 reading the calibration table (10.x);
    #                          calibrate: live IInt8EntropyCalibrator2 (10.x); auto: qdq
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    min_hw: tuple[int, int] | None = None
    opt_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] | None = None
    workspace_mb: int | None = None  # None: DEFAULT_WORKSPACE_MB, or the integrated-GPU default
    opt_level: int = 3
    hardware_compat: str = "none"
    version_compatible: bool = False
    dla_core: int | None = None
    gpu_fallback: bool = True
    profiling_verbosity: str = "detailed"
    strongly_typed: bool | None = None  # None: decided by the TensorRT version (compat)
    nms: str | None = None  # None, "onnx" (NonMaxSuppression) or "efficient" (EfficientNMS_TRT)
    calib_images: str = "calib_data"  # --int8-mode calibrate: the images TensorRT calibrates on

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision}: expected one of {', '.join(PRECISIONS)}")
        if self.int8_mode not in INT8_MODES:
            raise InputError(f"--int8-mode {self.int8_mode}: expected one of {', '.join(INT8_MODES)}")
        if self.hardware_compat not in HW_COMPAT:
            raise InputError(f"--hardware-compat {self.hardware_compat}: expected one of {', '.join(HW_COMPAT)}")
        if not 0 <= self.opt_level <= 5:
            raise InputError(f"--opt-level {self.opt_level}: TensorRT's builder optimization level is 0..5")
        if self.nms not in (None, "onnx", "efficient"):
            raise InputError(f"--nms {self.nms}: expected onnx or efficient")
        batches = [b for b in (self.min_batch, self.opt_batch, self.max_batch) if b is not None]
        if any(b < 1 for b in batches):
            raise InputError("--min/--opt/--max-batch must be ≥ 1")
        if batches != sorted(batches):
            raise InputError(f"batch profile must satisfy min ≤ opt ≤ max, got {self.min_batch}/{self.opt_batch}/"
                             f"{self.max_batch}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """The host a build is for: TensorRT version and the GPU (as cuda_probe reports it)."""

    trt_version: str
    gpu_name: str
    compute_capability: str
    integrated: bool = False


@dataclass
class BuildPlan:
    """The decisions: which ONNX, which typing, which flags, which profiles, where the outputs go."""

    source: Path
    engine: Path
    options: BuildOptions
    typing: str  # "strong" or "weak"
    flags: list[str]  # BuilderFlag names to set (weak typing: FP16/INT8; GPU_FALLBACK, VERSION_COMPATIBLE)
    int8_source: str | None  # how INT8 scales reach TensorRT: "qdq", "table", "calibrate" or None
    calib_table: Path | None
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    workspace_bytes: int
    timing_cache: Path
    notes: list[str] = field(default_factory=list)
    build_input: Path | None = None  # the ONNX `trtbuild build` was given (source may be a sibling artifact)

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.engine)


def base_name(onnx_path: Path) -> str:
    """``engines/m.fp16.onnx`` → ``m``: the model name shared by all of one model's artifacts."""
    stem = onnx_path.name[: -len(".onnx")] if onnx_path.name.endswith(".onnx") else onnx_path.stem
    changed = True
    while changed:
        changed = False
        for suffix in _STAGE_SUFFIXES:
            if stem.endswith(suffix):
                stem, changed = stem[: -len(suffix)], True
    return stem


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def layers_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".layers.json")


def engine_path(out_dir: Path, name: str, options: BuildOptions) -> Path:
    suffix = f".{options.precision}" + ("-nms" if options.nms else "") + (f".dla{options.dla_core}"
                                                                          if options.dla_core is not None else "")
    return out_dir / f"{name}{suffix}.engine"


def choose_source(onnx: Path, options: BuildOptions, trt: TensorRTInfo) -> tuple[Path, str, list[str], str | None]:
    """Given the plain (simplified) ONNX, pick the artifact and typing for the precision and TensorRT version.

    Returns (source ONNX, "strong"/"weak", BuilderFlag names, INT8 source). A source that was given
    explicitly (``m.fp16.onnx``, ``m.int8.onnx``) is used as is; the plain one is swapped for the stage's
    artifact beside it (written by ``trtbuild engine`` / ``make engine``) where the typing needs it.
    """
    major = trt.major or 0
    strong_ok = trt.strong_typing_solid
    weak_ok = trt.weak_typing
    if options.strongly_typed is False and not weak_ok:
        raise InputError(f"TensorRT {trt.version} builds strongly typed networks only; use --typing auto (or strong), "
                         "not --typing weak")
    prefer_strong = options.strongly_typed if options.strongly_typed is not None else (strong_ok or not weak_ok)
    base = onnx.with_name(base_name(onnx))
    given = onnx.name[len(base.name):]  # ".sim.onnx", ".fp16.onnx", ...
    p = options.precision
    if p == "fp32":
        return onnx, ("strong" if prefer_strong else "weak"), [], None
    if p == "fp16":
        typed = onnx if given == ".fp16.onnx" else base.with_name(base.name + ".fp16.onnx")
        if prefer_strong:
            _need(typed, "fp16", f"TensorRT {trt.version} builds FP16 only from the typed ONNX")
            return typed, "strong", [], None
        src = onnx if given != ".fp16.onnx" else _plain(base)
        return src, "weak", ["FP16"], None
    # int8
    mode = options.int8_mode
    if mode == "auto":
        mode = "qdq"
    if mode in ("table", "calibrate"):
        if major >= 11 or not weak_ok:
            raise InputError(f"--int8-mode {mode} needs TensorRT 10.x (weak typing); TensorRT {trt.version} reads "
                             "INT8 only from Q/DQ ONNX: use --int8-mode qdq")
        src = onnx if given in (".sim.onnx", ".onnx") else _plain(base)
        return src, "weak", ["FP16", "INT8"], mode
    if given in (".int8.onnx", ".int8fb.onnx"):
        qdq = onnx
    else:
        fb = base.with_name(base.name + ".int8fb.onnx")
        qdq = fb if fb.is_file() else base.with_name(base.name + ".int8.onnx")
    _need(qdq, "int8", "INT8 engines are built from the Q/DQ ONNX")
    if prefer_strong:
        return qdq, "strong", [], "qdq"
    return qdq, "weak", ["FP16", "INT8"], "qdq"  # weak typing: the flags let TensorRT pick FP16/INT8 kernels


def _plain(base: Path) -> Path:
    sim = base.with_name(base.name + ".sim.onnx")
    return sim if sim.is_file() else base.with_name(base.name + ".onnx")


def _need(path: Path, precision: str, why: str) -> None:
    if not path.is_file():
        raise InputError(f"{path}: missing; {why}. Make it with `trtbuild engine --precision {precision}` "
                         f"(or `make engine PRECISION={precision}`)")


def _hw(spec: IOSpec) -> tuple:
    return tuple(spec.shape[2:4])


def make_profiles(inputs: Sequence[IOSpec], options: BuildOptions) -> dict:
    """min/opt/max shape per input; a static ONNX gets its one shape, and batch/H/W options are refused."""
    profiles = {}
    for spec in inputs:
        if len(spec.shape) != 4:
            raise InputError(f"input {spec.name!r} has shape {spec.shape}; trtbuild builds [B,3,H,W] image models")
        b, c, h, w = spec.shape
        dyn_b = not (isinstance(b, int) and b > 0)
        dyn_hw = not all(isinstance(d, int) and d > 0 for d in (h, w))
        wants_b = any(v is not None for v in (options.min_batch, options.opt_batch, options.max_batch))
        wants_hw = any(v is not None for v in (options.min_hw, options.opt_hw, options.max_hw))
        if wants_b and not dyn_b:
            raise InputError(f"--min/--opt/--max-batch given but the ONNX batch is fixed at {b}; re-export with "
                             "`trtbuild export --dynamic`")
        if wants_hw and not dyn_hw:
            raise InputError(f"--min/--opt/--max-hw given but the ONNX input is fixed at {h}×{w}; re-export with "
                             "`trtbuild export --dynamic-hw`")
        if dyn_b:
            mx = options.max_batch or options.opt_batch or 8
            mn = options.min_batch or 1
            op = options.opt_batch or mx
            if not mn <= op <= mx:
                raise InputError(f"batch profile must satisfy min ≤ opt ≤ max, got {mn}/{op}/{mx}")
            bs = (mn, op, mx)
        else:
            bs = (b, b, b)
        if dyn_hw:
            if not options.opt_hw:
                raise InputError(f"input {spec.name!r} has dynamic height/width: pass --opt-hw H,W (and --min-hw, "
                                 "--max-hw)")
            hws = (options.min_hw or options.opt_hw, options.opt_hw, options.max_hw or options.opt_hw)
            for hw in hws:
                if hw[0] % 32 or hw[1] % 32:
                    raise InputError(f"profile size {hw[0]}×{hw[1]} is not a multiple of 32 (the model's stride)")
        else:
            hws = (_hw(spec),) * 3
        profiles[spec.name] = tuple((bb, c, *hw) for bb, hw in zip(bs, hws))
    return profiles


def plan_build(onnx: Path, inputs: Sequence[IOSpec], options: BuildOptions, trt: TensorRTInfo, target: Target,
               out_dir: Path, name: str | None = None, calib_table: Path | None = None) -> BuildPlan:
    """All build decisions for ``onnx`` on ``target``; raises InputError for what cannot be built there."""
    source, typing, flags, int8_source = choose_source(onnx, options, trt)
    notes = []
    if options.dla_core is not None:
        if not target.integrated:
            raise InputError(f"--dla-core {options.dla_core}: {target.gpu_name} has no DLA (Jetson AGX/NX only)")
        if options.gpu_fallback:
            flags.append("GPU_FALLBACK")
        if typing == "weak" and "FP16" not in flags:
            flags.append("FP16")  # DLA runs FP16/INT8 only
            notes.append("DLA runs FP16 or INT8 only: FP16 flag added")
    if options.version_compatible:
        flags.append("VERSION_COMPATIBLE")
    if int8_source in ("table", "calibrate") and calib_table is None:
        calib_table = onnx.with_name(base_name(onnx) + ".calib.cache")
        if int8_source == "table":
            _need(calib_table, "int8", "--int8-mode table reads the calibration table")
    workspace_mb = options.workspace_mb or (DEFAULT_WORKSPACE_MB_INTEGRATED if target.integrated
                                            else DEFAULT_WORKSPACE_MB)
    engine = engine_path(out_dir, name or base_name(onnx), options)
    return BuildPlan(source=source, engine=engine, options=options, typing=typing, flags=flags,
                     int8_source=int8_source, calib_table=calib_table if int8_source in ("table", "calibrate")
                     else None, profiles=make_profiles(inputs, options), workspace_bytes=workspace_mb << 20,
                     timing_cache=out_dir / TIMING_CACHE_NAME, notes=notes, build_input=onnx)


def cache_key(plan: BuildPlan, target: Target, source_sha: str, table_sha: str | None = None) -> str:
    """Same key ⇒ same engine: the ONNX content, precision, typing, profiles, flags, TensorRT version, GPU."""
    opts = plan.options.to_dict()
    opts.pop("profiling_verbosity")  # changes what the inspector shows, not the engine's kernels
    if plan.int8_source != "calibrate":
        opts.pop("calib_images")  # read only by live calibration
    return sha256_json({
        "onnx": source_sha, "options": opts, "typing": plan.typing, "flags": sorted(plan.flags),
        "int8": plan.int8_source, "table": table_sha, "profiles": plan.profiles, "workspace": plan.workspace_bytes,
        "trt": target.trt_version, "gpu": target.gpu_name, "cc": target.compute_capability,
    })


def cached_engine(plan: BuildPlan, key: str) -> dict | None:
    """The sidecar of an up-to-date engine for ``key`` (engine file present, same size), or None."""
    meta = read_json(plan.sidecar)
    if not meta or meta.get("cache_key") != key or not plan.engine.is_file():
        return None
    if meta.get("engine_bytes") != plan.engine.stat().st_size:
        return None
    return meta


def sidecar(plan: BuildPlan, target: Target, key: str, *, source_sha: str, metadata: Mapping[str, str],
            io: Sequence[dict], engine_bytes: int, seconds: float, table_sha: str | None) -> dict:
    """The ``<engine>.json`` written beside the engine (read by the runtime, `inspect`, and people)."""
    from ..graph import parse_literal

    names = parse_literal(metadata.get("names"), {})
    return {
        "engine": plan.engine.name,
        "engine_bytes": engine_bytes,
        "cache_key": key,
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
        "tensorrt_version": target.trt_version,
        "gpu": {"name": target.gpu_name, "compute_capability": target.compute_capability,
                "integrated": target.integrated},
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


def _relative(path: Path, start: Path) -> str:
    import os

    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)


def _cc(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(v).split(".")[:2])


def engine_mismatch(meta: Mapping, trt_version: str | None, gpu_name: str | None, cc: str | None) -> str | None:
    """Why an engine with sidecar ``meta`` cannot run on this host, or None.

    TensorRT engines are tied to the TensorRT version that built them (a version-compatible engine runs on
    the same major, same or newer version) and to the GPU model (hardware compatibility 'same-cc' relaxes
    that to the compute capability, 'ampere+' to any Ampere or newer GPU).
    """
    problems = []
    built = meta.get("tensorrt_version")
    if built and trt_version:
        bv, hv = version_tuple(built), version_tuple(trt_version)
        if meta.get("version_compatible"):
            if bv[:1] != hv[:1] or hv < bv:
                problems.append(f"TensorRT {built} (version-compatible: runs on {bv[0]}.x ≥ {built}) "
                                f"vs {trt_version} here")
        elif bv != hv:
            problems.append(f"TensorRT {built} vs {trt_version} here")
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
    opts, defaults = dict(meta.get("options") or {}), BuildOptions().to_dict()
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
    if engine.name != engine_path(engine.parent, base_name(Path(src)), BuildOptions(**{
            k: v for k, v in opts.items() if k in defaults})).name:
        parts.append(f"--name {engine.name.split('.')[0]}")
    return " ".join(parts + [f"--out-dir {engine.parent}", "--force"])


def parser_error_message(source: Path, errors: Sequence[Mapping]) -> str:
    """One message for TensorRT ONNX parser errors, each with its node name, operator and description."""
    lines = []
    for e in errors[:10]:
        where = e.get("node_name") or (f"node #{e['node']}" if e.get("node", -1) >= 0 else "")
        op = f" ({e['op']})" if e.get("op") else ""
        lines.append(f"{where}{op}: {e.get('desc', '').strip()}" if where else e.get("desc", "").strip())
    more = f" (+{len(errors) - 10} more)" if len(errors) > 10 else ""
    return (f"{source}: TensorRT's ONNX parser failed on {len(errors)} node(s){more}: " + " | ".join(lines) +
            "; re-export with a supported opset (`trtbuild export --opset 17`) or check the model")


def io_entry(spec: IOSpec, mode: str) -> dict:
    return {"name": spec.name, "mode": mode, "shape": list(spec.shape), "dtype": spec.dtype}


def file_sha(path: Path | None) -> str | None:
    return sha256_file(path) if path is not None and path.is_file() else None
