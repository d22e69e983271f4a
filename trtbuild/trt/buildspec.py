"""What an engine build is, without TensorRT: source and typing per version, profiles, workspace, refusals.

Everything here is pure Python so it is tested on every host; ``builder.py`` turns a ``BuildPlan`` into TensorRT
calls, ``sidecar.py`` keys it and describes the result. The engine file itself stays plain so trtexec, C++ and
DeepStream load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..artifacts import made_from, sha256_file
from ..config import BuildConfig
from ..errors import InputError
from ..iospec import IOSpec
from ..layout import Layout, layers_path, model_name, sidecar_path
from .compat import TensorRTInfo, nms_plugin_notice, refuse_unsupported
from .host import Target

DEFAULT_WORKSPACE_MB = 4096
DEFAULT_WORKSPACE_MB_INTEGRATED = 1024  # Jetson: the GPU shares the board's RAM with everything else


@dataclass
class BuildPlan:
    """The decisions: which ONNX, which typing, which flags, which profiles, where the outputs go."""

    source: Path
    engine: Path
    options: BuildConfig
    typing: str  # "strong" or "weak"
    flags: list[str]  # BuilderFlag names to set (weak typing: FP16/INT8; GPU_FALLBACK, VERSION_COMPATIBLE)
    int8_source: str | None  # how INT8 scales reach TensorRT: "qdq", "table", "calibrate" or None
    calib_table: Path | None
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    workspace_bytes: int
    timing_cache: Path | None  # None where the flavor has no timing cache (TensorRT-RTX)
    notes: list[str] = field(default_factory=list)
    build_input: Path | None = None  # the ONNX `trtbuild build` was given (source may be a sibling artifact)
    flavor: str = "tensorrt"
    targets: tuple[str, ...] = ()  # TensorRT-RTX: the compute capabilities the engine is built for

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.engine)

    @property
    def layers(self) -> Path:
        return layers_path(self.engine)


def choose_source(onnx: Path, options: BuildConfig, trt: TensorRTInfo) -> tuple[Path, str, list[str], str | None]:
    """Given the plain (simplified) ONNX, pick the artifact and typing for the precision and TensorRT version.

    Returns (source ONNX, "strong"/"weak", BuilderFlag names, INT8 source). A source that was given
    explicitly (``m.fp16.onnx``, ``m.int8.onnx``) is used as is; the plain one is swapped for the stage's
    artifact beside it (written by ``trtbuild engine`` / ``make engine``) where the typing needs it.
    """
    major = trt.major or 0
    strong_ok = trt.strong_typing_solid
    weak_ok = trt.weak_typing
    if options.strongly_typed is False and not weak_ok:
        raise InputError(f"{trt.label} builds strongly typed networks only: weak typing is not available; build "
                         "strongly typed (the default)", param="strongly_typed")
    prefer_strong = options.strongly_typed if options.strongly_typed is not None else (strong_ok or not weak_ok)
    layout = Layout.of(onnx)
    given = onnx.name[len(layout.name):]  # ".sim.onnx", ".fp16.onnx", ...
    p = options.precision
    if p == "fp32":
        return onnx, ("strong" if prefer_strong else "weak"), [], None
    if p == "fp16":
        typed = onnx if given == ".fp16.onnx" else layout.fp16
        if prefer_strong:
            _need(typed, "fp16", f"{trt.label} builds FP16 only from the typed ONNX")
            _fresh(typed, onnx, "fp16")
            return typed, "strong", [], None
        src = onnx if given != ".fp16.onnx" else _plain(layout)
        return src, "weak", ["FP16"], None
    # int8
    mode = options.int8_mode
    if mode == "auto":
        mode = "qdq"
    if mode in ("table", "calibrate"):
        if major >= 11 or not weak_ok:
            raise InputError(f"int8_mode={mode} needs TensorRT 10.x (weak typing); TensorRT {trt.version} reads "
                             "INT8 only from Q/DQ ONNX: use int8_mode=qdq", param="int8_mode")
        src = onnx if given in (".sim.onnx", ".onnx") else _plain(layout)
        return src, "weak", ["FP16", "INT8"], mode
    if given in (".int8.onnx", ".int8fb.onnx"):
        qdq = onnx
    else:
        qdq = layout.int8fb if layout.int8fb.is_file() else layout.int8
    _need(qdq, "int8", "INT8 engines are built from the Q/DQ ONNX")
    _fresh(qdq, onnx, "int8")
    if prefer_strong:
        return qdq, "strong", [], "qdq"
    return qdq, "weak", ["FP16", "INT8"], "qdq"  # weak typing: the flags let TensorRT pick FP16/INT8 kernels


def _plain(layout: Layout) -> Path:
    return layout.sim if layout.sim.is_file() else layout.onnx


def _fresh(artifact: Path, given: Path, precision: str) -> None:
    """InputError unless ``artifact`` (picked beside ``given``) provably comes from ``given`` as it is now: a
    ``NAME.fp16.onnx`` left from an earlier model of the same name is never built (lineage, ``made_from``)."""
    if artifact == given:
        return
    why = made_from(artifact, given)
    if why is not None:
        raise InputError(f"{artifact}: not made from {given} as it is now ({why}); remake it with the pipeline "
                         f"(`trtbuild engine`, precision={precision}: stages whose input changed rerun), or build that "
                         "file itself")


def _need(path: Path, precision: str, why: str) -> None:
    if not path.is_file():
        raise InputError(f"{path}: missing; {why}. Make it with the pipeline (`trtbuild engine`, "
                         f"precision={precision}; or `make engine PRECISION={precision}`)")


def _hw(spec: IOSpec) -> tuple:
    return tuple(spec.shape[2:4])


def make_profiles(inputs: Sequence[IOSpec], options: BuildConfig) -> dict:
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
            raise InputError(f"min/opt/max_batch given but the ONNX batch is fixed at {b}; re-export with a dynamic "
                             "batch (dynamic=True)", param="max_batch")
        if wants_hw and not dyn_hw:
            raise InputError(f"min/opt/max_hw given but the ONNX input is fixed at {h}×{w}; re-export with a dynamic "
                             "size (dynamic_hw=True)", param="opt_hw")
        if dyn_b:
            mx = options.max_batch or options.opt_batch or 8
            mn = options.min_batch or 1
            op = options.opt_batch or mx
            if not mn <= op <= mx:
                raise InputError(f"batch profile must satisfy min_batch ≤ opt_batch ≤ max_batch, got {mn}/{op}/{mx}")
            bs = (mn, op, mx)
        else:
            bs = (b, b, b)
        if dyn_hw:
            if not options.opt_hw:
                raise InputError(f"input {spec.name!r} has dynamic height/width: pass opt_hw=H,W (and min_hw, "
                                 "max_hw)", param="opt_hw")
            hws = (options.min_hw or options.opt_hw, options.opt_hw, options.max_hw or options.opt_hw)
            for hw in hws:
                if hw[0] % 32 or hw[1] % 32:
                    raise InputError(f"profile size {hw[0]}×{hw[1]} is not a multiple of 32 (the model's stride)")
        else:
            hws = (_hw(spec),) * 3
        profiles[spec.name] = tuple((bb, c, *hw) for bb, hw in zip(bs, hws))
    return profiles


def plan_build(onnx: Path, inputs: Sequence[IOSpec], options: BuildConfig, trt: TensorRTInfo, target: Target,
               calib_table: Path | None = None) -> BuildPlan:
    """All build decisions for ``onnx`` on ``target``; raises InputError for what cannot be built there."""
    refuse_unsupported(trt, options)
    source, typing, flags, int8_source = choose_source(onnx, options, trt)
    notes = [notice] if (notice := nms_plugin_notice(trt, options.nms)) else []
    if options.dla_core is not None:
        if not target.integrated:
            raise InputError(f"dla_core={options.dla_core}: {target.gpu_name} has no DLA (Jetson AGX/NX only)",
                             param="dla_core")
        if options.gpu_fallback:
            flags.append("GPU_FALLBACK")
        if typing == "weak" and "FP16" not in flags:
            flags.append("FP16")  # DLA runs FP16/INT8 only
            notes.append("DLA runs FP16 or INT8 only: FP16 flag added")
    if options.version_compatible:
        flags.append("VERSION_COMPATIBLE")
    if int8_source in ("table", "calibrate") and calib_table is None:
        calib_table = Layout.of(onnx).calib_table
        if int8_source == "table":
            _need(calib_table, "int8", "int8_mode=table (--int8-mode table) reads the calibration table")
            _fresh(calib_table, source, "int8")
    workspace_mb = options.workspace_mb or (DEFAULT_WORKSPACE_MB_INTEGRATED if target.integrated
                                            else DEFAULT_WORKSPACE_MB)
    out = Layout(Path(options.out_dir), options.name or model_name(onnx))
    engine = out.engine(options.precision, options.nms, options.dla_core, trt.flavor)
    return BuildPlan(source=source, engine=engine, options=options, typing=typing, flags=flags,
                     int8_source=int8_source, calib_table=calib_table if int8_source in ("table", "calibrate")
                     else None, profiles=make_profiles(inputs, options), workspace_bytes=workspace_mb << 20,
                     timing_cache=out.timing_cache if trt.timing_cache else None, notes=notes, build_input=onnx,
                     flavor=trt.flavor, targets=target.targets)


def parser_error_message(source: Path, errors: Sequence[Mapping], label: str = "TensorRT") -> str:
    """One message for TensorRT ONNX parser errors, each with its node name, operator and description."""
    lines = []
    for e in errors[:10]:
        where = e.get("node_name") or (f"node #{e['node']}" if e.get("node", -1) >= 0 else "")
        op = f" ({e['op']})" if e.get("op") else ""
        lines.append(f"{where}{op}: {e.get('desc', '').strip()}" if where else e.get("desc", "").strip())
    more = f" (+{len(errors) - 10} more)" if len(errors) > 10 else ""
    return (f"{source}: {label}'s ONNX parser failed on {len(errors)} node(s){more}: " + " | ".join(lines) +
            "; re-export with a supported opset (`trtbuild export --opset 17`) or check the model")


def file_sha(path: Path | None) -> str | None:
    return sha256_file(path) if path is not None and path.is_file() else None
