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
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import json
import re
import struct
import sys
import types
from pathlib import Path

import numpy as np

from trtbuild.trt.apicheck import ApiList, load_api

ENGINE_MAGIC = b"trtbuild-test-double-engine\0"
CACHE_MAGIC = b"trtbuild-test-double-timing-cache\0"
PLUGIN_OPS = {"EfficientNMS_TRT", "BatchedNMSDynamic_TRT"}
# enum values the double interprets (bit positions, ordering); other enums are numbered in list order
_ENUM_VALUES = {
    "NetworkDefinitionCreationFlag": ["EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS",
                                      "PREFER_AOT_PYTHON_PLUGINS"],
    "TensorIOMode": ["NONE", "INPUT", "OUTPUT"],
    "DataType": ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64", "INT4", "FP4", "E8M0"],
    "ILogger.Severity": ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"],
    "ErrorCode": ["SUCCESS", "INTERNAL_ERROR", "MEM_ALLOC_FAILED", "MODEL_DESERIALIZE_FAILED", "INVALID_VALUE",
                  "INVALID_GRAPH", "INVALID_NODE", "UNSUPPORTED_GRAPH", "UNSUPPORTED_NODE"],  # a return type only
}
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
       "BOOL": np.bool_, "UINT8": np.uint8}
_ONNX_DT = {1: "FLOAT", 10: "HALF", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL", 16: "BF16"}
_LABEL = {"FLOAT": "Float", "HALF": "Half", "INT8": "Int8", "UINT8": "UInt8", "INT32": "Int32", "INT64": "Int64",
          "BOOL": "Bool", "BF16": "BFloat16"}
_FORMAT10 = {"Float": "Row major linear FP32", "Half": "Row major linear FP16 format", "Int8": "Row major linear Int8 "
             "format", "Int32": "Row major linear Int32", "Int64": "Row major linear Int64", "Bool": "Row major "
             "linear Bool", "UInt8": "Row major linear UInt8", "BFloat16": "Row major linear BF16"}
_LAYER_TYPES = {"Conv": "Convolution", "Sigmoid": "Activation", "Relu": "Activation", "Mul": "ElementWise",
                "Add": "ElementWise", "Sub": "ElementWise", "Div": "ElementWise", "Concat": "Concatenation",
                "MaxPool": "Pooling", "Resize": "Resize", "Reshape": "Shuffle", "Transpose": "Shuffle",
                "Split": "Slice", "Slice": "Slice", "Softmax": "SoftMax", "QuantizeLinear": "Quantize",
                "DequantizeLinear": "Dequantize", "Cast": "Cast", "Constant": "Constant"}


class DoubleState:
    """One module's API list, the names touched, the switches tests flip, and what was built."""

    def __init__(self, api: ApiList):
        self.api, self.version = api, api.version
        self.major = int(api.version.split(".")[0])
        self.touched: set[str] = set()
        self.classes: dict[str, type] = {}
        self.unsupported_ops: set[str] = set()  # op types the parser reports as unsupported
        self.fail_build: str | None = None  # build_serialized_network logs this error and returns None
        self.dla_cores = 0
        self.plugins_loaded = False
        self.host_pointers = False  # execute_async_v3 may read/write host memory at the bound addresses
        self.builds: list[dict] = []  # the description of every engine built
        self.progress: list[tuple] = []  # progress monitor calls

    def check(self, qualified: str, what: str, record: bool = True) -> None:
        if qualified not in self.api:
            owner, _, member = qualified.rpartition(".")
            raise AttributeError(f"{what} has no attribute '{member}' (tensorrt.{qualified} is not in "
                                 f"tests/trt_api/tensorrt-{self.version}.txt)")
        if record:
            self.touched.add(qualified)

    def cls(self, tq: str) -> type:
        if tq not in self.classes:
            template = _TEMPLATES.get(tq) or (_Enum if tq in _ENUM_VALUES or f"{tq}.value" in self.api.qualified
                                              else _Unimplemented)
            bases = (self.cls("IInt8Calibrator"), template) if tq == "IInt8EntropyCalibrator2" else (template,)
            cls = _Meta(tq.rsplit(".", 1)[-1], bases, {"_double": True, "_tq": tq, "_st": self,
                                                             "__module__": "tensorrt", "__qualname__": tq})
            self.classes[tq] = cls
            if template is _Enum:
                names = _ENUM_VALUES.get(tq, [])
                listed = sorted(q[len(tq) + 1:] for q in self.api.qualified if q.startswith(tq + ".")
                                and re.fullmatch(r"[A-Z][A-Z0-9_]*", q[len(tq) + 1:]))
                for name in dict.fromkeys(names + listed):
                    if tq in _ENUM_VALUES and tq != "ErrorCode" and name not in listed:
                        continue
                    member = object.__new__(cls)
                    member.__dict__.update(_name=name, _value=names.index(name) if name in names else
                                           len(names) + listed.index(name))
                    type.__setattr__(cls, name, member)
            if tq == "ILogger":
                severity = self.cls("ILogger.Severity")
                type.__setattr__(cls, "Severity", severity)
                for name in _ENUM_VALUES["ILogger.Severity"]:
                    if f"ILogger.{name}" in self.api:
                        type.__setattr__(cls, name, type.__getattribute__(severity, name))
        return self.classes[tq]

    def member(self, tq: str, name: str):
        return type.__getattribute__(self.cls(tq), name)

    def new(self, tq: str, **state):
        obj = object.__new__(self.cls(tq))
        obj.__dict__.update({"_props": {}, **state})
        return obj

    def expect(self, value, tq: str, what: str, optional: bool = False):
        if not (optional and value is None) and not isinstance(value, self.cls(tq)):
            raise TypeError(f"{what}(): incompatible function arguments: expected tensorrt.{tq}, got "
                            f"{type(value).__name__}")
        return value


def _defined_by_user(cls: type, name: str) -> bool | None:
    """True when a (user) subclass of a double class defines ``name``; False when the double or a builtin base
    does; None when nobody does."""
    for k in type.__getattribute__(cls, "__mro__"):
        d = type.__getattribute__(k, "__dict__")
        if name in d:
            return issubclass(k, _Obj) and d.get("__module__") not in (__name__, "tensorrt")
    return None


def _double_base(cls: type) -> type | None:
    return next((k for k in type.__getattribute__(cls, "__mro__") if "_tq" in type.__getattribute__(k, "__dict__")),
                None)


class _Meta(type):
    """Checks class-level access (``trt.BuilderFlag.FP16``, ``trt.ILogger.__init__``) and that subclasses call
    the base ``__init__`` (pybind11's rule)."""

    def __getattribute__(cls, name):
        if (name.startswith("_") and name != "__init__") or _defined_by_user(cls, name):
            return type.__getattribute__(cls, name)
        base = _double_base(cls)
        if base is None:
            return type.__getattribute__(cls, name)
        tq = type.__getattribute__(base, "_tq")
        type.__getattribute__(base, "_st").check(f"{tq}.{name}", f"type object 'tensorrt.{tq}'")
        try:
            return type.__getattribute__(cls, name)
        except AttributeError:
            raise NotImplementedError(f"the TensorRT double does not implement tensorrt.{tq}.{name}") from None

    def __call__(cls, *args, **kwargs):
        obj = type.__call__(cls, *args, **kwargs)
        base = _double_base(cls)
        if base is not None and base is not cls and not obj.__dict__.get("_trt_init"):
            raise TypeError(f"{type.__getattribute__(base, '_tq')}.__init__() must be called when overriding "
                            "__init__")
        return obj


class _Obj(metaclass=_Meta):
    """Checks every public attribute read or set on the double's objects; state lives in ``_`` names."""

    _double = True

    def __init__(self, *args, **kwargs):
        raise TypeError(f"tensorrt.{type(self)._tq}: No constructor defined!")

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        cls = type(self)
        if _defined_by_user(cls, name) or name in object.__getattribute__(self, "__dict__"):
            return object.__getattribute__(self, name)
        base = _double_base(cls)
        tq = type.__getattribute__(base, "_tq")
        type.__getattribute__(base, "_st").check(f"{tq}.{name}", f"'tensorrt.{tq}' object")
        try:
            return object.__getattribute__(self, name)
        except AttributeError:
            props = object.__getattribute__(self, "__dict__").get("_props", {})
            if name in props:
                return props[name]
            raise NotImplementedError(f"the TensorRT double does not implement tensorrt.{tq}.{name}") from None

    def __setattr__(self, name, value):
        cls = type(self)
        user = _defined_by_user(cls, name)
        if name.startswith("_") or user or (user is None and _double_base(cls) is not cls):
            return object.__setattr__(self, name, value)  # the double's state, or a subclass's own attribute
        base = _double_base(cls)
        tq = type.__getattribute__(base, "_tq")
        type.__getattribute__(base, "_st").check(f"{tq}.{name}", f"'tensorrt.{tq}' object")
        if isinstance(getattr(cls, "_" + name + "_kind", None), tuple):
            kind, optional = getattr(cls, "_" + name + "_kind")
            value = value if kind is int and isinstance(value, int) else self._st.expect(value, kind, name, optional)
        self.__dict__.setdefault("_props", {})[name] = value


class _Subclassable(_Obj):
    """Base of the interfaces Python code subclasses; the double calls the overrides through ``_virtual``."""

    def __init__(self):
        object.__setattr__(self, "_trt_init", True)
        object.__setattr__(self, "_props", {})


def _virtual(obj, name: str, *args):
    """Call ``obj``'s Python override of ``name`` as TensorRT's C++ side would (checked, not recorded)."""
    base = _double_base(type(obj))
    tq = type.__getattribute__(base, "_tq")
    type.__getattribute__(base, "_st").check(f"{tq}.{name}", f"'tensorrt.{tq}' object", record=False)
    if not _defined_by_user(type(obj), name):
        raise RuntimeError(f'Tried to call pure virtual function "{tq}::{name}"')
    return object.__getattribute__(obj, name)(*args)


def _log(st: DoubleState, logger, severity: str, msg: str) -> None:
    _virtual(logger, "log", st.member("ILogger.Severity", severity), msg)


class _Enum(_Obj):
    def __init__(self, value):
        raise TypeError(f"tensorrt.{type(self)._tq}({value!r}): construct members by name")

    @property
    def value(self):
        return self._value

    def __int__(self):
        return self._value

    __index__ = __int__

    def __eq__(self, other):
        return type(other) is type(self) and other._value == self._value

    def __hash__(self):
        return hash((type(self)._tq, self._value))

    def __repr__(self):
        return f"<{type(self)._tq.rsplit('.', 1)[-1]}.{self._name}: {self._value}>"

    def __str__(self):
        return f"{type(self)._tq.rsplit('.', 1)[-1]}.{self._name}"


class _Unimplemented(_Obj):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"the TensorRT double does not implement tensorrt.{type(self)._tq}")


class _Dims(_Obj):
    def __init__(self, shape=()):
        object.__setattr__(self, "_d", tuple(int(d) for d in shape))

    def __len__(self):
        return len(self._d)

    def __getitem__(self, i):
        return self._d[i]

    def __iter__(self):
        return iter(self._d)

    def __eq__(self, other):
        return tuple(self) == tuple(other) if isinstance(other, (tuple, list, _Dims)) else NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(self._d)


def _dims(st: DoubleState, shape) -> _Dims:
    return st.new("Dims", _d=tuple(int(d) for d in shape))


class _HostMemory(bytes, _Obj):
    """Serialized engine / timing cache: the buffer protocol (memoryview, bytes()), ``nbytes``; not a bytes API."""

    __getattribute__, __setattr__ = _Obj.__getattribute__, _Obj.__setattr__

    @property
    def nbytes(self):
        return bytes.__len__(self)

    def _refuse(self, *args):
        raise TypeError("tensorrt.IHostMemory supports the buffer protocol only (use memoryview or bytes())")

    __len__ = __getitem__ = __iter__ = __contains__ = __add__ = __radd__ = __mul__ = __rmul__ = __mod__ = _refuse
    __eq__, __ne__, __hash__ = object.__eq__, object.__ne__, object.__hash__

    def __repr__(self):
        return f"<tensorrt.IHostMemory object of {bytes.__len__(self)} bytes>"

    __str__ = __repr__


def _host_memory(st: DoubleState, data: bytes) -> _HostMemory:
    return bytes.__new__(st.cls("IHostMemory"), data)


# --------------------------------------------------------------------------------------------- builder side
class _ILogger(_Subclassable):
    pass


class _IProgressMonitor(_Subclassable):
    pass


class _IInt8Calibrator(_Subclassable):
    _algorithm = "EntropyCalibration2"


class _IInt8EntropyCalibrator2(_IInt8Calibrator):
    pass


class _Builder(_Obj):
    def __init__(self, logger):
        self._st.expect(logger, "ILogger", "Builder.__init__")
        object.__setattr__(self, "_logger", logger)

    def create_network(self, flags: int = 0):
        known = {m: int(self._st.member("NetworkDefinitionCreationFlag", m)) for m in
                 _ENUM_VALUES["NetworkDefinitionCreationFlag"] if f"NetworkDefinitionCreationFlag.{m}" in self._st.api}
        if flags & ~sum(1 << v for v in known.values()):
            _log(self._st, self._logger, "ERROR", f"createNetworkV2: invalid NetworkDefinitionCreationFlags {flags}")
            return None
        return self._st.new("INetworkDefinition", _flags={m for m, v in known.items() if flags & (1 << v)},
                            _inputs=[], _outputs=[], _model=None)

    def create_builder_config(self):
        st = self._st
        return st.new("IBuilderConfig", _flags=set(), _pools={}, _profiles=[], _timing_cache=None,
                      _logger=self._logger, _props={
            "builder_optimization_level": 3, "DLA_core": -1, "progress_monitor": None,
            "profiling_verbosity": st.member("ProfilingVerbosity", "LAYER_NAMES_ONLY"),
            "hardware_compatibility_level": st.member("HardwareCompatibilityLevel", "NONE"),
            "default_device_type": st.member("DeviceType", "GPU"), "int8_calibrator": None})

    def create_optimization_profile(self):
        return self._st.new("IOptimizationProfile", _shapes={}, _logger=self._logger, _valid=True)

    @property
    def num_DLA_cores(self):
        return self._st.dla_cores

    def build_serialized_network(self, network, config):
        st = self._st
        st.expect(network, "INetworkDefinition", "build_serialized_network")
        st.expect(config, "IBuilderConfig", "build_serialized_network")
        desc = _build(st, self._logger, network, config)
        if desc is None:
            return None
        st.builds.append({k: v for k, v in desc.items() if k != "layers"})
        header = json.dumps(desc).encode()
        return _host_memory(st, ENGINE_MAGIC + struct.pack("<Q", len(header)) + header + network._bytes)


class _OnnxParser(_Obj):
    def __init__(self, network, logger):
        self._st.expect(network, "INetworkDefinition", "OnnxParser.__init__")
        self._st.expect(logger, "ILogger", "OnnxParser.__init__")
        object.__setattr__(self, "_network", network)
        object.__setattr__(self, "_logger", logger)
        object.__setattr__(self, "_errors", [])

    def parse_from_file(self, model: str) -> bool:
        errors = _parse_onnx(self._st, self._network, Path(model))
        for e in errors:
            _log(self._st, self._logger, "ERROR", f"ModelImporter.cpp: {e['desc']}")
            self._errors.append(self._st.new("ParserError", _e=e))
        return not errors

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index: int):
        return self._errors[index] if 0 <= index < len(self._errors) else None


class _ParserError(_Obj):
    def desc(self):
        return self._e["desc"]

    def node(self):
        return self._e["node"]

    def node_name(self):
        return self._e["node_name"]

    def node_operator(self):
        return self._e["op"]

    def code(self):
        return self._st.member("ErrorCode", self._e["code"])


class _INetworkDefinition(_Obj):
    @property
    def num_inputs(self):
        return len(self._inputs)

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_input(self, index):
        return self._inputs[index]

    def get_output(self, index):
        return self._outputs[index]

    @property
    def num_layers(self):
        return len(self._model.graph.node) if self._model is not None else 0


class _ITensor(_Obj):
    @property
    def name(self):
        return self._name

    @property
    def shape(self):
        return _dims(self._st, self._shape)

    @property
    def dtype(self):
        return self._st.member("DataType", self._dtype)


class _IBuilderConfig(_Obj):
    _builder_optimization_level_kind = (int, False)
    _DLA_core_kind = (int, False)
    _profiling_verbosity_kind = ("ProfilingVerbosity", False)
    _hardware_compatibility_level_kind = ("HardwareCompatibilityLevel", False)
    _default_device_type_kind = ("DeviceType", False)
    _progress_monitor_kind = ("IProgressMonitor", True)
    _int8_calibrator_kind = ("IInt8Calibrator", True)

    def set_memory_pool_limit(self, pool, pool_size: int):
        self._pools[str(self._st.expect(pool, "MemoryPoolType", "set_memory_pool_limit"))] = int(pool_size)

    def set_flag(self, flag):
        self._flags.add(self._st.expect(flag, "BuilderFlag", "set_flag")._name)

    def clear_flag(self, flag):
        self._flags.discard(self._st.expect(flag, "BuilderFlag", "clear_flag")._name)

    def get_flag(self, flag):
        return self._st.expect(flag, "BuilderFlag", "get_flag")._name in self._flags

    def add_optimization_profile(self, profile) -> int:
        self._st.expect(profile, "IOptimizationProfile", "add_optimization_profile")
        if not profile._valid or not profile._shapes:
            _log(self._st, profile._logger, "ERROR", "addOptimizationProfile: the optimization profile is invalid")
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(memoryview(serialized_timing_cache))
        stored = json.loads(data[len(CACHE_MAGIC):]) if data.startswith(CACHE_MAGIC) else {}
        entries = stored["entries"] if stored.get("tensorrt_version") == self._st.version else {}
        if data and not entries and stored.get("entries") != {}:  # modelled: an unusable blob is ignored, warned
            _log(self._st, self._logger, "WARNING", "the timing cache was not created by TensorRT "
                 f"{self._st.version} on this device ({len(data)} bytes): it is ignored and a new one started")
        return self._st.new("ITimingCache", _entries=entries)

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        self._timing_cache = self._st.expect(cache, "ITimingCache", "set_timing_cache")
        return True

    def get_timing_cache(self):
        return self._timing_cache


class _ITimingCache(_Obj):
    def serialize(self):
        body = json.dumps({"tensorrt_version": self._st.version, "entries": self._entries}, sort_keys=True)
        return _host_memory(self._st, CACHE_MAGIC + body.encode())


class _IOptimizationProfile(_Obj):
    def set_shape(self, input: str, min, opt, max):  # noqa: A002 - TensorRT's parameter names
        shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
        ok = len({len(s) for s in shapes}) == 1 and all(a <= b <= c for a, b, c in zip(*shapes)) and \
            all(d >= 0 for d in shapes[0])
        if not ok:
            _log(self._st, self._logger, "ERROR", f"setDimensions: invalid profile shapes for {input}: {shapes}")
            self._valid = False
        self._shapes[input] = shapes

    def get_shape(self, input: str):  # noqa: A002
        return [_dims(self._st, s) for s in self._shapes.get(input, [])]


# --------------------------------------------------------------------------------------------- runtime side
class _Runtime(_Obj):
    def __init__(self, logger):
        self._st.expect(logger, "ILogger", "Runtime.__init__")
        object.__setattr__(self, "_logger", logger)

    def deserialize_cuda_engine(self, serialized_engine):
        st, data = self._st, bytes(memoryview(serialized_engine))
        if not data.startswith(ENGINE_MAGIC):
            _log(st, self._logger, "ERROR", "1: [runtime.cpp::parsePlan] Error Code 1: Serialization (Serialization "
                 "assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.)")
            return None
        (n,) = struct.unpack_from("<Q", data, len(ENGINE_MAGIC))
        start = len(ENGINE_MAGIC) + 8
        desc = json.loads(data[start:start + n])
        if desc["tensorrt_version"] != st.version:
            _log(st, self._logger, "ERROR", "1: [stdArchiveReader.cpp] Error Code 1: Serialization (Serialization "
                 f"assertion stdVersionRead == kSERIALIZATION_VERSION failed.Version tag does not match. Note: "
                 f"Current Version: {st.version}, Serialized Engine Version: {desc['tensorrt_version']})")
            return None
        return st.new("ICudaEngine", _desc=desc, _onnx=data[start + n:], _io={t["name"]: t for t in desc["io"]},
                      _session=None, _shape_cache={}, _data=data,
                      _logger=self._logger)


class _ICudaEngine(_Obj):
    @property
    def num_io_tensors(self):
        return len(self._desc["io"])

    def get_tensor_name(self, index):
        return self._desc["io"][index]["name"]

    def get_tensor_mode(self, name):
        mode = self._io[name]["mode"].upper() if name in self._io else "NONE"
        return self._st.member("TensorIOMode", mode)

    def get_tensor_shape(self, name):
        return _dims(self._st, self._io[name]["shape"])

    def get_tensor_dtype(self, name):
        return self._st.member("DataType", self._io[name]["dtype"])

    def get_tensor_profile_shape(self, name, profile_index):
        shapes = self._desc["profiles"].get(name) if profile_index == 0 else None
        if shapes is None:
            raise RuntimeError(f"get_tensor_profile_shape({name!r}, {profile_index}): not an input of profile "
                               f"{profile_index}")
        return [_dims(self._st, s) for s in shapes]

    @property
    def num_optimization_profiles(self):
        return 1

    @property
    def device_memory_size_v2(self):
        return self._desc["device_memory"]

    def serialize(self):
        return _host_memory(self._st, self._data)

    def create_execution_context(self):
        shapes = {n: tuple(t["shape"]) for n, t in self._io.items() if t["mode"] == "input" and -1 not in t["shape"]}
        return self._st.new("IExecutionContext", _engine=self, _shapes=shapes, _addresses={})

    def create_engine_inspector(self):
        return self._st.new("EngineInspector", _engine=self)


class _EngineInspector(_Obj):
    def get_engine_information(self, format):  # noqa: A002 - TensorRT's parameter name
        fmt = self._st.expect(format, "LayerInformationFormat", "get_engine_information")._name
        desc = self._engine._desc
        if fmt == "ONELINE":
            return "\n".join(layer["name"] for layer in desc["layers"])
        return _inspector_json(self._st, desc)


class _IExecutionContext(_Obj):
    def set_input_shape(self, name, shape) -> bool:
        shape = tuple(int(d) for d in shape)
        problem = _shape_error(self._engine._desc, name, shape)
        if problem:
            _log(self._st, self._engine._logger, "ERROR",
                 f"IExecutionContext::setInputShape: Error Code 3: API Usage Error ({problem})")
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name):
        io = self._engine._io[name]
        if io["mode"] == "input":
            return _dims(self._st, self._shapes.get(name, io["shape"]))
        inputs = [n for n, t in self._engine._io.items() if t["mode"] == "input"]
        if any(n not in self._shapes for n in inputs):
            return _dims(self._st, io["shape"])
        return _dims(self._st, _output_shapes(self._engine, {n: self._shapes[n] for n in inputs})[name])

    def set_tensor_address(self, name, memory) -> bool:
        if name not in self._engine._io:
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle) -> bool:
        if not self._st.host_pointers:
            raise RuntimeError("the TensorRT double executes only with a pycuda double whose device pointers are "
                               "host memory (set module._double.host_pointers)")
        int(stream_handle)
        return _execute_on_host(self)


def _nptype(st: DoubleState):
    def nptype(trt_type):
        st.expect(trt_type, "DataType", "nptype")
        if trt_type._name not in _NP:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return _NP[trt_type._name]
    return nptype


def _init_plugins(st: DoubleState):
    def init_libnvinfer_plugins(logger, namespace: str) -> bool:
        st.expect(logger, "ILogger", "init_libnvinfer_plugins", optional=True)
        st.plugins_loaded = True
        return True
    return init_libnvinfer_plugins


# --------------------------------------------------------------------------------------------- what it "does"
_CALIBRATION_FAILURE = ("2: [calibrator.cpp] Error Code 2: Internal Error (Calibration failure occurred with no "
                        "scaling factors detected. This could be due to no int8 calibrator or insufficient custom "
                        "scales for network layers.)")


def _version_number(version: str) -> int:
    major, minor, patch = ([int(x) for x in re.findall(r"\d+", version)[:3]] + [0, 0])[:3]
    return major * 10000 + minor * 100 + patch


def _shape(t) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in t.type.tensor_type.shape.dim]


def _parse_onnx(st: DoubleState, network, path: Path) -> list[dict]:
    """Load, check and record ``path`` into ``network``; the parser errors (empty on success)."""
    import onnx

    def error(desc, node=-1, name="", op="", code="UNSUPPORTED_NODE"):
        return {"desc": desc, "node": node, "node_name": name, "op": op, "code": code}

    try:
        data = path.read_bytes()
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # what the real parser reports as a failed file
        return [error(f"Failed to parse ONNX model from file: {path}: {type(exc).__name__}: {exc}"[:400],
                      code="MODEL_DESERIALIZE_FAILED")]
    errors = []
    for i, node in enumerate(model.graph.node):
        standard = node.domain in ("", "ai.onnx") and onnx.defs.has(node.op_type)
        plugin = node.op_type in PLUGIN_OPS and st.plugins_loaded
        if node.op_type in st.unsupported_ops or not (standard or plugin):
            errors.append(error(f"No importer registered for op: {node.op_type}. Attempting to import as plugin. "
                                "Plugin not found, are the plugin name, version, and namespace correct?", i,
                                node.name, node.op_type))
    if errors:
        return errors
    inferred = onnx.shape_inference.infer_shapes(model)
    types_ = {vi.name: (_ONNX_DT.get(vi.type.tensor_type.elem_type, "FLOAT"), _shape(vi)) for vi in
              [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    inits = {i.name for i in model.graph.initializer}
    tensors = []
    for vi in [*model.graph.input, *inferred.graph.output]:
        if vi.name in inits:
            continue
        if vi.type.tensor_type.elem_type not in _ONNX_DT:
            return [error(f"{vi.name}: unsupported data type {vi.type.tensor_type.elem_type}", code="INVALID_GRAPH")]
        tensors.append(st.new("ITensor", _name=vi.name, _shape=tuple(_shape(vi)),
                              _dtype=_ONNX_DT[vi.type.tensor_type.elem_type]))
    n_in = sum(vi.name not in inits for vi in model.graph.input)
    network.__dict__.update(_inputs=tensors[:n_in], _outputs=tensors[n_in:], _model=model, _source=path,
                            _bytes=data, _types=types_, _inits=inits)
    return []


def _calibrate(st: DoubleState, logger, cal, network) -> dict | None:
    """The 10.x implicit-INT8 calibrator protocol; None when no scales came of it."""
    header = f"TRT-{_version_number(st.version)}-{type.__getattribute__(type(cal), '_algorithm')}"

    def call(name, *args):
        try:
            return True, _virtual(cal, name, *args)
        except Exception as exc:  # the bindings print the exception and carry on as if nothing was returned
            print(f"[ERROR] Exception caught in {name}(): {type(exc).__name__}: {exc}", file=sys.stderr)
            return False, None

    ok, cache = call("read_calibration_cache")
    if ok and cache is not None:
        lines = bytes(memoryview(cache)).decode(errors="replace").splitlines()
        if lines and lines[0] == header:
            scales = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            return {"source": "cache", "header": header, "tensors": len(scales),
                    "unknown_tensors": sorted(set(scales) - set(network._types))}
        _log(st, logger, "WARNING", f"calibration cache header {lines[0] if lines else ''!r} is not {header!r}: "
                                    "the cache is ignored and the network calibrated")
    ok, batch_size = call("get_batch_size")
    names = [t._name for t in network._inputs]
    batches = 0
    while ok and batches < 100_000:
        ok, pointers = call("get_batch", names)
        if not ok or not pointers:
            break
        if not (isinstance(pointers, (list, tuple)) and len(pointers) == len(names)
                and all(isinstance(p, int) for p in pointers)):
            print(f"[ERROR] Exception caught in get_batch(): expected {len(names)} device pointer(s) (int), got "
                  f"{pointers!r}", file=sys.stderr)
            break
        batches += 1
    if not batches:
        return None
    convs = [n.output[0] for n in network._model.graph.node if n.op_type == "Conv"]
    table = "\n".join([header] + [f"{n}: 3c010204" for n in names + convs]) + "\n"  # placeholder scale 1/127
    call("write_calibration_cache", memoryview(table.encode()))
    return {"source": "calibrated", "header": header, "batches": batches, "batch_size": batch_size}


def _progress(st: DoubleState, monitor) -> bool:
    """Drive the progress monitor through two nested phases; False when it cancelled the build."""
    def call(name, *args):
        st.progress.append((name, *args))
        return _virtual(monitor, name, *args)

    call("phase_start", "Building engine", None, 2)
    for step, child in enumerate(("Optimizing network", "Selecting tactics")):
        call("phase_start", child, "Building engine", 3)
        go = all([call("step_complete", child, s) is not False for s in range(3)])
        call("phase_finish", child)
        if not go or call("step_complete", "Building engine", step) is False:
            call("phase_finish", "Building engine")
            return False
    call("phase_finish", "Building engine")
    return True


def _layers(network, flags: set, strong: bool) -> list[dict]:
    nodes = network._model.graph.node
    dq_out = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"}
    layers = []
    for i, n in enumerate(nodes):
        def tensor(name, dtype=None):
            dt, dims = network._types.get(name, ("FLOAT", []))
            return {"name": name, "dtype": dtype or dt, "dims": dims}

        outs = []
        for o in (o for o in n.output if o):
            dt = network._types.get(o, ("FLOAT", []))[0]
            if not strong and "INT8" in flags and n.op_type == "Conv":
                dt = "INT8"
            elif not strong and "FP16" in flags and dt == "FLOAT":
                dt = "HALF"
            elif strong and n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and dq_out & set(n.input):
                dt = "INT8"
            outs.append(tensor(o, dt))
        layers.append({"name": n.name or f"{n.op_type}_{i}", "op": n.op_type, "outputs": outs,
                       "inputs": [tensor(x) for x in n.input if x and x not in network._inits]})
    return layers


def _build(st: DoubleState, logger, network, config) -> dict | None:
    """The engine description, or None after logging why TensorRT would refuse the build."""
    def fail(msg):
        _log(st, logger, "ERROR", msg)
        return None

    if st.fail_build:
        return fail(st.fail_build)
    if network._model is None or not network._outputs:
        return fail("4: [network.cpp::validate] Error Code 4: Internal Error (Network must have at least one output)")
    props, flags = config._props, set(config._flags)
    strong = st.major >= 11 or "STRONGLY_TYPED" in network._flags
    weak = sorted(flags & {"FP16", "INT8", "BF16", "FP8"})
    calibrator = props["int8_calibrator"] if "int8_calibrator" in props else None
    if strong and (weak or calibrator is not None):
        return fail(f"4: API Usage Error (BuilderFlag {', '.join('k' + f for f in weak) or 'int8 calibrator'} "
                    "cannot be used with a strongly typed network)")
    chosen = config._profiles[0]._shapes if config._profiles else {}
    profiles = {}
    for t in network._inputs:
        shapes = chosen.get(t._name)
        if shapes is None and -1 in t._shape:
            return fail("4: [network.cpp::validate] Error Code 4: API Usage Error (Network has dynamic or shape "
                        "inputs, but no optimization profile has been defined.)")
        shapes = shapes or [tuple(t._shape)] * 3
        if any(len(s) != len(t._shape) or any(e not in (-1, d) for e, d in zip(t._shape, s)) for s in shapes):
            return fail(f"4: API Usage Error (optimization profile {shapes} of {t._name} does not fit its shape "
                        f"{list(t._shape)})")
        profiles[t._name] = [list(s) for s in shapes]
    device = props["default_device_type"]._name
    if device == "DLA" and not 0 <= props["DLA_core"] < st.dla_cores:
        return fail(f"DLA core {props['DLA_core']} requested but this device has {st.dla_cores}")
    calibration = None
    if "INT8" in flags and calibrator is not None:
        calibration = _calibrate(st, logger, calibrator, network)
        if calibration is None:
            return fail(_CALIBRATION_FAILURE)
    elif "INT8" in flags and not any(n.op_type == "QuantizeLinear" for n in network._model.graph.node):
        return fail(_CALIBRATION_FAILURE)
    monitor = props["progress_monitor"]
    if monitor is not None and not _progress(st, monitor):
        return fail("2: [builder.cpp] Error Code 2: Internal Error (the build was cancelled by the progress monitor)")
    layers = _layers(network, flags, strong)
    key = hashlib.sha256(network._bytes + json.dumps([sorted(flags), profiles, strong]).encode()).hexdigest()
    cache = config._timing_cache
    hit = cache is not None and key in cache._entries
    if cache is not None:
        cache._entries[key] = {"layers": len(layers)}
    max_batch = max(p[2][0] for p in profiles.values())
    memory = sum(int(np.prod([max_batch if d < 0 else d for d in o["dims"]])) * (1 if o["dtype"] == "INT8" else
                 2 if o["dtype"] == "HALF" else 4) for layer in layers for o in layer["outputs"])
    io = [{"name": t._name, "mode": mode, "shape": list(t._shape), "dtype": t._dtype}
          for mode, ts in (("input", network._inputs), ("output", network._outputs)) for t in ts]
    return {"format": "trtbuild test double, not a TensorRT engine", "tensorrt_version": st.version,
            "onnx": str(network._source), "onnx_sha256": hashlib.sha256(network._bytes).hexdigest(),
            "typing": "strong" if strong else "weak", "network_flags": sorted(network._flags),
            "builder_flags": sorted(flags), "io": io, "profiles": profiles,
            "memory_pools": {k: v for k, v in config._pools.items()},
            "builder_optimization_level": props["builder_optimization_level"],
            "profiling_verbosity": props["profiling_verbosity"]._name,
            "hardware_compatibility_level": props["hardware_compatibility_level"]._name, "device": device,
            "dla_core": props["DLA_core"], "calibration": calibration, "timing_cache_hit": hit,
            "plugins_loaded": st.plugins_loaded, "progress_monitor": monitor is not None, "device_memory": memory,
            "layers": layers}


def _inspector_json(st: DoubleState, desc: dict) -> str:
    """Engine-inspector JSON in the layout of the version (see tests/fixtures/inspector/README.md)."""
    v11 = st.major >= 11
    short = {"Float": "FP32", "Half": "FP16", "BFloat16": "BF16"}

    def tensor(t):
        label = _LABEL.get(t["dtype"], "Float")
        out = {"Name": t["name"], "Location": "Device", "Dimensions": t["dims"]}
        if v11:
            out.update({"Format": f"Row major linear {short.get(label, label)} format (kLINEAR)", "DataType": label})
        else:
            out["Format/Datatype"] = _FORMAT10[label]
        return out

    if v11:
        io = {"I/O Tensors": [{"Name": t["name"], "IOMode": t["mode"].capitalize(), "DataType": _LABEL[t["dtype"]],
                               "Dimensions": t["shape"], "Location": "Device", "IsShapeInferenceIO": False,
                               "ProfileInfo": [dict(zip(("MinShape", "OptShape", "MaxShape"), desc["profiles"][
                                   t["name"]]))] if t["mode"] == "input" else []} for t in desc["io"]]}
    else:
        io = {"Bindings": [t["name"] for t in desc["io"]]}
    if desc["profiling_verbosity"] != "DETAILED":
        return json.dumps({"Layers": [layer["name"] for layer in desc["layers"]], **io})
    layers = [{"Name": layer["name"], "LayerType": _LAYER_TYPES.get(layer["op"], layer["op"]),
               "Inputs": [tensor(t) for t in layer["inputs"]], "Outputs": [tensor(t) for t in layer["outputs"]],
               "TacticName": "", "TacticValue": "0x0000000000000000", "StreamId": 0,
               "Metadata": f"[ONNX Layer: {layer['name']}]"} for layer in desc["layers"]]
    return json.dumps({"Layers": layers, **io})


def _shape_error(desc: dict, name: str, shape: tuple) -> str | None:
    io = {t["name"]: t for t in desc["io"]}
    if name not in io or io[name]["mode"] != "input":
        return f"{name!r} is not an input tensor"
    engine = io[name]["shape"]
    if len(shape) != len(engine) or any(e not in (-1, d) for e, d in zip(engine, shape)):
        return f"Parameter check failed, condition: engineDims.d[i] == dims.d[i]; {list(shape)} vs {engine}"
    lo, _, hi = desc["profiles"][name]
    if any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
        return (f"Supplied binding dimension {list(shape)} for {name} exceeds the min ~ max range of profile 0: "
                f"minimum {lo}, maximum {hi}")
    return None


def _session(engine):
    if engine._session is None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        engine._session = ort.InferenceSession(engine._onnx, opts, providers=["CPUExecutionProvider"])
    return engine._session


def _output_shapes(engine, shapes: dict) -> dict:
    """Output shapes for these input shapes: ONNX shape inference, else one ONNX Runtime run on zeros."""
    key = tuple(sorted(shapes.items()))
    if key not in engine._shape_cache:
        import onnx

        model = onnx.load_model_from_string(engine._onnx)
        for vi in model.graph.input:
            for d, v in zip(vi.type.tensor_type.shape.dim, shapes.get(vi.name, ())):
                d.dim_value = v
        outs = {o.name: _shape(o) for o in onnx.shape_inference.infer_shapes(model, data_prop=True).graph.output}
        if any(-1 in s for s in outs.values()) or set(outs) != {n for n, t in engine._io.items()
                                                                 if t["mode"] == "output"}:
            feeds = {n: np.zeros(s, _NP[engine._io[n]["dtype"]]) for n, s in shapes.items()}
            sess = _session(engine)
            outs = {o.name: list(a.shape) for o, a in zip(sess.get_outputs(), sess.run(None, feeds))}
        engine._shape_cache[key] = outs
    return engine._shape_cache[key]


def _execute_on_host(context) -> bool:
    """Run the ONNX in ONNX Runtime on the host memory at the bound addresses (a pycuda double's "device")."""
    engine, st = context._engine, context._st
    inputs = [n for n, t in engine._io.items() if t["mode"] == "input"]
    missing = [n for n in engine._io if not context._addresses.get(n)] + [n for n in inputs if n not in
                                                                          context._shapes]
    if missing:
        _log(st, engine._logger, "ERROR", f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (address or "
                                          f"shape of {missing} not set)")
        return False
    feeds = {}
    for n in inputs:
        dt, shape = np.dtype(_NP[engine._io[n]["dtype"]]), context._shapes[n]
        raw = (ctypes.c_char * (int(np.prod(shape)) * dt.itemsize)).from_address(context._addresses[n])
        feeds[n] = np.frombuffer(raw, dt).reshape(shape).copy()
    sess = _session(engine)
    expected = _output_shapes(engine, {n: context._shapes[n] for n in inputs})
    for o, value in zip(sess.get_outputs(), sess.run(None, feeds)):
        value = np.ascontiguousarray(value, _NP[engine._io[o.name]["dtype"]])
        assert list(value.shape) == list(expected[o.name]), (o.name, value.shape, expected[o.name])
        ctypes.memmove(context._addresses[o.name], value.ctypes.data, value.nbytes)
    return True


_TEMPLATES = {"ILogger": _ILogger, "IProgressMonitor": _IProgressMonitor, "IInt8Calibrator": _IInt8Calibrator,
              "IInt8EntropyCalibrator2": _IInt8EntropyCalibrator2, "Builder": _Builder, "OnnxParser": _OnnxParser,
              "ParserError": _ParserError, "INetworkDefinition": _INetworkDefinition, "ITensor": _ITensor,
              "IBuilderConfig": _IBuilderConfig, "ITimingCache": _ITimingCache, "Dims": _Dims,
              "IOptimizationProfile": _IOptimizationProfile, "IHostMemory": _HostMemory, "Runtime": _Runtime,
              "ICudaEngine": _ICudaEngine, "EngineInspector": _EngineInspector, "IExecutionContext": _IExecutionContext}
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
    mod = _Module("tensorrt", f"control-flow double of TensorRT {st.version}, not TensorRT (tests/doubles/trt.py)")
    mod._double, mod._touched = st, st.touched
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    mod.__file__ = __file__
    return mod
