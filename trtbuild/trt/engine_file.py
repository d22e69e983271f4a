"""Open an engine file safely: read its sidecar, refuse a mismatched one before deserializing, deserialize.

The sidecar check (``sidecar.check_engine_host``) needs no TensorRT, so a wrong engine is refused with a
rebuild command even where TensorRT would crash or print a cryptic serialization error. An engine without a
sidecar (built by trtexec, say) is loaded as is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..artifacts import write_bytes_atomic
from ..errors import InputError
from .compat import trt_module
from .host import Host, probe_host
from .logger import make_logger
from .sidecar import check_engine_host, read_sidecar

if TYPE_CHECKING:  # the string annotations below name TensorRT types (the API check follows them)
    import tensorrt as trt


def engine_flavor(engine: Path, meta: dict | None) -> str:
    """The flavor an engine was built with: its sidecar says; without one, ``.rtx.engine`` means TensorRT-RTX."""
    if meta and meta.get("flavor"):
        return meta["flavor"]
    return "rtx" if engine.name.endswith(".rtx.engine") else "tensorrt"


def check_engine(engine: str | os.PathLike, host: Host) -> dict | None:
    """The engine's sidecar after checking it fits ``host`` (EngineMismatchError if not)."""
    engine = Path(engine)
    if not engine.is_file():
        raise InputError(f"{engine}: no such engine file; build it with `trtbuild build MODEL.onnx`")
    meta = read_sidecar(engine)
    check_engine_host(engine, meta, *host.engine_facts(engine_flavor(engine, meta)))
    return meta


def deserialize(engine: Path, host: Host, flavor: str = "tensorrt") -> tuple:
    """``(runtime, engine)`` for ``engine`` (after ``check_engine``); failures become one line. Keep the runtime
    alive as long as the engine."""
    host.require_tensorrt(flavor)
    trt = trt_module(flavor)
    logger = make_logger(flavor)
    if flavor == "tensorrt":
        trt.init_libnvinfer_plugins(logger, "")  # engines with EfficientNMS_TRT (--nms efficient)
    runtime: trt.Runtime = trt.Runtime(logger)
    loaded: trt.ICudaEngine = runtime.deserialize_cuda_engine(engine.read_bytes())
    if loaded is None:
        detail = "; ".join(logger.errors[-2:]) or "unknown reason"
        raise InputError(f"{engine}: {host.info(flavor).label} cannot deserialize it ({detail}); rebuild it "
                         "on this host (force=True)")
    return runtime, loaded


def inspector_json(engine: str | os.PathLike, host: Host | None = None) -> str:
    """The engine inspector's JSON (layers, precisions, tactics) of an engine file on this host."""
    host = host or probe_host()
    engine = Path(engine)
    flavor = engine_flavor(engine, check_engine(engine, host))
    host.require_tensorrt(flavor)
    trt = trt_module(flavor)
    loaded: trt.ICudaEngine = deserialize(engine, host, flavor)[1]
    inspector: trt.EngineInspector = loaded.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


class RuntimeCache:
    """TensorRT-RTX's runtime cache (the kernels its JIT compiled for this GPU), loaded from and saved to a file
    beside the engine so a second run skips the compilation. ``cuda_graphs``: RTX's own whole-graph CUDA capture."""

    def __init__(self, engine: "trt.ICudaEngine", path: Path, cuda_graphs: bool = False):
        trt = trt_module("rtx")
        self.path = path
        self.config: trt.IRuntimeConfig = engine.create_runtime_config()
        self.cache: trt.IRuntimeCache = self.config.create_runtime_cache()
        self.loaded = path.is_file() and bool(self.cache.deserialize(path.read_bytes()))  # False: stale or new
        self.config.set_runtime_cache(self.cache)
        if cuda_graphs:
            self.config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE

    def save(self) -> None:
        write_bytes_atomic(self.path, memoryview(self.cache.serialize()))


def execution_contexts(engine: "trt.ICudaEngine", flavor: str, count: int, runtime_cache: RuntimeCache | None):
    """``count`` execution contexts of ``engine`` (TensorRT-RTX: sharing one runtime configuration and cache)."""
    if runtime_cache is not None:
        return [engine.create_execution_context(runtime_cache.config) for _ in range(count)]
    return [engine.create_execution_context() for _ in range(count)]
