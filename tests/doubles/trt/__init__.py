"""A control-flow double of the ``tensorrt`` module — NOT TensorRT — every name checked against the real API.

Why: TensorRT installs only on CUDA hosts, so without a double trtbuild's builder (trtbuild/trt/builder.py,
calibrator.py, engine_file.py) and runner (trtbuild/runtime/engine.py) never run in CI. ``make_tensorrt(version)``
returns a module object standing in for ``tensorrt`` 10.3.0, 10.13.3.9 or 11.4.0.106. Every attribute access —
module names (``trt.BuilderFlag``), enum members (``trt.BuilderFlag.FP16``), class attributes (``trt.ILogger.ERROR``,
an explicit ``trt.ILogger.__init__``) and attributes, methods and properties read or set on the objects it returns
(``config.set_flag``, ``config.builder_optimization_level = 3``, ``engine.num_io_tensors``) — is checked with
``ApiList.__contains__`` against tests/trt_api/tensorrt-<version>.txt, and an absent name raises AttributeError as
the real module does (``BuilderFlag.FP16`` on 11.4.0.106). Every checked name is recorded in ``module._touched``.
A listed name the double does not implement raises NotImplementedError (never a silent success). Attributes that
trtbuild's own subclasses (of ``ILogger``, ``IProgressMonitor``, ``IInt8EntropyCalibrator2``) define are theirs and
not checked; the double's calls into those overrides are checked against the list (``ILogger.log``) but not
recorded. Not checked: dunder methods (``__int__``, ``__len__``: the lists only record ``__init__``/``__enter__``/
``__exit__``); pybind11's generic enum ``name``/``__members__`` are absent from the lists and therefore refused.

Behaviour, minimal and deterministic (``module._double`` holds the switches and a record of every build):
- ``OnnxParser.parse_from_file``: onnx.load + onnx.checker + shape inference; I/O recorded (-1 for dynamic dims).
  Unsupported: non-standard op types (``EfficientNMS_TRT`` only after ``init_libnvinfer_plugins``) and the op types
  in ``_double.unsupported_ops``, each a ``ParserError`` (every such node is reported; the real parser may stop at
  the first).
- ``Builder.build_serialized_network``: refuses (logs an error, returns None) what TensorRT refuses in ways that
  matter to control flow: weak-typing flags or a calibrator on a strongly typed network, a dynamic input without a
  profile or a shape outside it, INT8 without Q/DQ nodes or calibrator scales, a progress monitor cancelling, and
  ``_double.fail_build``. The INT8 calibrator protocol (10.x): ``read_calibration_cache``; a table whose header is
  not ``TRT-<this version>-EntropyCalibration2`` is ignored with a warning; then ``get_batch_size`` and
  ``get_batch(names)`` until None (pointers are not dereferenced) and ``write_calibration_cache`` with placeholder
  scales. An exception in a calibrator callback is printed to stderr and ends that call, as the bindings do.
  The "engine" is ``ENGINE_MAGIC`` + a JSON description (I/O, flags, profiles, typing, calibration, layers) + the
  ONNX bytes; the runtime refuses garbage and other versions' engines through the logger, returning None.
- Timing caches serialize as ``CACHE_MAGIC`` + JSON; a blob not made by this version is ignored with a warning
  (modelled on ``ignore_mismatch=True``), and a build records whether its entry was already there.
- The engine inspector JSON has one layer per ONNX node with ``Metadata: [ONNX Layer: <node>]`` in the 10.x layout
  (``Bindings``, ``Format/Datatype``) or, on 11.x, ``I/O Tensors`` and split ``Format``/``DataType``
  (tests/fixtures/inspector/README.md); layer data types are the ONNX ones (weak FP16: float → Half; weak INT8:
  Conv → Int8; Q/DQ-fed Conv → Int8). No fusion, no tactics, no precision effects.
- ``IExecutionContext``: profile-checked ``set_input_shape``; output shapes from ONNX shape inference, else one
  ONNX Runtime run on zeros; ``execute_async_v3`` runs the ONNX in ONNX Runtime on the memory at the bound
  addresses only when ``_double.host_pointers`` is set (a pycuda double whose "device" memory is host memory).

Modules: checked.py (the checked-name machinery: ``DoubleState``, the checking metaclass and base classes, enums,
``Dims``, ``IHostMemory``), builder.py (the builder-side classes), building.py (what a build does: parse, calibrate,
progress, layers, refusals), runtime.py (runtime, engine, inspector, execution context); this file assembles the
module (``make_tensorrt``) and reads engines back (``describe_engine``).
"""

from __future__ import annotations

import importlib.machinery
import json
import struct
import types

from ...apicheck import load_api
from .builder import (
    _Builder,
    _IBuilderConfig,
    _IInt8Calibrator,
    _IInt8EntropyCalibrator2,
    _ILayer,
    _ILogger,
    _INetworkDefinition,
    _IOptimizationProfile,
    _IProgressMonitor,
    _ITensor,
    _ITimingCache,
    _OnnxParser,
    _ParserError,
)
from .checked import _TEMPLATES, ENGINE_MAGIC, DoubleState, _Dims, _HostMemory
from .runtime import _EngineInspector, _ICudaEngine, _IExecutionContext, _init_plugins, _nptype, _Runtime

__all__ = ["_TEMPLATES", "DoubleState", "describe_engine", "make_tensorrt"]

_TEMPLATES.update({
    "ILogger": _ILogger, "IProgressMonitor": _IProgressMonitor, "IInt8Calibrator": _IInt8Calibrator,
    "IInt8EntropyCalibrator2": _IInt8EntropyCalibrator2, "Builder": _Builder, "OnnxParser": _OnnxParser,
    "ParserError": _ParserError, "INetworkDefinition": _INetworkDefinition, "ITensor": _ITensor, "ILayer": _ILayer,
    "IBuilderConfig": _IBuilderConfig, "ITimingCache": _ITimingCache, "Dims": _Dims,
    "IOptimizationProfile": _IOptimizationProfile, "IHostMemory": _HostMemory, "Runtime": _Runtime,
    "ICudaEngine": _ICudaEngine, "EngineInspector": _EngineInspector, "IExecutionContext": _IExecutionContext})
_FUNCTIONS = {"nptype": _nptype, "init_libnvinfer_plugins": _init_plugins}


class _Module(types.ModuleType):
    def __getattribute__(self, name):
        if name.startswith("_") and name != "__version__":
            return types.ModuleType.__getattribute__(self, name)
        st: DoubleState = types.ModuleType.__getattribute__(self, "_double")
        st.check(name, "module 'tensorrt'")
        if name == "__version__":
            return st.version
        if name in _FUNCTIONS:
            return _FUNCTIONS[name](st)
        if name[:1].isupper():
            return st.cls(name)
        raise NotImplementedError(f"the TensorRT double does not implement tensorrt.{name}")


def describe_engine(data: bytes) -> dict:
    """The JSON description inside an engine this double serialized (I/O, flags, profiles, calibration, layers)."""
    data = bytes(data)
    if not data.startswith(ENGINE_MAGIC):
        raise ValueError("not an engine serialized by the TensorRT double")
    (n,) = struct.unpack_from("<Q", data, len(ENGINE_MAGIC))
    return json.loads(data[len(ENGINE_MAGIC) + 8:len(ENGINE_MAGIC) + 8 + n])


def make_tensorrt(version: str) -> types.ModuleType:
    """A fresh ``tensorrt`` double for ``version`` ("10.3.0", "10.13.3.9", "11.4.0.106" or a prefix of one)."""
    st = DoubleState(load_api(version))
    mod = _Module("tensorrt", f"control-flow double of TensorRT {st.version}, not TensorRT (tests/doubles/trt/)")
    mod._double, mod._touched = st, st.touched
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    mod.__file__ = __file__
    return mod
