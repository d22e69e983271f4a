"""The checked-name machinery of the TensorRT double: every public name read or set is checked against the API list.

``DoubleState`` holds one module's list, the names touched and the switches; ``_Meta``/``_Obj`` check class-level and
instance access, ``_Subclassable``/``_virtual`` are the interfaces Python code subclasses (``ILogger``...), and
``_Enum``, ``_Dims``, ``_HostMemory`` the value types. The classes that implement each TensorRT class are registered
in ``_TEMPLATES`` by the package (``__init__.py``: builder.py's and runtime.py's).
"""

from __future__ import annotations

import re

from ...apicheck import ApiList

ENGINE_MAGIC = b"trtbuild-test-double-engine\0"
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
_PACKAGE = __name__.rpartition(".")[0]  # tests.doubles.trt: the modules whose classes are the double's own
_TEMPLATES: dict[str, type] = {}  # tensorrt qualified class name -> the double's implementation (filled by __init__)


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


def _is_double_module(module) -> bool:
    """Classes defined in this package (the templates) or made by ``DoubleState.cls`` ("tensorrt") are the double's."""
    return module == "tensorrt" or module == _PACKAGE or str(module).startswith(_PACKAGE + ".")


def _defined_by_user(cls: type, name: str) -> bool | None:
    """True when a (user) subclass of a double class defines ``name``; False when the double or a builtin base
    does; None when nobody does."""
    for k in type.__getattribute__(cls, "__mro__"):
        d = type.__getattribute__(k, "__dict__")
        if name in d:
            return issubclass(k, _Obj) and not _is_double_module(d.get("__module__"))
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
