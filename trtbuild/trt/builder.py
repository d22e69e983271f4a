"""``trtbuild build``: a ``BuildPlan`` (buildspec.py) → TensorRT calls → engine + sidecar + layer JSON.

The only module that drives TensorRT's builder, for both flavors (standard TensorRT, TensorRT-RTX). Every name it
uses is declared in ``tests/api_uses.py`` and checked against the real 10.3 / 10.13 / 11.4 bindings and
TensorRT-RTX 1.7.1 by tests/trt/test_trt_api.py; flavor and version differences are decided in compat.py
(``weak_typing``, ``strong_typing_solid``, ``hardware_compat_level``, ``refuse_unsupported``). Engine files are
plain serialized engines; what a loader needs to know lives in the sidecar. The build is a stage like the others
(``artifacts.run_stage``): keyed by the source ONNX's hash and every option, skipped when the engine and its
layer JSON still have the hashes the sidecar recorded.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .. import owned
from ..artifacts import Outputs, StageResult, run_stage, sha256_file, write_bytes_atomic
from ..config import BuildConfig, NmsConfig
from ..errors import BuildError, DeprecatedPluginWarning
from ..iospec import IOSpec
from ..onnx.graph import get_metadata, io_specs, load_onnx
from ..stages.nms import nms_stage
from .buildspec import BuildPlan, file_sha, plan_build
from .calibrator import make_calibrator
from .compat import hardware_compat_level, nms_plugin_notice, trt_module
from .host import Host, Target, probe_host
from .logger import progress_monitor
from .network import network_io, parse_network
from .sidecar import cache_key, io_entry, sidecar

if TYPE_CHECKING:  # the string annotations below name TensorRT types (the API check follows them)
    import tensorrt as trt


def _set_flags(config: "trt.IBuilderConfig", flags: list[str]) -> None:
    """Each flag spelled out, so the API check sees that FP16/INT8 (10.x only) sit on the weak-typing path."""
    import tensorrt as trt  # weak typing and these flags: standard TensorRT only (compat.refuse_unsupported)

    for flag in flags:
        if flag == "FP16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif flag == "INT8":
            config.set_flag(trt.BuilderFlag.INT8)
        elif flag == "GPU_FALLBACK":
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        elif flag == "VERSION_COMPATIBLE":
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        else:
            raise BuildError(f"unknown builder flag {flag} (a bug in buildspec.plan_build)")


def _set_targets(config: "trt.IBuilderConfig", targets: tuple[str, ...]) -> None:
    """TensorRT-RTX: the compute capabilities to build for (each member spelled out for the API check)."""
    import tensorrt_rtx as trt

    members = {"7.5": trt.ComputeCapability.SM75, "8.0": trt.ComputeCapability.SM80,
               "8.6": trt.ComputeCapability.SM86, "8.9": trt.ComputeCapability.SM89,
               "12.0": trt.ComputeCapability.SM120, "12.1": trt.ComputeCapability.SM121}
    config.num_compute_capabilities = len(targets)
    for i, cc in enumerate(targets):
        config.set_compute_capability(members[cc], i)


def _hardware_compat(config: "trt.IBuilderConfig", plan: BuildPlan, target: Target) -> None:
    import tensorrt as trt  # hardware compatibility levels: standard TensorRT only (RTX refuses them)

    level = hardware_compat_level(target.trt_version, plan.options.hardware_compat)
    if level == "AMPERE_PLUS":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif level == "SAME_COMPUTE_CAPABILITY":  # 10.13+ (compat.hardware_compat_level refuses older)
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY


def _configure(builder: "trt.Builder", config: "trt.IBuilderConfig", plan: BuildPlan, target: Target,
               progress: bool):
    trt = trt_module(plan.flavor)
    opts = plan.options
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = opts.opt_level
    config.profiling_verbosity = (trt.ProfilingVerbosity.DETAILED if opts.profiling_verbosity == "detailed"
                                  else trt.ProfilingVerbosity.LAYER_NAMES_ONLY)
    if plan.flags:
        _set_flags(config, plan.flags)
    if plan.targets:
        _set_targets(config, plan.targets)
    if opts.hardware_compat != "none":
        _hardware_compat(config, plan, target)
    if opts.dla_core is not None:
        if builder.num_DLA_cores <= opts.dla_core:
            raise BuildError(f"dla_core={opts.dla_core}: this device has {builder.num_DLA_cores} DLA core(s)",
                             param="dla_core")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.dla_core
    profile: trt.IOptimizationProfile = builder.create_optimization_profile()
    for name, (mn, op, mx) in plan.profiles.items():
        profile.set_shape(name, mn, op, mx)
    config.add_optimization_profile(profile)
    if progress:
        config.progress_monitor = progress_monitor(plan.flavor)
    if plan.timing_cache is not None:  # TensorRT-RTX has none (a no-op that would make it query for a GPU)
        cache_bytes = plan.timing_cache.read_bytes() if plan.timing_cache.is_file() else b""
        cache: trt.ITimingCache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, True)  # ignore_mismatch: a cache from another GPU is simply not used


def _int8_calibrator(plan: BuildPlan, config: "trt.IBuilderConfig", target: Target):
    """TensorRT 10.x implicit INT8: a calibrator that reads our table, or calibrates live (pycuda)."""
    calibrator = make_calibrator(plan, target.trt_version, Path(plan.options.calib_images))
    config.int8_calibrator = calibrator
    return calibrator  # keep a reference for the build's duration


def _io(engine: "trt.ICudaEngine", flavor: str) -> list[dict]:
    trt = trt_module(flavor)
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        dtype = str(trt.nptype(engine.get_tensor_dtype(name)).__name__)
        spec = IOSpec(name, tuple(int(d) for d in engine.get_tensor_shape(name)), dtype)
        out.append(io_entry(spec, mode))
    return out


def _inspect(data: memoryview, plan: BuildPlan, logger) -> tuple[str, list[dict]]:
    """The engine inspector's JSON and the engine's I/O, from the serialized engine (needs a GPU to deserialize)."""
    trt = trt_module(plan.flavor)
    runtime: trt.Runtime = trt.Runtime(logger)
    engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        detail = "; ".join(logger.errors[-2:]) or "unknown reason"
        raise BuildError(f"{plan.engine}: the engine just built cannot be deserialized here ({detail})")
    inspector: trt.EngineInspector = engine.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON), _io(engine, plan.flavor)


def build(onnx: str | os.PathLike, config: BuildConfig = BuildConfig(), *, host: Host | None = None,
          progress: bool = True) -> StageResult:
    """Build (or reuse) the engine for ``onnx`` on ``host`` (default: probe this one); the engine is the result's
    output and its sidecar the report.

    Standard TensorRT builds for this host's GPU; TensorRT-RTX (``config.flavor``, or ``auto`` where standard
    TensorRT is missing) builds ahead of time for ``config.target_cc`` and needs no GPU: its engine is then not
    deserialized here, so there is no ``.layers.json`` and the sidecar's I/O comes from the parsed network.
    ``nms="efficient"`` on TensorRT ≥ 10.12 warns (``DeprecatedPluginWarning``, and a note in the sidecar): the
    EfficientNMS_TRT plugin is deprecated; on 11.x the warning points to ``nms="onnx"`` (INMSLayer)."""
    onnx = Path(onnx)
    host = host or probe_host()
    target = host.target(config.flavor, config.target_cc)  # first: DependencyMissingError with the install command
    info = host.info(target.flavor)
    model = load_onnx(onnx, check=False)
    inputs, _ = io_specs(model)
    plan = plan_build(onnx, inputs, config, info, target)
    if (notice := nms_plugin_notice(info, config.nms)) is not None:  # also in plan.notes, so in the sidecar
        warnings.warn(notice, DeprecatedPluginWarning, stacklevel=2)
    if config.nms:
        plan.source = nms_stage(plan.source, NmsConfig(variant=config.nms, force=config.force,
                                                          overwrite=config.overwrite)).output
    if plan.source != onnx:
        model = load_onnx(plan.source, check=False)
    source_sha = sha256_file(plan.source)
    table_sha = file_sha(plan.calib_table)
    inspectable = host.gpu is not None  # deserializing an engine (for the inspector) needs a GPU

    def make(outputs: Outputs) -> dict:
        start = time.perf_counter()
        parsed = parse_network(plan.source, plan.flavor, plan.typing == "strong")
        builder: trt.Builder = parsed.builder
        builder_config: trt.IBuilderConfig = builder.create_builder_config()
        _configure(builder, builder_config, plan, target, progress)
        keep = (_int8_calibrator(plan, builder_config, target) if plan.int8_source in ("table", "calibrate")
                else None)
        serialized: trt.IHostMemory = builder.build_serialized_network(parsed.network, builder_config)
        del keep
        if serialized is None:
            detail = "; ".join(parsed.logger.errors[-3:]) or "no error logged"
            raise BuildError(f"{plan.source}: {info.label} could not build the {config.precision} engine "
                             f"({detail}); try a larger workspace (workspace_mb=8192) or opt_level=3")
        data = memoryview(serialized)
        outputs.path(plan.engine).write_bytes(data)
        if plan.timing_cache is not None:
            if config.overwrite or not plan.timing_cache.exists() or owned.is_ours(plan.timing_cache):
                cache: trt.ITimingCache = builder_config.get_timing_cache()
                write_bytes_atomic(plan.timing_cache, memoryview(cache.serialize()), config.overwrite)
            else:  # another tool's cache (trtexec, an older TensorRT): read, never replaced behind its back
                plan.notes.append(f"{plan.timing_cache} was not written by trtbuild: read but not updated "
                                  "(overwrite=True replaces it)")
        seconds = time.perf_counter() - start
        if inspectable:
            layers, io = _inspect(data, plan, parsed.logger)
            outputs.path(plan.layers).write_bytes(layers.encode())
        else:
            io = network_io(parsed.network, plan.flavor)
            plan.notes.append(f"built ahead of time for compute capabilities {', '.join(plan.targets)} without a "
                              "GPU: no engine inspector JSON (deserializing needs a GPU)")
        return sidecar(plan, target, source_sha=source_sha, metadata=get_metadata(model), io=io,
                       engine_bytes=len(data), seconds=seconds, table_sha=table_sha)

    # the sidecar is the report, written last: an engine without its sidecar is never taken for up to date
    inputs = {"onnx": plan.source, **({"calibration_table": plan.calib_table} if plan.int8_source == "table" else {})}
    return run_stage("build", cache_key(plan, target, source_sha, table_sha), plan.sidecar, plan.engine, make,
                     config.force, inputs=inputs, overwrite=config.overwrite)
