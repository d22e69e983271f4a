"""FP16 for strongly typed TensorRT: float16 tensors and explicit Casts written into the ONNX.

TensorRT 11 has no FP16 builder flag: a layer runs in FP16 only where the ONNX types its tensors float16. Every
node goes to FP16 except those that are not safe there, which stay FP32 behind explicit Cast nodes:

* value range: a node whose output exceeded ``max_abs`` on calibration data (the box decode: pixel coordinates
  up to the image size, where FP16's step is 0.5 above 512), plus the arithmetic that computes those values
  (Add/Sub/Mul/Div/Slice/Concat/... back to the first Conv/Softmax/Sigmoid): FP16's error is relative, so
  decoding in grid units and then multiplying by a power-of-two stride loses exactly as much;
* weights beyond FP16's range (|w| > 65504);
* ``block_nodes`` given by the caller; without ``ranges``, the head decode found by graph pattern
  (:func:`trtbuild.stages.precision.heads.head_decode_nodes`) stays FP32 since nothing tells how large its values get.

Which inputs of a node may be float16 is read from the op's ONNX schema (type constraints), so inputs that must
stay float32 (Resize ``scales``; Q/DQ scales before opset 19) keep it. Written by hand instead of
onnxconverter-common's ``convert_float_to_float16``: with ``node_block_list`` its 1.16 release casts the output
of a blocked node to float16 and back between two blocked nodes (a lossy round trip in exactly the decode to
protect; microsoft/onnxconverter-common#326) and it keeps every Resize in FP32 (#208).
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...artifacts import Outputs, StageResult, package_version, run_stage, sha256_file, sha256_json
from ...config import FP16Config
from ...errors import InputError
from ...layout import Layout
from ...onnx.graph import graph_counts, load_onnx
from ...onnx.graph import opset as _opset
from ...onnx.modelinfo import ModelInfo
from .heads import head_decode_nodes
from .ranges import CalibrationData, compute_ranges

FP16_MAX = 65504.0
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
# ops whose FP16 error flows unchanged into a large value they feed: kept FP32 with it
_CHAIN_OPS = {"Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sum", "Max", "Min", "Clip", "Slice", "Concat", "Split",
              "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Gather", "Expand", "Tile", "Identity"}
# ops whose output type comes from an attribute, not from their inputs: left as they are
_ATTR_TYPED = {"ConstantOfShape", "EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike",
               "RandomUniformLike", "Multinomial", "Bernoulli"}


@dataclasses.dataclass
class FP16Report:
    """What :func:`convert_fp16` did; ``to_dict()`` is JSON-ready."""

    max_abs: float | None = None
    keep_io_types: bool = True
    fp16_nodes: int = 0
    kept_fp32: dict[str, str] = dataclasses.field(default_factory=dict)  # node → why it stays FP32
    observed_max: dict[str, float] = dataclasses.field(default_factory=dict)  # node → max |output| seen
    casts: int = 0
    initializers_fp16: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor the type inference knows (inputs, initializers, intermediates, outputs)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                types[node.output[0]] = value.data_type
    return {k: v for k, v in types.items() if v}


def _formals(schema, count: int, outputs: bool) -> list[str]:
    """The type string (type variable or fixed type) of each of ``count`` actual inputs/outputs."""
    params = schema.outputs if outputs else schema.inputs
    result = []
    for i in range(count):
        p = params[min(i, len(params) - 1)] if params else None
        result.append(p.type_str if p is not None else "")
    return result


def _fp16_vars(schema) -> set[str]:
    return {c.type_param_str for c in schema.type_constraints if "tensor(float16)" in c.allowed_type_strs}


def _half(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)


def _const_values(node: onnx.NodeProto, inits: dict) -> list[np.ndarray]:
    vals = [numpy_helper.to_array(inits[i]) for i in node.input if i in inits and inits[i].data_type == F32]
    return vals


def _blocked(model, ranges, max_abs, block_nodes, producer, inits, constants, report) -> dict[str, str]:
    """Nodes that stay FP32, with the reason."""
    kept: dict[str, str] = {}
    for name in block_nodes:
        kept[name] = "explicit block (block_nodes)"
    for node in model.graph.node:
        if node.name in kept:
            continue
        weights = _const_values(node, inits) + [constants[i] for i in node.input if i in constants]
        big = max((float(np.abs(w).max()) for w in weights if w.size), default=0.0)
        if big > FP16_MAX:
            kept[node.name] = f"weight range: |w| up to {big:.4g} > FP16 max {FP16_MAX:g}"
        elif any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            kept[node.name] = "has subgraphs (not converted)"
    if ranges is None:
        for name in sorted(head_decode_nodes(model)):
            kept.setdefault(name, "box decode (graph pattern; no calibration ranges to decide by value)")
        return kept
    if max_abs is None:
        return kept
    seeds = []
    for node in model.graph.node:
        seen = [max(abs(float(ranges[o][0])), abs(float(ranges[o][1]))) for o in node.output if o in ranges]
        if seen and max(seen) > max_abs:
            report.observed_max[node.name] = max(seen)
            if node.name not in kept:
                kept[node.name] = f"value range: |x| up to {max(seen):.1f} > max_abs {max_abs:g}"
                seeds.append(node)
    while seeds:  # the arithmetic computing those values keeps FP32 with them
        node = seeds.pop()
        for name in node.input:
            prod = producer.get(name)
            if prod is not None and prod.op_type in _CHAIN_OPS and prod.name not in kept:
                kept[prod.name] = f"value range: computes {node.name} (relative FP16 error carries into it)"
                seeds.append(prod)
    return kept


def convert_fp16(
    model: onnx.ModelProto,
    ranges: dict[str, tuple[float, float]] | None = None,
    keep_io_types: bool = True,
    max_abs: float | None = 512.0,
    block_nodes=(),
) -> tuple[onnx.ModelProto, FP16Report]:
    """Return an FP16 copy of ``model`` (FP32 where unsafe, see the module docstring) and a report.

    ``ranges``: observed (min, max) per tensor name: the true extremes ("minmax"), not thresholds clipped for
    INT8 (entropy/percentile would hide the decode's largest values). ``keep_io_types``: graph inputs/outputs stay
    float32 (Casts at the edges); False makes them float16. ``block_nodes``: node names kept FP32 regardless.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    names = {n.name for n in graph.node}
    if any(not n for n in names) or len(names) != len(graph.node):
        raise InputError("ONNX nodes need unique, non-empty names for FP16 conversion; re-export the model")
    unknown = sorted(set(block_nodes) - names)
    if unknown:
        raise InputError(f"block_nodes names no node in this model: {', '.join(unknown[:5])}")

    opset = _opset(out)
    types = _types(out)
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: numpy_helper.to_array(next(a.t for a in n.attribute if a.name == "value"))
                 for n in graph.node if n.op_type == "Constant" and any(a.name == "value" for a in n.attribute)}
    producer = {o: n for n in graph.node for o in n.output}
    report = FP16Report(max_abs=max_abs, keep_io_types=keep_io_types)
    kept = _blocked(out, ranges, max_abs, block_nodes, producer, inits, constants, report)
    io_type = F32 if keep_io_types else F16

    # 1. which dtype each edge needs and each node output gets
    home: dict[str, int] = {}  # dtype a tensor is produced with
    need: list[tuple[str, int, str, int]] = []  # (node, input index, tensor, required dtype), float inputs only
    for vi in graph.input:
        if types.get(vi.name) == F32 and vi.name not in inits:
            home[vi.name] = io_type
    for node in graph.node:
        if node.op_type in _ATTR_TYPED:  # float32 by attribute (e.g. a dynamic graph's strides): Cast where needed
            home.update({o: F32 for o in node.output if o and types.get(o) == F32})
            continue
        if node.op_type == "Constant":
            continue
        f16_vars: set[str] = set()
        ins: list[str] = []
        outs: list[str] = []
        if node.name not in kept:
            if node.op_type == "Cast":  # any input type; only the target type changes
                to = next(a for a in node.attribute if a.name == "to")
                if to.i == F32:
                    to.i = F16
                    home[node.output[0]] = F16
                    report.fp16_nodes += 1
                continue
            try:
                schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
            except onnx.defs.SchemaError:
                kept[node.name] = "no ONNX schema (custom op)"
            else:
                f16_vars = _fp16_vars(schema)
                ins = _formals(schema, len(node.input), False)
                outs = _formals(schema, len(node.output), True)
        converted = False
        for idx, name in enumerate(node.input):
            if name and types.get(name) == F32:
                to16 = bool(f16_vars) and ins[idx] in f16_vars
                need.append((node.name, idx, name, F16 if to16 else F32))
                converted |= to16
        for idx, name in enumerate(node.output):
            if name and types.get(name) == F32:
                to16 = bool(f16_vars) and outs[idx] in f16_vars
                home[name] = F16 if to16 else F32
                converted |= to16
        report.fp16_nodes += converted

    # 2. initializers and Constants go FP16 when only FP16 consumers read them (else an FP16 copy / a Cast)
    wants: dict[str, set[int]] = defaultdict(set)
    fp16_copies: set[str] = set()
    for _, _, name, dtype in need:
        wants[name].add(dtype)
    for name, dtypes in wants.items():
        if name in inits and name not in home:
            if dtypes == {F16}:
                inits[name].CopyFrom(numpy_helper.from_array(_half(numpy_helper.to_array(inits[name])), name))
                home[name] = F16
                report.initializers_fp16 += 1
            elif F16 in dtypes:
                half = _half(numpy_helper.to_array(inits[name]))
                graph.initializer.append(numpy_helper.from_array(half, f"{name}_fp16"))
                fp16_copies.add(name)
                home[name] = F32
                report.initializers_fp16 += 1
            else:
                home[name] = F32
        elif name in constants and name not in home:
            node = producer[name]
            if dtypes == {F16}:
                attr = next(a for a in node.attribute if a.name == "value")
                attr.t.CopyFrom(numpy_helper.from_array(_half(constants[name]), attr.t.name))
                home[name] = F16
            else:
                home[name] = F32

    # 3. graph outputs: rename the producer's tensor when the output's dtype differs from what it is produced in
    renamed: dict[str, str] = {}
    final_casts = []
    for vi in graph.output:
        if types.get(vi.name) != F32 or vi.name not in home:
            continue
        vi.type.tensor_type.elem_type = io_type
        if home[vi.name] != io_type:
            inner = f"{vi.name}_{'fp16' if home[vi.name] == F16 else 'fp32'}"
            renamed[vi.name] = inner
            home[inner] = home.pop(vi.name)
            final_casts.append(helper.make_node("Cast", [inner], [vi.name], name=f"{vi.name}_Cast", to=io_type))
    for vi in graph.input:  # (IR < 4 also lists initializers as inputs)
        if vi.name in home:
            vi.type.tensor_type.elem_type = home[vi.name]
        elif vi.name in inits:
            vi.type.tensor_type.elem_type = inits[vi.name].data_type

    # 4. lay the nodes out again with a Cast before every edge whose dtypes differ (one Cast per tensor and dtype)
    casts: dict[tuple[str, int], str] = {}
    required = {(n, i): d for n, i, _, d in need}
    nodes = []
    for node in graph.node:
        for idx, name in enumerate(node.input):
            name = renamed.get(name, name)
            node.input[idx] = name
            dtype = required.get((node.name, idx))
            if dtype is None or home.get(name, dtype) == dtype:
                continue
            if name in fp16_copies and dtype == F16:
                node.input[idx] = f"{name}_fp16"
                continue
            key = (name, dtype)
            if key not in casts:
                casts[key] = f"{name}_to_{'fp16' if dtype == F16 else 'fp32'}"
                nodes.append(helper.make_node("Cast", [name], [casts[key]], name=f"{casts[key]}_Cast", to=dtype))
            node.input[idx] = casts[key]
        for idx, name in enumerate(node.output):
            node.output[idx] = renamed.get(name, name)
        nodes.append(node)
    nodes.extend(final_casts)
    report.casts = len(casts) + len(final_casts)
    new_nodes = [onnx.NodeProto() for _ in nodes]
    for dst, src in zip(new_nodes, nodes):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(new_nodes)
    for name in sorted(kept):
        report.kept_fp32[name] = kept[name]

    del graph.value_info[:]  # stale float32 entries; re-inferred below with the new types
    return onnx.shape_inference.infer_shapes(out, check_type=True, strict_mode=True), report


# ---------------------------------------------------------------------------------------------------- the stage
STAGE_VERSION = 1


def fp16_ranges(sim_onnx: Path, images: list[Path], imgsz: tuple[int, int]) -> dict[str, tuple[float, float]]:
    """Observed min/max of every tensor on ``images`` (minmax over letterboxed batches of 8)."""
    return compute_ranges(sim_onnx, CalibrationData(images, imgsz, batch=8), method="minmax")


def fp16(sim_onnx: str | os.PathLike, config: FP16Config = FP16Config()) -> StageResult:
    """``<name>.sim.onnx`` → ``<name>.fp16.onnx`` (+ ``<name>.fp16.json``): FP16 where safe, FP32 decode.

    Without ``config.images`` the decode is found by graph pattern instead of by observed values."""
    cfg = config
    src = Path(sim_onnx)
    layout = Layout.of(src)
    out = layout.fp16
    images = list(cfg.images[: cfg.range_images])
    hw = ModelInfo.of_onnx(src).run_hw(cfg.imgsz)
    key = sha256_json({
        "stage": "fp16", "stage_version": STAGE_VERSION, "model": sha256_file(src),
        "images": [sha256_file(p) for p in images], "imgsz": list(hw),
        "max_abs": cfg.max_abs, "keep_io_types": cfg.keep_io_types, "onnx": package_version("onnx"),
    })

    def make(outputs: Outputs) -> dict:
        ranges = fp16_ranges(src, images, hw) if images else None
        converted, rep = convert_fp16(load_onnx(src), ranges, keep_io_types=cfg.keep_io_types, max_abs=cfg.max_abs)
        tmp = outputs.path(out, ".onnx")
        onnx.save(converted, str(tmp))
        return {"input": str(src), "output": str(out), "max_abs": cfg.max_abs, "keep_io_types": cfg.keep_io_types,
                "range_images": len(images), **graph_counts(converted), "conversion": rep.to_dict(),
                "bytes": tmp.stat().st_size}

    return run_stage("fp16", key, layout.typed_report("fp16"), out, make, cfg.force, inputs={"model": src},
                     overwrite=cfg.overwrite)
