"""What the TensorRT double's builder "does": parse the ONNX, run the 10.x calibrator protocol, drive the progress
monitor, describe the layers, and refuse what TensorRT refuses; the result is the engine description (a dict).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

from .checked import DoubleState, _log, _virtual

PLUGIN_OPS = {"EfficientNMS_TRT", "BatchedNMSDynamic_TRT"}
_ONNX_DT = {1: "FLOAT", 10: "HALF", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL", 16: "BF16"}
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
