"""The builder side of the TensorRT double: loggers, calibrators, ``Builder``, ``OnnxParser``, the network, the builder
config, timing caches and optimization profiles. What a build then does is building.py's.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .building import _build, _parse_onnx
from .checked import _ENUM_VALUES, ENGINE_MAGIC, _dims, _host_memory, _log, _Obj, _Subclassable

CACHE_MAGIC = b"trtbuild-test-double-timing-cache\0"


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

    def get_layer(self, index):
        """One "layer" per ONNX node (the double does not fuse or split), typed after the node's operator."""
        return self._st.new("ILayer", _op=self._model.graph.node[index].op_type)


_LAYER_TYPES = {"Conv": "CONVOLUTION", "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE",
                "NonMaxSuppression": "NMS", "EfficientNMS_TRT": "PLUGIN_V2", "Concat": "CONCATENATION",
                "Sigmoid": "ACTIVATION", "Softmax": "SOFTMAX", "Resize": "RESIZE", "MaxPool": "POOLING"}


class _ILayer(_Obj):
    @property
    def type(self):
        return self._st.member("LayerType", _LAYER_TYPES.get(self._op, "ELEMENTWISE"))


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
