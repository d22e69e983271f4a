"""``trtbuild build``: a ``BuildPlan`` (buildspec.py) → TensorRT calls → engine + sidecar + layer JSON.

The only module that drives TensorRT's builder. Every name it uses is declared in ``compat.API_USES`` and
checked against the real 10.3 / 10.13 / 11.4 bindings by tests/test_trt_api.py; version differences are
decided in compat.py (``weak_typing``, ``hardware_compat_level``, ``network_flags``). Engine files are plain
serialized engines; what a loader needs to know lives in the sidecar.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..artifacts import sha256_file, write_bytes_atomic, write_json_atomic
from ..errors import DependencyMissingError, TrtbuildError
from ..graph import get_metadata, io_specs, load_onnx
from .buildspec import BuildOptions, BuildPlan, Target, cache_key, cached_engine, file_sha, io_entry, layers_path
from .buildspec import parser_error_message, plan_build, sidecar
from .compat import INSTALL_HINT, TensorRTInfo, hardware_compat_level, tensorrt_info

if TYPE_CHECKING:  # the string annotations below name TensorRT types (the API check follows them)
    import tensorrt as trt


class BuildError(TrtbuildError):
    """TensorRT could not parse or build the network."""


def host_target() -> Target:
    """This host's TensorRT version and first GPU; DependencyMissingError when either is missing."""
    from ..cuda_probe import probe_cuda

    info = tensorrt_info()
    if not info.installed:
        raise DependencyMissingError(f"TensorRT is {info.error}: {INSTALL_HINT}")
    cuda = probe_cuda()
    if not cuda.gpus:
        raise DependencyMissingError(f"TensorRT {info.version} is installed but no GPU is usable here: {cuda.error}; "
                                     "build engines on the machine (or the same GPU model) that will run them")
    gpu = cuda.gpus[0]
    return Target(info.version, gpu.name, gpu.compute_capability, gpu.integrated)


def _logger():
    """A TensorRT logger that keeps errors (for the one-line failure message) and prints warnings once."""
    import sys

    import tensorrt as trt
    from tqdm import tqdm

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.seen: set[str] = set()

        def log(self, severity, msg):
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.WARNING and msg not in self.seen:
                self.seen.add(msg)
                tqdm.write(f"TensorRT warning: {msg}", file=sys.stderr)  # between progress bars, not through them

    return Logger()


def _progress_monitor():
    """tqdm bars fed by TensorRT's IProgressMonitor (one per build phase, nested by depth)."""
    import tensorrt as trt

    from tqdm import tqdm

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, tqdm] = {}
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            depth = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.depth[phase_name] = depth
            if depth < 2:
                self.bars[phase_name] = tqdm(total=num_steps, desc=("  " * depth) + phase_name, leave=False,
                                             position=depth, unit="step")

        def step_complete(self, phase_name, step):
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True  # never cancel

        def phase_finish(self, phase_name):
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return Monitor()


def _parse(network: "trt.INetworkDefinition", logger, source: Path) -> None:
    import tensorrt as trt

    parser: trt.OnnxParser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(source)):
        return
    errors = []
    for i in range(parser.num_errors):
        e: trt.ParserError = parser.get_error(i)
        errors.append({"desc": e.desc(), "node": e.node(), "node_name": e.node_name(), "op": e.node_operator(),
                       "code": str(e.code())})
    raise BuildError(parser_error_message(source, errors or [{"desc": "; ".join(logger.errors) or "unknown"}]))


def _set_flags(config: "trt.IBuilderConfig", flags: list[str]) -> None:
    """Each flag spelled out, so the API check sees that FP16/INT8 (10.x only) sit on the weak-typing path."""
    import tensorrt as trt

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
            raise ValueError(f"unknown builder flag {flag}")


def _configure(builder: "trt.Builder", config: "trt.IBuilderConfig", plan: BuildPlan, target: Target,
               progress: bool):
    import tensorrt as trt

    opts = plan.options
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = opts.opt_level
    config.profiling_verbosity = (trt.ProfilingVerbosity.DETAILED if opts.profiling_verbosity == "detailed"
                                  else trt.ProfilingVerbosity.LAYER_NAMES_ONLY)
    _set_flags(config, plan.flags)
    level = hardware_compat_level(target.trt_version, opts.hardware_compat)
    if level == "AMPERE_PLUS":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif level == "SAME_COMPUTE_CAPABILITY":  # 10.13+ (compat.hardware_compat_level refuses older)
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    if opts.dla_core is not None:
        if builder.num_DLA_cores <= opts.dla_core:
            raise BuildError(f"--dla-core {opts.dla_core}: this device has {builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.dla_core
    profile: trt.IOptimizationProfile = builder.create_optimization_profile()
    for name, (mn, op, mx) in plan.profiles.items():
        profile.set_shape(name, mn, op, mx)
    config.add_optimization_profile(profile)
    if progress:
        config.progress_monitor = _progress_monitor()
    cache_bytes = plan.timing_cache.read_bytes() if plan.timing_cache.is_file() else b""
    cache: trt.ITimingCache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, True)  # ignore_mismatch: a cache from another GPU is simply not used


def _int8_calibrator(plan: BuildPlan, config: "trt.IBuilderConfig", target: Target):
    """TensorRT 10.x implicit INT8: a calibrator that reads our table, or calibrates live (pycuda)."""
    from .calibrator import make_calibrator

    calibrator = make_calibrator(plan, target.trt_version, Path(plan.options.calib_images))
    config.int8_calibrator = calibrator
    return calibrator  # keep a reference for the build's duration


def _io(engine: "trt.ICudaEngine") -> list[dict]:
    import tensorrt as trt

    from ..runtime.base import IOSpec

    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        dtype = str(trt.nptype(engine.get_tensor_dtype(name)).__name__)
        spec = IOSpec(name, tuple(int(d) for d in engine.get_tensor_shape(name)), dtype)
        out.append(io_entry(spec, mode))
    return out


def build(onnx: str | Path, options: BuildOptions = BuildOptions(), out_dir: str | Path = "engines",
          name: str | None = None, force: bool = False, progress: bool = True) -> dict:
    """Build (or reuse) the engine for ``onnx``; return its sidecar dict with ``skipped`` set."""
    onnx = Path(onnx)
    target = host_target()  # first: DependencyMissingError (with the install command) before any import
    import tensorrt as trt

    info = TensorRTInfo(True, version=target.trt_version)  # host_target() already asked tensorrt_info()
    model = load_onnx(onnx, check=False)
    inputs, _ = io_specs(model)
    plan = plan_build(onnx, inputs, options, info, target, Path(out_dir), name)
    if options.nms:
        from ..nms_graph import nms_stage

        plan.source = nms_stage(plan.source, variant=options.nms, force=force).output
    if plan.source != onnx:
        model = load_onnx(plan.source, check=False)
    source_sha = sha256_file(plan.source)
    table_sha = file_sha(plan.calib_table)
    key = cache_key(plan, target, source_sha, table_sha)
    if not force and (meta := cached_engine(plan, key)):
        return {**meta, "skipped": True, "path": str(plan.engine)}

    start = time.perf_counter()
    logger = _logger()
    trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT (--nms efficient) and friends
    builder: trt.Builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.typing == "strong" else 0
    network: trt.INetworkDefinition = builder.create_network(flags)
    _parse(network, logger, plan.source)
    config: trt.IBuilderConfig = builder.create_builder_config()
    _configure(builder, config, plan, target, progress)
    keep = _int8_calibrator(plan, config, target) if plan.int8_source in ("table", "calibrate") else None
    serialized: trt.IHostMemory = builder.build_serialized_network(network, config)
    del keep
    if serialized is None:
        detail = "; ".join(logger.errors[-3:]) or "no error logged"
        raise BuildError(f"{plan.source}: TensorRT could not build the {options.precision} engine ({detail}); "
                         "try a larger --workspace-mb or --opt-level 3")
    data = memoryview(serialized)
    write_bytes_atomic(plan.engine, data)
    cache: trt.ITimingCache = config.get_timing_cache()
    write_bytes_atomic(plan.timing_cache, memoryview(cache.serialize()))

    runtime: trt.Runtime = trt.Runtime(logger)
    engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(data)
    inspector: trt.EngineInspector = engine.create_engine_inspector()
    layers = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    write_bytes_atomic(layers_path(plan.engine), layers.encode())
    meta = sidecar(plan, target, key, source_sha=source_sha, metadata=get_metadata(model), io=_io(engine),
                   engine_bytes=len(data), seconds=time.perf_counter() - start, table_sha=table_sha)
    write_json_atomic(plan.sidecar, meta)  # last: an engine without its sidecar is never taken for up to date
    return {**meta, "skipped": False, "path": str(plan.engine)}
