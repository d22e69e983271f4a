"""INT8 for TensorRT's explicit quantization: QuantizeLinear/DequantizeLinear placed where TensorRT fuses them.

TensorRT 11 (and 10 strongly typed) runs INT8 only where the ONNX has Q/DQ pairs, and only fuses them into fast
kernels for particular placements. ONNX Runtime's ``quantize_static`` places Q/DQ for its own CPU kernels (Q/DQ
on op outputs, activations around Sigmoid/Mul, asymmetric uint8 by default), which splits YOLOv8's Conv+SiLU and
Conv+Add fusions, so placement is written here by hand from the calibration ranges. Placement, following the
"Q/DQ Layer-Placement Recommendations" of TensorRT's developer guide (Working with Quantized Types → Explicit
Quantization):

* Conv inputs only: the activation per-tensor symmetric INT8 (zero point 0, scale = amax / 127), the weight
  per output channel (axis 0). Conv outputs get nothing ("do not quantize the outputs of weighted operations"),
  so Conv → Sigmoid → Mul (SiLU) stays one fusable unit; the bias stays float.
* Weights are stored as int8 initializers + DequantizeLinear rather than float + Q + DQ: TensorRT accepts
  both ("when using pre-quantized weights, an IDequantizeLayer is required between the weights and the linear
  operator") and so does ONNX Runtime; the int8 form is 4x smaller, rounds exactly once, here, and does not
  depend on the builder constant-folding a Q over the weights.
* Residual Add (C2f bottleneck ``x + cv2(cv1(x))``): Q/DQ on the skip input only. The guide's rule: "quantize
  the residual input in skip connections": TensorRT fuses the add into the preceding conv, and the precision of
  the residual input decides the precision of the fused output, so an INT8 residual lets the conv write INT8;
  a Q/DQ on the conv-branch input would split the conv from the add (its figure of a suboptimal fusion). The
  skip tensor's Q/DQ is the same pair (same scale) that its other consumers (next conv, C2f Concat) read.
* Concat, MaxPool (SPPF) and Resize (upsample) run in INT8 when every consumer of their output reads INT8:
  their data inputs get Q/DQ, and all tensors joined by them (and by Split) share one scale, the largest amax
  in the group, so TensorRT can move the quantization back into the producing convs without requantizing
  (the guide: Q scales are compared for equality before Q propagates backward across a branch).
* The detection head's decode stays float: everything downstream of the head's output convs (the per-scale
  box/class logits → Reshape/Concat → DFL Softmax + arange Conv → anchor/stride math, values up to the image size;
  the class Sigmoid). The head's output convs are the activation-free convs with no activated conv downstream:
  YOLO11/YOLO26/YOLOv10 also have activation-free convs inside the trunk (attention qkv/pe/proj, SCDown's
  depthwise conv), which are ordinary INT8 convs, not the head. ``exclude_nodes`` keeps more convs float.
* Attention (YOLO11/YOLO26 C2PSA, YOLOv10 PSA): its convs are INT8 like any other; the MatMul → Softmax →
  MatMul between two activations gets no Q/DQ and runs in float (the guide's recommendation quantizes the inputs
  of weighted layers; the Softmax probabilities would lose their small values on a per-tensor INT8 grid).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...errors import InputError
from ...onnx.graph import opset as _opset
from .heads import GraphIndex, decode_conv_reason, float_compute_nodes, head_decode_nodes
from .table import amax as _amax

MIN_OPSET = 13  # DequantizeLinear's ``axis`` (per-channel) exists from opset 13
INT8_MAX = 127.0
_PASSTHROUGH = ("Concat", "MaxPool", "Resize")  # may run INT8 on DQ'd inputs; the output keeps the input scale
_ACT_ZERO_POINT = "qdq_act_zero_point"


@dataclasses.dataclass
class QDQReport:
    """What :func:`quantize_qdq` did; ``to_dict()`` is JSON-ready."""

    convs: int = 0
    quantized_convs: list[str] = dataclasses.field(default_factory=list)
    excluded_convs: dict[str, str] = dataclasses.field(default_factory=dict)  # name → why it stays float
    qdq_pairs: int = 0  # activation Q→DQ pairs (one per quantized tensor, shared by its INT8 consumers)
    weight_per_channel: int = 0  # int8 weight initializers behind a per-channel DequantizeLinear
    residual_adds: list[str] = dataclasses.field(default_factory=list)
    int8_passthrough: list[str] = dataclasses.field(default_factory=list)  # Concat/MaxPool/Resize run INT8
    scale_groups: int = 0
    quantized_tensors: dict[str, float] = dataclasses.field(default_factory=dict)  # tensor → scale
    float_ops: dict[str, str] = dataclasses.field(default_factory=dict)  # MatMul/Softmax left float → why

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return (
            f"{self.convs} Conv, {len(self.quantized_convs)} quantized, {len(self.excluded_convs)} kept float, "
            f"{self.qdq_pairs} activation Q/DQ pairs in {self.scale_groups} scale groups, "
            f"{self.weight_per_channel} per-channel weights, {len(self.residual_adds)} residual adds, "
            f"{len(self.float_ops)} MatMul/Softmax float"
        )

    def float_summary(self) -> str:
        """What stays float, by reason: ``"1 Conv (box decode); 2 MatMul + 1 Softmax (attention)"``."""
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for why in self.excluded_convs.values():
            counts[why.split(":")[0].split(" (")[0]]["Conv"] += 1
        for why in self.float_ops.values():
            op, _, rest = why.partition(", ")
            counts[rest.split(":")[0]][op] += 1
        return "; ".join(" + ".join(f"{n} {op}" for op, n in ops.items()) + f" ({why})"
                         for why, ops in counts.items()) or "nothing"


def prequantized_report(model: onnx.ModelProto) -> QDQReport | None:
    """What a model that already has Q/DQ (a quantization-aware-trained export) quantizes, or None when it has none.

    A conv counts as INT8 when its input and its weight both come from a DequantizeLinear; the others stay float as
    trained (ultralytics' QAT recipe leaves the head's output convs and the DFL float)."""
    g = GraphIndex(model.graph)
    ops = [n.op_type for n in g.nodes]
    if "QuantizeLinear" not in ops and "DequantizeLinear" not in ops:
        return None
    report = QDQReport(qdq_pairs=ops.count("QuantizeLinear"), float_ops=float_compute_nodes(model))
    for conv in (n for n in g.nodes if n.op_type == "Conv"):
        report.convs += 1
        fed = [g.producer.get(i) for i in conv.input[:2]]
        if all(f is not None and f.op_type == "DequantizeLinear" for f in fed):
            report.quantized_convs.append(conv.name)
        else:
            report.excluded_convs[conv.name] = "float as trained (no Q/DQ in the quantization-aware-trained model)"
    return report


def _check_names(model: onnx.ModelProto) -> None:
    names = [n.name for n in model.graph.node]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise InputError("ONNX nodes need unique, non-empty names for Q/DQ placement; re-export the model")


def _weight_of(g: GraphIndex, conv: onnx.NodeProto) -> np.ndarray | None:
    init = g.inits.get(conv.input[1]) if len(conv.input) > 1 else None
    if init is None or init.data_type != TensorProto.FLOAT or len(init.dims) < 3:
        return None
    return numpy_helper.to_array(init)


def sensitivity_candidates(model: onnx.ModelProto) -> list[str]:
    """The Conv node names :func:`quantize_qdq` quantizes by default, in graph order (for the fallback search)."""
    g = GraphIndex(model.graph)
    decode = head_decode_nodes(model)
    return [n.name for n in g.nodes if n.op_type == "Conv" and n.name not in decode and _weight_of(g, n) is not None]


class _Groups:
    """Union-find over tensor names: tensors that must share one INT8 scale."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, names) -> None:
        names = list(names)
        for other in names[1:]:
            self.parent[self.find(other)] = self.find(names[0])


def _plan(g: GraphIndex, ranges, decode: set[str], exclude: set[str], report: QDQReport):
    """Decide which convs are INT8 and which (tensor, consumer, input index) edges read a DQ'd tensor."""
    quantized: list[onnx.NodeProto] = []
    for node in g.nodes:
        if node.op_type != "Conv":
            continue
        report.convs += 1
        if node.name in decode:
            report.excluded_convs[node.name] = decode_conv_reason(g, node)
        elif node.name in exclude:
            report.excluded_convs[node.name] = "excluded by caller (exclude_nodes)"
        elif _weight_of(g, node) is None:
            report.excluded_convs[node.name] = "weight is not a float32 initializer"
        elif node.input[0] not in ranges:
            report.excluded_convs[node.name] = f"no calibration range for its input {node.input[0]!r}"
        else:
            quantized.append(node)
    qnames = {n.name for n in quantized}
    edges: set[tuple[str, str, int]] = {(n.input[0], n.name, 0) for n in quantized}

    for node in g.nodes:  # residual adds: skip input INT8, conv-branch input float
        if node.op_type != "Add" or node.name in decode or any(i in g.inits or not i for i in node.input):
            continue
        branch = []
        for idx, name in enumerate(node.input):
            conv = g.conv_behind(g.producer.get(name))
            branch.append(conv is not None and conv.name in qnames)
        if branch.count(True) == 1:
            skip_idx = branch.index(False)
            if node.input[skip_idx] in ranges:
                edges.add((node.input[skip_idx], node.name, skip_idx))
                report.residual_adds.append(node.name)

    # Concat/MaxPool/Resize run INT8 when every consumer of their output reads INT8 (consumers decided first).
    passthrough: list[onnx.NodeProto] = []
    for node in reversed(g.nodes):
        if node.op_type not in _PASSTHROUGH or node.name in decode or node.output[0] in g.outputs:
            continue
        data = list(node.input) if node.op_type == "Concat" else [node.input[0]]
        users = g.consumers.get(node.output[0], [])
        if users and all((node.output[0], u.name, i) in edges for u, i in users) and all(d in ranges for d in data):
            passthrough.append(node)
            edges.update((d, node.name, i) for i, d in enumerate(data))
    report.int8_passthrough = [n.name for n in reversed(passthrough)]

    groups = _Groups()
    for node in passthrough:
        data = list(node.input) if node.op_type == "Concat" else [node.input[0]]
        groups.union(data + [node.output[0]])
    for node in g.nodes:  # a Split is a slice: its outputs' Q can only move into the producer with one scale
        if node.op_type == "Split" and node.name not in decode:
            groups.union([node.input[0], *node.output])
    return quantized, edges, groups


def _group_scales(edges, groups: _Groups, ranges) -> dict[str, float]:
    """Scale of every quantized tensor: the largest amax among the calibrated tensors of its group, / 127."""
    group_amax: dict[str, float] = defaultdict(float)
    for name in groups.parent:
        if name in ranges:
            root = groups.find(name)
            group_amax[root] = max(group_amax[root], _amax(ranges[name]))
    scales = {}
    for tensor, _, _ in edges:
        amax = max(group_amax.get(groups.find(tensor), 0.0), _amax(ranges[tensor]))
        scales[tensor] = max(amax, 1e-8) / INT8_MAX
    return scales


def _quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel symmetric INT8: (int8 weights, float32 scales of length C_out)."""
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    amax[amax == 0] = 1.0  # an all-zero channel quantizes to zeros with any scale
    scale = (amax / INT8_MAX).astype(np.float32)
    shaped = scale.reshape((-1,) + (1,) * (w.ndim - 1)).astype(np.float64)
    q = np.clip(np.rint(w.astype(np.float64) / shaped), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def _ensure_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    if _opset(model) >= MIN_OPSET:
        return model
    from onnx import version_converter

    return version_converter.convert_version(model, MIN_OPSET)


def quantize_qdq(
    model: onnx.ModelProto,
    ranges: dict[str, tuple[float, float]],
    exclude_nodes: set[str] | frozenset[str] = frozenset(),
) -> tuple[onnx.ModelProto, QDQReport]:
    """Return a copy of ``model`` with TensorRT-fusable INT8 Q/DQ (see the module docstring) and a report.

    ``ranges`` maps activation tensor names to their calibrated (min, max); a conv whose input has no range
    stays float (the report says so). ``exclude_nodes`` names Conv nodes to keep float.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out = _ensure_opset(out)
    _check_names(out)
    graph = out.graph
    g = GraphIndex(graph)
    convs = {n.name for n in g.nodes if n.op_type == "Conv"}
    unknown = sorted(set(exclude_nodes) - convs)
    if unknown:
        raise InputError(f"exclude_nodes names no Conv in this model: {', '.join(unknown[:5])}")

    report = QDQReport()
    decode = head_decode_nodes(out)
    report.float_ops = float_compute_nodes(out)
    quantized, edges, groups = _plan(g, ranges, decode, set(exclude_nodes), report)
    scales = _group_scales(edges, groups, ranges)

    # one scale initializer per distinct scale group, one shared int8 zero point
    new_inits = [numpy_helper.from_array(np.array(0, np.int8), _ACT_ZERO_POINT)]
    scale_names: dict[str, str] = {}
    for tensor in sorted(scales):
        root = groups.find(tensor)
        if root not in scale_names:
            scale_names[root] = f"qdq_act_scale_{len(scale_names)}"
            new_inits.append(numpy_helper.from_array(np.array(scales[tensor], np.float32), scale_names[root]))
    report.scale_groups = len(scale_names)

    dq_name = {t: f"{t}_dequantized" for t in scales}
    qdq_nodes: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # producer (or "" for graph inputs) → Q, DQ
    for tensor in sorted(scales):
        sname = scale_names[groups.find(tensor)]
        q = helper.make_node("QuantizeLinear", [tensor, sname, _ACT_ZERO_POINT], [f"{tensor}_quantized"],
                             name=f"{tensor}_QuantizeLinear")
        dq = helper.make_node("DequantizeLinear", [f"{tensor}_quantized", sname, _ACT_ZERO_POINT], [dq_name[tensor]],
                              name=f"{tensor}_DequantizeLinear")
        prod = g.producer.get(tensor)
        qdq_nodes[prod.name if prod is not None else ""].extend([q, dq])
        report.quantized_tensors[tensor] = float(scales[tensor])
    report.qdq_pairs = len(scales)

    weight_dq: dict[str, onnx.NodeProto] = {}  # conv name → weight DQ node
    done_weights: dict[str, str] = {}
    for conv in quantized:
        wname = conv.input[1]
        if wname not in done_weights:
            q, scale = _quantize_weight(_weight_of(g, conv))
            new_inits += [
                numpy_helper.from_array(q, f"{wname}_int8"),
                numpy_helper.from_array(scale, f"{wname}_scale"),
                numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{wname}_zero_point"),
            ]
            weight_dq[conv.name] = helper.make_node(
                "DequantizeLinear", [f"{wname}_int8", f"{wname}_scale", f"{wname}_zero_point"],
                [f"{wname}_dequantized"], name=f"{wname}_DequantizeLinear", axis=0)
            done_weights[wname] = f"{wname}_dequantized"
            report.weight_per_channel += 1
        report.quantized_convs.append(conv.name)

    # rewire INT8 edges and weights, then lay the nodes out again in topological order
    by_node: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for tensor, node_name, idx in edges:
        by_node[node_name].append((idx, dq_name[tensor]))
    qnames = {c.name for c in quantized}
    nodes = list(qdq_nodes.get("", []))
    for original in g.nodes:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        for idx, name in by_node.get(node.name, []):
            node.input[idx] = name
        if node.name in qnames:
            if node.name in weight_dq:
                nodes.append(weight_dq[node.name])
            node.input[1] = done_weights[node.input[1]]
        nodes.append(node)
        nodes.extend(qdq_nodes.get(node.name, []))
    del graph.node[:]
    graph.node.extend(nodes)

    still_used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    stale_inputs = [i for i in graph.input if i.name in done_weights and i.name not in still_used]
    for vi in stale_inputs:  # IR < 4 lists initializers as graph inputs
        graph.input.remove(vi)
    return out, report
