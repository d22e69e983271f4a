"""Open an engine file safely: read its sidecar, refuse a mismatched one before deserializing, deserialize.

The sidecar check (``buildspec.check_engine_host``) needs no TensorRT, so a wrong engine is refused with a
rebuild command even where TensorRT would crash or print a cryptic serialization error. An engine without a
sidecar (built by trtexec, say) is loaded as is.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import read_json
from ..errors import DependencyMissingError, InputError
from .buildspec import check_engine_host, sidecar_path
from .compat import INSTALL_HINT, tensorrt_info


def read_sidecar(engine: Path) -> dict | None:
    return read_json(sidecar_path(engine))


def host_facts() -> tuple[str | None, str | None, str | None]:
    """(TensorRT version, GPU name, compute capability) of this host; None for what is missing."""
    from ..cuda_probe import probe_cuda

    info = tensorrt_info()
    gpus = probe_cuda().gpus
    return info.version, (gpus[0].name if gpus else None), (gpus[0].compute_capability if gpus else None)


def check_engine(engine: str | Path) -> dict | None:
    """The engine's sidecar after checking it fits this host (EngineMismatchError if not)."""
    engine = Path(engine)
    if not engine.is_file():
        raise InputError(f"{engine}: no such engine file; build it with `trtbuild build MODEL.onnx`")
    meta = read_sidecar(engine)
    check_engine_host(engine, meta, *host_facts())
    return meta


def require_tensorrt() -> None:
    """DependencyMissingError with the install command when ``tensorrt`` does not import here."""
    info = tensorrt_info()
    if not info.installed:
        raise DependencyMissingError(f"TensorRT is {info.error}: {INSTALL_HINT}")


def deserialize(engine: Path) -> tuple:
    """``(runtime, engine)`` for ``engine`` (after ``check_engine``); failures become one line. Keep the runtime
    alive as long as the engine."""
    require_tensorrt()
    import tensorrt as trt

    from .builder import _logger

    logger = _logger()
    trt.init_libnvinfer_plugins(logger, "")  # engines with EfficientNMS_TRT (--nms efficient)
    runtime: trt.Runtime = trt.Runtime(logger)
    loaded: trt.ICudaEngine = runtime.deserialize_cuda_engine(engine.read_bytes())
    if loaded is None:
        detail = "; ".join(logger.errors[-2:]) or "unknown reason"
        raise InputError(f"{engine}: TensorRT {trt.__version__} cannot deserialize it ({detail}); rebuild it "
                         "on this host with `trtbuild build … --force`")
    return runtime, loaded


def inspector_json(engine: str | Path) -> str:
    """The engine inspector's JSON (layers, precisions, tactics) of an engine file on this host."""
    require_tensorrt()
    import tensorrt as trt

    engine = Path(engine)
    check_engine(engine)
    loaded: trt.ICudaEngine = deserialize(engine)[1]
    inspector: trt.EngineInspector = loaded.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)
