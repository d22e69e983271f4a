"""trtbuild's Q/DQ ONNX run in torch, with its INT8 rounding and activation scales as trainable parameters.

The learned reconstruction (``reconstruct.py``) trains on the very graph the int8 stage wrote, so the placement
(which tensors are quantized, which scales are shared across Concat/MaxPool/Resize/Split, per-channel weights,
float decode and attention) is the one TensorRT will build; nothing is re-derived from a torch model. Each
weight ``DequantizeLinear`` of an int8 initializer becomes :class:`WeightRounding` (AdaRound: the float weight,
its per-channel scale and a soft rounding variable per element), each activation ``QuantizeLinear`` a fake
quantizer whose scale is one :class:`ActScale` per scale initializer (so a shared scale stays shared).

``run(env, nodes, quant)`` evaluates a list of nodes on a dict of tensors: ``quant=False`` is the FP32 model
(Q/DQ pass values through, weights float: the simplified ONNX it came from), ``quant=True`` the INT8 model as
ONNX Runtime runs it (round half to even, saturate to [-128, 127]). Only the ops of ultralytics detection
exports are implemented; any other op is an ``InputError`` naming it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import InputError

ZETA, GAMMA = 1.1, -0.1  # AdaRound's rectified sigmoid stretch
INT8_MIN, INT8_MAX = -128.0, 127.0


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fake_quant(x, scale, drop: float = 0.0):
    """``DequantizeLinear(QuantizeLinear(x))`` with a straight-through round (LSQ's gradient for ``scale``);
    ``drop`` > 0 keeps each element float with that probability (QDrop)."""
    import torch

    z = x / scale
    q = torch.clamp(z + (torch.round(z) - z).detach(), INT8_MIN, INT8_MAX) * scale
    if drop > 0:
        q = torch.where(torch.rand_like(x) < drop, x, q)
    return q


def _modules():
    """The torch modules, defined on first use (torch is imported inside functions only)."""
    import torch
    from torch import nn

    class WeightRounding(nn.Module):
        """Per-channel symmetric INT8 weight ``scale · clamp(q, ±127)``. Rounding ``round``: AdaRound, ``q = floor(w/
        scale) + h`` with ``h`` a soft rounding in [0, 1] that starts at the exact fraction (the float weight);
        ``free``: AdaQuant-style, ``q = round(w/scale + delta)`` with a free offset ``delta`` (straight-through
        round). :meth:`harden` fixes ``q``."""

        def __init__(self, w: np.ndarray, scale: np.ndarray, q: np.ndarray | None = None):
            super().__init__()
            shape = (-1,) + (1,) * (w.ndim - 1)
            wt = torch.from_numpy(w.astype(np.float32))
            s = torch.from_numpy(scale.astype(np.float32)).reshape(shape)
            self.register_buffer("w", wt)
            self.register_buffer("scale", s)
            self.register_buffer("floor", torch.floor(wt / s))
            rest = (wt / s - self.floor).clamp(1e-4, 1 - 1e-4)
            self.alpha = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
            self.delta = nn.Parameter(torch.zeros_like(wt))
            self.free = False
            # the fixed integer grid values: the model's own int8 weights until a fit releases them (None)
            self.hard: torch.Tensor | None = None if q is None else torch.from_numpy(q.astype(np.float32))

        def soft(self):
            return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)

        def forward(self, quant: bool):
            if not quant:
                return self.w
            if self.hard is not None:
                return self.scale * self.hard
            if self.free:
                z = self.w / self.scale + self.delta
                return self.scale * torch.clamp(z + (torch.round(z) - z).detach(), -127, 127)
            return self.scale * torch.clamp(self.floor + self.soft(), -127, 127)

        def regularizer(self, beta: float):
            return (1 - (2 * self.soft() - 1).abs().pow(beta)).sum()

        def harden(self, nearest: bool = False):
            """Fix the integers: the learned ones, or round-to-nearest of the float weight (``nearest``)."""
            with torch.no_grad():
                frac = self.w / self.scale - self.floor
                if nearest:
                    q = self.floor + (frac >= 0.5).float()
                elif self.free:
                    q = torch.round(self.w / self.scale + self.delta)
                else:
                    q = self.floor + (self.alpha >= 0).float()
                self.hard = torch.clamp(q, -127, 127)

        def int8(self) -> np.ndarray:
            if self.hard is None:
                self.harden()
            return self.hard.detach().numpy().astype(np.int8)

    class ActScale(nn.Module):
        """One activation scale (shared by every tensor quantized with it), trainable (LSQ)."""

        def __init__(self, scale: float):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(float(scale)))

        def forward(self, x, drop: float = 0.0):
            return fake_quant(x, self.scale.abs() + 1e-12, drop)

    return WeightRounding, ActScale


class TorchGraph:
    """The Q/DQ ONNX ``qmodel`` as torch computations; ``float_weights`` maps the simplified ONNX's initializers
    (each quantized weight's original name, ``X`` of ``X_int8``, and the biases) to their FP32 values."""

    def __init__(self, qmodel: onnx.ModelProto, float_weights: dict[str, np.ndarray]):
        import torch

        WeightRounding, ActScale = _modules()
        inits = {i.name: i for i in qmodel.graph.initializer}
        self.nodes = list(qmodel.graph.node)
        self.inputs = [i.name for i in qmodel.graph.input if i.name not in inits]
        self.outputs = [o.name for o in qmodel.graph.output]
        self.consts: dict = {}
        self.weights: dict[str, WeightRounding] = {}  # weight DQ output → rounding
        self.weight_init: dict[str, str] = {}  # weight DQ output → int8 initializer name
        self.scales: dict[str, ActScale] = {}  # scale initializer name → trainable scale
        self.act_q: dict[str, str] = {}  # Q output → its scale initializer name
        self.producer = {o: n for n in self.nodes for o in n.output}
        for node in self.nodes:
            if node.op_type == "DequantizeLinear" and node.input[0] in inits:
                q, s = (numpy_helper.to_array(inits[i]) for i in node.input[:2])
                original = node.input[0].removesuffix("_int8")
                if q.dtype != np.int8 or original not in float_weights:
                    raise InputError(f"{node.name}: not a trtbuild per-channel int8 weight (no float weight "
                                     f"{original!r} in the simplified ONNX); rerun the int8 stage")
                self.weights[node.output[0]] = WeightRounding(float_weights[original], s, q)
                self.weight_init[node.output[0]] = node.input[0]
            elif node.op_type == "QuantizeLinear":
                sname = node.input[1]
                if sname not in self.scales:
                    self.scales[sname] = ActScale(float(numpy_helper.to_array(inits[sname])))
                self.act_q[node.output[0]] = sname
        used = {i for n in self.nodes for i in n.input}
        for name, init in inits.items():
            if name in used and name not in self.weight_init.values():
                arr = numpy_helper.to_array(init)
                self.consts[name] = torch.from_numpy(np.array(arr)) if arr.dtype != np.int8 else None
        for node in self.nodes:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = torch.from_numpy(np.array(numpy_helper.to_array(_attrs(node)["value"])))
        uses = {}
        for node in self.nodes:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
        self.biases: dict[str, torch.nn.Parameter] = {}  # bias of one INT8 conv → trainable (stays float)
        for node in self.nodes:
            if node.op_type == "Conv" and node.input[1] in self.weights and len(node.input) > 2:
                bias = node.input[2]
                if bias in inits and uses.get(bias) == 1 and self.consts.get(bias) is not None:
                    self.biases[bias] = torch.nn.Parameter(self.consts[bias].float().clone())
                    if bias in float_weights:  # FP32 keeps the simplified ONNX's bias (a fitted model has its own)
                        self.consts[bias] = torch.from_numpy(np.array(float_weights[bias], np.float32))

    def parameters(self, nodes=None) -> tuple[list, list]:
        """(AdaRound variables, activation scales) used by ``nodes`` (all nodes when None)."""
        nodes = self.nodes if nodes is None else nodes
        outs = {o for n in nodes for o in n.output}
        names = {n.input[1] for n in nodes if n.op_type == "QuantizeLinear"}
        return ([w.alpha for k, w in self.weights.items() if k in outs],
                [self.scales[s].scale for s in sorted(names)])

    def weights_of(self, nodes) -> list:
        outs = {o for n in nodes for o in n.output}
        return [w for k, w in self.weights.items() if k in outs]

    def biases_of(self, nodes) -> list:
        names = {i for n in nodes if n.op_type == "Conv" for i in n.input[2:]}
        return [b for k, b in self.biases.items() if k in names]

    def run(self, env: dict, nodes=None, quant: bool = True, drop: float = 0.0) -> dict:
        """Evaluate ``nodes`` (default: all) in order, reading and writing ``env`` (tensor name → torch tensor)."""
        for node in (self.nodes if nodes is None else nodes):
            if node.op_type == "Constant":
                continue
            if node.output[0] in self.weights:
                env[node.output[0]] = self.weights[node.output[0]](quant)
                continue
            args = [env[i] if i in env else self.consts.get(i) if i else None for i in node.input]
            if quant and node.op_type == "Conv" and len(node.input) > 2 and node.input[2] in self.biases:
                args[2] = self.biases[node.input[2]]  # the INT8 model's bias may be fitted; FP32 keeps its own
            if node.op_type == "QuantizeLinear":
                sc = self.scales[node.input[1]]
                env[node.output[0]] = sc(args[0], drop) if quant else args[0]
            elif node.op_type == "DequantizeLinear":
                env[node.output[0]] = args[0]  # the Q before it already dequantized (fake quantization)
            else:
                outs = _op(node, args)
                for name, value in zip(node.output, outs if isinstance(outs, (list, tuple)) else [outs]):
                    env[name] = value
        return env


def _ints(t) -> list[int]:
    return [int(v) for v in np.asarray(t.detach().cpu() if hasattr(t, "detach") else t).reshape(-1)]


def _op(node: onnx.NodeProto, args: list):
    import torch
    import torch.nn.functional as F

    a, op = _attrs(node), node.op_type
    if op == "Conv":
        pads = a.get("pads", [0, 0, 0, 0])
        half = len(pads) // 2
        x = args[0]
        if pads[:half] != pads[half:]:
            x = F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])])
            pads = [0] * len(pads)
        return F.conv2d(x, args[1], args[2] if len(args) > 2 else None, a.get("strides", 1), pads[:half],
                        a.get("dilations", 1), a.get("group", 1))
    if op == "Sigmoid":
        return torch.sigmoid(args[0])
    if op in ("Mul", "Add", "Sub", "Div"):
        x, y = args
        return {"Mul": torch.mul, "Add": torch.add, "Sub": torch.sub, "Div": torch.div}[op](x, y)
    if op == "Concat":
        return torch.cat(args, dim=a["axis"])
    if op == "Split":
        sizes = _ints(args[1]) if len(args) > 1 and args[1] is not None else a.get("split")
        if sizes is None:
            n = a.get("num_outputs", len(node.output))
            sizes = [args[0].shape[a.get("axis", 0)] // n] * n
        return torch.split(args[0], sizes, dim=a.get("axis", 0))
    if op == "MaxPool":
        pads = a.get("pads", [0, 0, 0, 0])
        return F.max_pool2d(args[0], a["kernel_shape"], a.get("strides", 1), pads[: len(pads) // 2],
                            a.get("dilations", 1), bool(a.get("ceil_mode", 0)))
    if op == "Resize":
        if a.get("mode", b"nearest") != b"nearest":
            raise InputError(f"{node.name}: Resize mode {a.get('mode')!r} is not supported by the reconstruction")
        if len(args) > 2 and args[2] is not None and args[2].numel():
            scale = [float(v) for v in args[2].reshape(-1)[2:]]
            return F.interpolate(args[0], scale_factor=scale, mode="nearest")
        return F.interpolate(args[0], size=_ints(args[3])[2:], mode="nearest")
    if op == "Reshape":
        shape = _ints(args[1])
        shape = [args[0].shape[i] if (v == 0 and not a.get("allowzero", 0)) else v for i, v in enumerate(shape)]
        if shape and shape[0] == 1 and args[0].shape[0] != 1:  # a static batch-1 export run on a batch: dim 0
            shape[0] = args[0].shape[0]  # is the batch in every Reshape of ultralytics' heads and attention
        return args[0].reshape(shape)
    if op == "Transpose":
        return args[0].permute(a["perm"])
    if op == "Softmax":
        return torch.softmax(args[0], dim=a.get("axis", -1))
    if op == "MatMul":
        return torch.matmul(args[0], args[1])
    if op == "Slice":
        x = args[0]
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
        index = [slice(None)] * x.dim()
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[ax] = slice(s, min(e, x.shape[ax]), st)
        return x[tuple(index)]
    raise InputError(f"{node.name}: ONNX op {op} is not supported by the INT8 reconstruction (supported: the ops of "
                     "ultralytics detection exports)")
