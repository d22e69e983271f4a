"""Learned INT8 reconstruction of trtbuild's Q/DQ ONNX: the int8 weights (AdaQuant: free, straight-through;
AdaRound: each rounded up or down), the float biases and the activation scales (LSQ) fitted on calibration images
so the INT8 model's outputs match the FP32 model's, with QDrop's random drop of activation quantization while
fitting.

Why our own code and not a library: AIMET ONNX (``aimet-onnx`` 2.42) and AMD Quark ONNX (``amd-quark`` 0.13) both
install and run on the CPU and offer AdaRound/AdaQuant, but each fits one layer at a time on its own quantization
simulation: AIMET's quantsim quantizes op outputs by its own config (215 quantizers on the reference model where
trtbuild places 84: conv inputs, skip inputs, one scale shared across Concat/MaxPool/Resize) and its AdaRound
fits weights only, per layer, with the activation encodings fixed; Quark's fast finetune wants float weights
behind Q→DQ (trtbuild writes int8 initializers), ends a conv's loss at one consumer (SiLU's Sigmoid+Mul is not
one of its activations) and pins onnx ≤ 1.22. A per-conv loss is what the closed-form per-conv least squares
already tried (no gain). Here the training runs on the very Q/DQ graph the int8 stage wrote (``torchgraph.py``),
so the placement TensorRT builds is the one trained, and the result is written back in the same form: int8
weight initializers, float biases and activation scales (shared scales stay shared).

Two granularities (``Schedule.mode``):

* ``network`` (what ``--reconstruct`` runs): every parameter at once, on :func:`head_loss`, a detection-aware error
  of the head's raw outputs (class probabilities; box sides in grid units through the DFL, weighted by the FP32
  confidence, so background anchors whose boxes are never kept do not count), on random ``crop`` × ``crop``
  windows of a ``batch`` of the calibration images (the FP32 target computed on the same window);
* ``blocks`` (BRECQ): ultralytics' top-level modules (``/model.N/``, the head split into its per-scale branches)
  fitted one after the other, each block's output under INT8 (with the fitted INT8 blocks upstream) matched to
  FP32's; Q/DQ, weight and constant nodes belong to the block of their first consumer, a scale shared by several
  blocks is fitted by the first; features cached in float16 for every image on both paths.

Where a Reshape bakes the spatial size in (attention), whole images are used instead of crops.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from ...console import progress_bar
from .heads import head_decode_nodes, head_outputs
from .torchgraph import TorchGraph

_BLOCK = re.compile(r"^/model\.(\d+)/(?:(cv\d\.\d+)/)?")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """What the reconstruction fits and how long; the defaults are ``--reconstruct adaquant``'s."""

    iters: int = 1200  # optimizer steps (per block in blocks mode)
    batch: int = 4
    crop: int = 320  # fitted window of the input, pixels (multiple of 32; 0 = whole images)
    mode: str = "network"  # network: every parameter at once on head_loss; blocks: block by block (BRECQ)
    weights: str = "free"  # free: AdaQuant (straight-through offsets); round: AdaRound (±1 step from the float weight)
    bias: bool = True  # also fit the convs' (float) biases
    scales: bool = True  # also fit the activation scales (LSQ)
    drop: float = 0.0  # QDrop: probability that an activation stays float while fitting
    cosine: bool = True  # network mode: learning rates decayed to 0 (cosine) over the steps
    per_scale: bool = True  # network mode: head_loss normalized per scale (else pooled over the scales)
    lr_weight: float = 0.02  # free weights: the offsets' learning rate, in INT8 steps
    lr_round: float = 1e-3
    lr_scale: float = 4e-5
    lr_bias: float = 1e-4
    round_weight: float = 0.01  # AdaRound's rounding regularizer weight
    warmup: float = 0.2  # share of steps before the regularizer starts
    beta: tuple[float, float] = (20.0, 2.0)  # the regularizer's annealed exponent
    seed: int = 0


def _blocks(g: TorchGraph) -> list[tuple[str, list]]:
    """Nodes grouped into blocks, in graph order (see the module docstring)."""
    head = max((int(m.group(1)) for n in g.nodes if (m := _BLOCK.match(n.name))), default=-1)
    consumers = defaultdict(list)
    for i, node in enumerate(g.nodes):
        for name in node.input:
            consumers[name].append(i)
    key: dict[int, str] = {}
    for i in reversed(range(len(g.nodes))):
        node = g.nodes[i]
        m = _BLOCK.match(node.name)
        if m:
            key[i] = m.group(1) + (f"/{m.group(2)}" if m.group(2) and int(m.group(1)) == head else "")
        else:  # Q/DQ, weight DQ, Constant: the block of the first consumer
            users = sorted(j for o in node.output for j in consumers[o])
            key[i] = key[users[0]] if users else "_"
    groups, last = defaultdict(list), {}
    for i, node in enumerate(g.nodes):
        groups[key[i]].append(node)
        last[key[i]] = i
    return [(k, groups[k]) for k in sorted(groups, key=last.get)]  # by last node: the decode after every branch


def _io(nodes, g: TorchGraph, later_inputs: set[str]) -> tuple[list[str], list[str]]:
    made = {o for n in nodes for o in n.output}
    used = {i for n in nodes for i in n.input if i}
    inputs = sorted(u for u in used - made if u not in g.consts and u not in g.weight_init.values())
    outputs = sorted(m for m in made if (m in later_inputs or m in g.outputs) and m not in g.consts)
    return inputs, outputs


def _crop_box(s: "Schedule", hw, nodes, gen) -> tuple[int, int, int, int]:
    """A random ``(y0, x0, h, w)`` window of the input on the 32-pixel grid: ``s.crop`` square, or the whole image
    where a Reshape of ``nodes`` bakes the spatial size in (attention)."""
    import torch

    if not s.crop or any(nd.op_type == "Reshape" for nd in nodes):
        return 0, 0, int(hw[0]), int(hw[1])
    c = min(s.crop, *hw)
    y0 = int(torch.randint(0, (hw[0] - c) // 32 + 1, (1,), generator=gen)) * 32
    x0 = int(torch.randint(0, (hw[1] - c) // 32 + 1, (1,), generator=gen)) * 32
    return y0, x0, c, c


def _crop(t, box, hw):
    if t.dim() != 4:
        return t
    (y0, x0, ch, cw), (h, w) = box, hw
    sy, sx = h // t.shape[2], w // t.shape[3]
    return t[:, :, y0 // sy : (y0 + ch) // sy, x0 // sx : (x0 + cw) // sx]


def _pairs(outs: list[str], env: dict) -> list[tuple[str | None, str | None]]:
    """(box, class) head outputs per scale, matched by spatial size; ultralytics names the box branch ``cv2``."""
    by_hw: dict = defaultdict(lambda: [None, None])
    for o in outs:
        by_hw[tuple(env[o].shape[2:])][0 if "/cv2." in o else 1] = o
    return [tuple(v) for v in by_hw.values()]


def head_loss(got: dict, target: dict, outs: list[str], per_scale: bool = True):
    """Detection-aware error of the head's raw outputs: the squared error of the class probabilities over every
    anchor, plus the error of the box sides in grid units (the DFL's expectation; raw where there is no DFL) weighted
    by the FP32 confidence at that anchor (background boxes are never kept), per unit of FP32 confidence (≈ per
    object, + 1 so a window without objects does not blow up its few errors): of each scale (``per_scale``: large
    and small objects count alike), or of all scales pooled."""
    import torch

    total, errors, norm = 0.0, 0.0, 1.0
    for box, cls in _pairs(outs, target):
        conf = torch.sigmoid(target[cls]).amax(1, keepdim=True) if cls else None
        err_s = 0.0
        if cls:
            err_s = ((torch.sigmoid(got[cls]) - torch.sigmoid(target[cls])) ** 2).sum()
        if box:
            b, c, h, w = target[box].shape
            bins = c // 4

            def sides(t):
                if bins == 1:
                    return t
                p = torch.softmax(t.reshape(b, 4, bins, h, w), 2)
                return (p * torch.arange(bins, dtype=t.dtype).reshape(1, 1, bins, 1, 1)).sum(2)

            err = (sides(got[box]) - sides(target[box])).abs().sum(1, keepdim=True)
            err_s = err_s + ((err * conf).sum() if cls else err.mean())
        if per_scale:
            total = total + err_s / (1.0 + (conf.sum() if cls else 0.0))
        else:
            errors, norm = errors + err_s, norm + (conf.sum() if cls else 0.0)
    return total if per_scale else errors / norm


def _groups(s: "Schedule", weights: list, scales: list, biases: list) -> list[dict]:
    """The optimizer's parameter groups: the rounding (AdaRound) or offsets (free), scales, biases."""
    for w in weights:
        w.free, w.hard = s.weights == "free", None  # released from the model's int8 values, fitted from the float
    groups = [{"params": [w.delta if w.free else w.alpha for w in weights],
               "lr": s.lr_weight if s.weights == "free" else s.lr_round}] if weights else []
    groups += [{"params": scales, "lr": s.lr_scale}] if scales else []
    groups += [{"params": biases, "lr": s.lr_bias}] if biases and s.bias else []
    return groups


def _network(g: TorchGraph, images, s: "Schedule", gen, decode: set[str], outs: list[str], progress: bool) -> dict:
    """Every rounding and scale fitted at once on :func:`head_loss` (crops of the calibration images)."""
    import torch

    nodes = [nd for nd in g.nodes if nd.name not in decode]
    _, scales = g.parameters(nodes)
    weights = g.weights_of(nodes)
    opt = torch.optim.Adam(_groups(s, weights, scales if s.scales else [], g.biases_of(nodes)))
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(s.iters, 1)) if s.cosine else None
    n, hw = images.shape[0], images.shape[2:]
    warm = int(s.warmup * s.iters)
    losses = []
    for it in progress_bar(range(s.iters), desc="reconstruct", unit="step", disable=not progress):
        idx = torch.randint(0, n, (s.batch,), generator=gen)
        x = _crop(images[idx], _crop_box(s, hw, nodes, gen), hw).float()
        with torch.no_grad():
            target = g.run({g.inputs[0]: x}, nodes, quant=False)
        got = g.run({g.inputs[0]: x}, nodes, quant=True, drop=s.drop)
        rec = head_loss(got, target, outs, s.per_scale)
        loss = rec
        if it >= warm and s.weights == "round":
            beta = s.beta[1] + (s.beta[0] - s.beta[1]) * (1 - (it - warm) / max(s.iters - warm, 1))
            loss = loss + s.round_weight * sum(w.regularizer(beta) for w in weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if decay is not None:
            decay.step()
        losses.append(float(rec.detach()))
    for w in weights:
        w.harden()
    k = max(len(losses) // 10, 1)
    return {"loss_first": round(float(np.mean(losses[:k])), 6), "loss_last": round(float(np.mean(losses[-k:])), 6)}


def reconstruct(qmodel: onnx.ModelProto, float_model: onnx.ModelProto, images: np.ndarray,
                schedule: Schedule = Schedule(), progress: bool = False) -> tuple[onnx.ModelProto, dict]:
    """Fit ``qmodel`` (trtbuild's Q/DQ ONNX of ``float_model``) on ``images`` [N,3,H,W] float32 or float16
    (letterboxed calibration images); returns the model with learned int8 weights, biases and activation scales,
    and a report."""
    import torch

    s = schedule
    t_start = time.perf_counter()
    gen = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    g = TorchGraph(qmodel, {i.name: numpy_helper.to_array(i) for i in float_model.graph.initializer})
    if s.mode == "network":
        info = _network(g, torch.from_numpy(images).half(), s, gen, head_decode_nodes(qmodel),
                        head_outputs(qmodel), progress)
        out = _write_back(qmodel, g)
        return out, {"schedule": dataclasses.asdict(s), "images": int(images.shape[0]), **info,
                     "changed_weights": _changed(qmodel, out), "seconds": round(time.perf_counter() - t_start, 1)}
    blocks = _blocks(g)
    ios, needed_after = [], []
    for b in range(len(blocks)):
        later = {i for _, nodes in blocks[b + 1:] for n in nodes for i in n.input}
        ios.append(_io(blocks[b][1], g, later))
        needed_after.append(later)
    n, hw = images.shape[0], images.shape[2:]
    cache_f = {g.inputs[0]: torch.from_numpy(images).half()}
    cache_q = {g.inputs[0]: cache_f[g.inputs[0]]}
    trained_scales: set[str] = set()
    rows = []
    for b, (name, nodes) in enumerate(progress_bar(blocks, desc="reconstruct", unit="block", disable=not progress)):
        inputs, outputs = ios[b]
        alphas, _ = g.parameters(nodes)
        if not alphas and not any(o in needed_after[b] for o in outputs):
            continue  # the decode: nothing to fit, nothing needed downstream
        scale_names = sorted({nd.input[1] for nd in nodes if nd.op_type == "QuantizeLinear"} - trained_scales)
        weights = g.weights_of(nodes)
        scales = [g.scales[k].scale for k in scale_names] if s.scales else []
        loss_outs = [o for o in outputs if o not in g.act_q and not o.endswith("_dequantized")] or outputs
        row = {"block": name, "convs": len(weights), "scales": len(scale_names)}
        if (alphas or scales) and s.iters > 0:
            opt = torch.optim.Adam(_groups(s, weights, scales, g.biases_of(nodes)))
            before = after = None
            for it in range(s.iters):
                idx = torch.randint(0, n, (s.batch,), generator=gen)
                box = _crop_box(s, hw, nodes, gen)
                feed_q = {t: _crop(cache_q[t][idx], box, hw).float() for t in inputs}
                feed_f = {t: _crop(cache_f[t][idx], box, hw).float() for t in inputs}
                with torch.no_grad():
                    target = g.run(feed_f, nodes, quant=False)
                got = g.run(feed_q, nodes, quant=True, drop=s.drop)
                rec = sum(((got[o] - target[o]) ** 2).sum(1).mean() for o in loss_outs)
                loss = rec
                warm = int(s.warmup * s.iters)
                if weights and it >= warm and s.weights == "round":
                    frac = (it - warm) / max(s.iters - warm, 1)
                    beta = s.beta[1] + (s.beta[0] - s.beta[1]) * (1 - frac)
                    loss = loss + s.round_weight * sum(w.regularizer(beta) for w in weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
                before = float(rec.detach()) if before is None else before
                after = float(rec.detach())
            row.update(rec_first=round(before, 6), rec_last=round(after, 6))
        for w in weights:
            w.harden()
        trained_scales.update(scale_names)
        with torch.no_grad():  # propagate every image through the fitted block, on both paths
            keep = [o for o in outputs if o in needed_after[b]]
            res_f = {o: [] for o in keep}
            res_q = {o: [] for o in keep}
            for start in range(0, n, 8):
                sl = slice(start, start + 8)
                ef = g.run({t: cache_f[t][sl].float() for t in inputs}, nodes, quant=False)
                eq = g.run({t: cache_q[t][sl].float() for t in inputs}, nodes, quant=True)
                for o in keep:
                    res_f[o].append(ef[o].half())
                    res_q[o].append(eq[o].half())
            for o in keep:
                cache_f[o], cache_q[o] = torch.cat(res_f[o]), torch.cat(res_q[o])
        for t in list(cache_f):
            if t not in needed_after[b]:
                del cache_f[t], cache_q[t]
        rows.append(row)
    out = _write_back(qmodel, g)
    report = {"schedule": dataclasses.asdict(s), "images": int(n), "blocks": rows,
              "changed_weights": _changed(qmodel, out), "seconds": round(time.perf_counter() - t_start, 1)}
    return out, report


def _write_back(qmodel: onnx.ModelProto, g: TorchGraph) -> onnx.ModelProto:
    """``qmodel`` with the learned int8 weights and activation scales in place of its initializers."""
    new = {g.weight_init[k]: w.int8() for k, w in g.weights.items()}
    new.update({k: np.array(abs(float(v.scale.detach())), np.float32) for k, v in g.scales.items()})
    new.update({k: v.detach().numpy().astype(np.float32) for k, v in g.biases.items()})
    out = onnx.ModelProto()
    out.CopyFrom(qmodel)
    for init in out.graph.initializer:
        if init.name in new:
            init.CopyFrom(numpy_helper.from_array(new[init.name], init.name))
    return out


def _changed(before: onnx.ModelProto, after: onnx.ModelProto) -> dict:
    a = {i.name: numpy_helper.to_array(i) for i in before.graph.initializer}
    flipped = total = 0
    scales = []
    for init in after.graph.initializer:
        v = numpy_helper.to_array(init)
        if v.dtype == np.int8 and v.ndim > 1:
            flipped += int((v != a[init.name]).sum())
            total += v.size
        elif init.name.startswith("qdq_act_scale_"):
            scales.append(float(v) / float(a[init.name]))
    return {"weights_changed": flipped, "weights": total,
            "scale_ratio_min": round(min(scales, default=1.0), 4),
            "scale_ratio_max": round(max(scales, default=1.0), 4)}
