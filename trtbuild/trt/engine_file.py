"""Open an engine file safely: read its sidecar, refuse a mismatched one before deserializing, deserialize.

The sidecar check (``sidecar.check_engine_host``) needs no TensorRT, so a wrong engine is refused with a
rebuild command even where TensorRT would crash or print a cryptic serialization error. An engine without a
sidecar (built by trtexec, say) is loaded as is.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .host import Host, probe_host
from .logger import make_logger
from .sidecar import check_engine_host, read_sidecar


def check_engine(engine: str | os.PathLike, host: Host) -> dict | None:
    """The engine's sidecar after checking it fits ``host`` (EngineMismatchError if not)."""
    engine = Path(engine)
    if not engine.is_file():
        raise InputError(f"{engine}: no such engine file; build it with `trtbuild build MODEL.onnx`")
    meta = read_sidecar(engine)
    check_engine_host(engine, meta, *host.engine_facts())
    return meta


def deserialize(engine: Path, host: Host) -> tuple:
    """``(runtime, engine)`` for ``engine`` (after ``check_engine``); failures become one line. Keep the runtime
    alive as long as the engine."""
    host.require_tensorrt()
    import tensorrt as trt

    logger = make_logger()
    trt.init_libnvinfer_plugins(logger, "")  # engines with EfficientNMS_TRT (--nms efficient)
    runtime: trt.Runtime = trt.Runtime(logger)
    loaded: trt.ICudaEngine = runtime.deserialize_cuda_engine(engine.read_bytes())
    if loaded is None:
        detail = "; ".join(logger.errors[-2:]) or "unknown reason"
        raise InputError(f"{engine}: TensorRT {trt.__version__} cannot deserialize it ({detail}); rebuild it "
                         "on this host with `trtbuild build … --force`")
    return runtime, loaded


def inspector_json(engine: str | os.PathLike, host: Host | None = None) -> str:
    """The engine inspector's JSON (layers, precisions, tactics) of an engine file on this host."""
    host = host or probe_host()
    host.require_tensorrt()
    import tensorrt as trt

    engine = Path(engine)
    check_engine(engine, host)
    loaded: trt.ICudaEngine = deserialize(engine, host)[1]
    inspector: trt.EngineInspector = loaded.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)
