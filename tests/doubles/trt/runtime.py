"""The runtime side of the TensorRT double: ``Runtime``, ``ICudaEngine``, ``EngineInspector``, ``IExecutionContext``,
the module functions ``nptype`` / ``init_libnvinfer_plugins``, the inspector JSON and the execution on host memory.
"""

from __future__ import annotations

import ctypes
import json
import struct

import numpy as np

from .building import _shape
from .checked import ENGINE_MAGIC, DoubleState, _dims, _host_memory, _log, _Obj

_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
       "BOOL": np.bool_, "UINT8": np.uint8}
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
