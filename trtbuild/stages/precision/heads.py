"""Where a YOLO detector's head and box decode are, and which float ops the INT8 placement leaves alone (and why).

The decode (per-scale raw outputs → DFL Softmax + arange Conv → anchor/stride arithmetic, class Sigmoid, output
Concat) stays float: its values reach the image size. YOLOv8's only activation-free convs are the head's raw
outputs and the DFL's; YOLO11/YOLO26 (C2PSA attention: qkv, pe, proj) and YOLOv10 (SCDown's depthwise conv, PSA)
also have activation-free convs inside the trunk, which feed activated convs further down. So the head's raw
output convs are the activation-free convs from which no activated (SiLU) conv can be reached.
"""

from __future__ import annotations

from collections import defaultdict

import onnx


class GraphIndex:
    """Producer/consumer indexes over a graph (names only; the graph is not changed through it)."""

    def __init__(self, graph: onnx.GraphProto):
        self.nodes = list(graph.node)
        self.inits = {i.name: i for i in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.producer: dict[str, onnx.NodeProto] = {}
        self._silu_conv: dict[str, onnx.NodeProto] | None = None
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            for idx, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, idx))

    def silu_of(self, conv: onnx.NodeProto) -> onnx.NodeProto | None:
        """The Mul of the SiLU ``Conv → Sigmoid → Mul(conv, sigmoid)``, or None when the conv has none."""
        out = conv.output[0]
        users = self.consumers.get(out, [])
        for sig, _ in users:
            if sig.op_type != "Sigmoid":
                continue
            for mul, _ in users:
                if mul.op_type == "Mul" and set(mul.input) == {out, sig.output[0]}:
                    return mul
        return None

    def conv_behind(self, node: onnx.NodeProto | None) -> onnx.NodeProto | None:
        """The Conv that produced ``node``'s output: the node itself, or the Conv of the SiLU ending in ``node``."""
        if self._silu_conv is None:
            self._silu_conv = {}
            for conv in (n for n in self.nodes if n.op_type == "Conv"):
                mul = self.silu_of(conv)
                if mul is not None:
                    self._silu_conv[mul.name] = conv
        if node is None:
            return None
        return node if node.op_type == "Conv" else self._silu_conv.get(node.name)

    def descendants(self, tensors) -> set[str]:
        """Names of every node downstream of ``tensors``."""
        seen: set[str] = set()
        todo = list(tensors)
        while todo:
            for node, _ in self.consumers.get(todo.pop(), []):
                if node.name not in seen:
                    seen.add(node.name)
                    todo.extend(node.output)
        return seen



def head_output_convs(g: GraphIndex) -> list[onnx.NodeProto]:
    """The head's raw output convs: activation-free Convs from which no activated (SiLU) Conv can be reached.

    YOLOv8's only activation-free convs are these (per-scale box distributions, class logits) and the DFL's arange
    Conv below them. YOLO11/YOLO26 (C2PSA attention: qkv, pe, proj) and YOLOv10 (SCDown's depthwise conv, PSA)
    have activation-free convs inside the trunk too, but those feed activated convs further down; the head's do not.
    """
    convs = [n for n in g.nodes if n.op_type == "Conv"]
    activated = {n.name for n in convs if g.silu_of(n) is not None}
    return [n for n in convs if n.name not in activated and not (g.descendants(n.output) & activated)]


def head_decode_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes of the head's decode: everything downstream of the head's raw output convs.

    What they feed: Reshape/Concat, DFL Softmax + arange Conv (YOLOv8/YOLO11/YOLOv10; YOLO26 has no DFL),
    anchor/stride arithmetic, the class Sigmoid and the output Concat.
    """
    g = GraphIndex(model.graph)
    return g.descendants(n.output[0] for n in head_output_convs(g))


def head_outputs(model: onnx.ModelProto) -> list[str]:
    """The head's raw per-scale outputs (box distributions, class logits): the tensors the decode starts from."""
    g = GraphIndex(model.graph)
    raw = head_output_convs(g)
    decode = g.descendants(n.output[0] for n in raw)
    return [n.output[0] for n in raw if n.name not in decode]


def decode_conv_reason(g: GraphIndex, conv: onnx.NodeProto) -> str:
    src = g.producer.get(conv.input[0])
    while src is not None and src.op_type in ("Reshape", "Transpose"):
        src = g.producer.get(src.input[0])
    if src is not None and src.op_type == "Softmax":
        return ("box decode: the DFL's fixed arange conv (expected distance over the Softmax bins), whose output "
                "becomes pixel coordinates; float like the rest of the decode")
    return "box decode (downstream of the head's raw output convs)"


def float_compute_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """MatMul/Gemm/Softmax nodes the placement leaves in float → ``"<op>, <category>: <why>"`` (for the report)."""
    g = GraphIndex(model.graph)
    decode = head_decode_nodes(model)
    kept = {}
    for node in g.nodes:
        if node.op_type not in ("MatMul", "Gemm", "Softmax"):
            continue
        if node.name in decode:
            why = "box decode: the DFL's Softmax over the box bins, float like the rest of the decode"
        elif node.op_type == "Softmax":
            why = ("attention: probabilities in 0..1 whose small values a per-tensor INT8 grid rounds away; no Q/DQ, "
                   "TensorRT runs it in float")
        elif all(i not in g.inits for i in node.input):
            why = ("attention: a product of two activations (no weights); only weighted layers' inputs get Q/DQ, "
                   "TensorRT runs it in float")
        else:
            why = "weighted MatMul/Gemm: trtbuild places Q/DQ on Conv inputs only"
        kept[node.name] = f"{node.op_type}, {why}"
    return kept
