"""End-to-end detection graphs: append NMS to an exported YOLOv8 ONNX so it outputs ``detections`` [B, max_det, 6].

Each row is (x1, y1, x2, y2, score, class) in input pixels, best score first, zero rows after the last detection:
what ``vision.decode.postprocess_end2end`` and ``Predictor`` read. Two variants:

* ``"onnx"``: standard ops only (ONNX Runtime runs it; TensorRT maps ``NonMaxSuppression`` to its INMSLayer, the
  path that stays in TensorRT 11). Same semantics as the host ``postprocess``: one candidate per anchor (its best
  class; the other classes' scores are zeroed so ``NonMaxSuppression``, class-aware by construction, never sees
  them), score > conf and IoU > iou compared in float32 exactly as the host does (the IoU threshold goes through
  ``vision.nms``'s float32 rounding), then every image's kept boxes are scattered back onto its anchors and one
  ``TopK`` over the anchors sorts them (ties: lower anchor first, as the host's stable sort), cuts to max_det and
  pads, which works for any batch size without a per-image loop. One difference: the host keeps classes apart
  as ultralytics does, by offsetting class c's boxes by c × 7680 px, where float32 steps reach 1/16 px; the
  graph compares each class at its own coordinates, so a pair whose IoU lies within that rounding of the
  threshold can be decided differently (the tests compare with the host's NMS run class by class).
* ``"efficient"``: TensorRT's ``EfficientNMS_TRT`` plugin (TensorRT 10.x; deprecated since 10.12 but still in the
  11.x plugin library, so a build on 10.12+ warns: ``trt.compat.nms_plugin_notice``; the engine builder must load
  the plugin library: ``trt.init_libnvinfer_plugins``). The
  parser finds it by op_type plus the ``plugin_version``/``plugin_namespace`` attributes and ignores the domain, so
  the node lives in a custom ``TRT`` domain declared in ``opset_import``: ``onnx.checker`` then accepts the file.
  The plugin keeps score >= threshold and suppresses at IoU >= threshold, so both thresholds are moved one float32
  step up to mean the host's strict >. It zero-fills its outputs past ``num_detections``, so Cast/Unsqueeze/Concat
  of its three tensors is the whole ``detections`` output. ONNX Runtime cannot run it.

Limits (both documented by TensorRT): TopK's K is at most 3840 (so is max_det); INMSLayer considers at most 5000
candidates per image and EfficientNMS 4096 (the host keeps 30000; reached only with very low conf).

Written by hand rather than with ultralytics' ``nms=True`` export: that re-exports from the .pt with its own NMS
module, while this appends to any ONNX stage of the pipeline (simplified, FP16-typed, INT8 Q/DQ).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..artifacts import Outputs, StageResult, package_version, run_stage, sha256_file, sha256_json
from ..config import NMS_VARIANTS as VARIANTS
from ..config import NmsConfig
from ..errors import InputError, UnsupportedModelError
from ..layout import nms_path, onnx_report_path
from ..onnx.graph import dim as _dim
from ..onnx.graph import get_metadata, load_onnx, op_histogram, set_metadata
from ..onnx.graph import opset as _opset
from ..vision.nms import f32_threshold

STAGE_VERSION = 1
OUTPUT_NAME = "detections"
MAX_TOPK = 3840  # TensorRT ITopKLayer's largest K
MIN_OPSET = 11  # NonMaxSuppression-11, TopK-11 (largest/sorted), ScatterND, GatherElements, Pad with input pads
PLUGIN_DOMAIN = "TRT"
EFFICIENT_NMS = "EfficientNMS_TRT"
_NMS_OPS = {"NonMaxSuppression", EFFICIENT_NMS}
F32 = TensorProto.FLOAT


def _f32_up(x: float) -> float:
    """The next float32 above ``x``: ``v >= next`` is ``v > x`` for float32 ``v``."""
    return float(np.nextafter(np.float32(x), np.float32(np.inf)))


def thresholds(variant: str, conf: float, iou: float) -> tuple[float, float]:
    """(score, IoU) thresholds written into the graph so that it keeps score > conf and suppresses at IoU > iou
    in float32, as the host ``postprocess`` does (which compares float32 scores with ``conf`` rounded to float32)."""
    score_t, iou_t = float(np.float32(conf)), float(f32_threshold(float(iou)))  # the host's float32 IoU test
    if variant == "efficient":  # the plugin keeps score >= t and suppresses at IoU >= t
        return _f32_up(score_t), _f32_up(iou_t)
    return score_t, iou_t  # NonMaxSuppression (ONNX Runtime, INMSLayer): score > t, suppressed at IoU > t


def _check_options(variant: str, conf: float, iou: float, max_det: int) -> None:
    if variant not in VARIANTS:
        raise InputError(f"nms={variant!r}: unknown NMS variant; choose one of {', '.join(VARIANTS)}", param="nms")
    if not 0 <= conf <= 1:
        raise InputError(f"conf={conf}: must lie in [0, 1]", param="conf")
    if not 0 <= iou <= 1:
        raise InputError(f"iou={iou}: must lie in [0, 1]", param="iou")
    if not isinstance(max_det, (int, np.integer)) or isinstance(max_det, bool) or not 1 <= max_det <= MAX_TOPK:
        raise InputError(f"max_det={max_det}: must be an integer in [1, {MAX_TOPK}] (TensorRT's TopK limit)",
                         param="max_det")


def _head_output(model: onnx.ModelProto) -> tuple[onnx.ValueInfoProto, int, int | str | None]:
    """The raw head output [B, 4+nc, A], its class count and batch dim; UnsupportedModelError otherwise."""
    ops = {n.op_type for n in model.graph.node}
    if ops & _NMS_OPS or str(get_metadata(model).get("end2end", "")).lower() == "true":
        raise UnsupportedModelError("the model already ends in NMS (end-to-end); append NMS to the raw export")
    if len(model.graph.output) != 1:
        names = ", ".join(o.name for o in model.graph.output)
        raise UnsupportedModelError(f"expected one detect output [B, 4+nc, A], got {len(model.graph.output)}: "
                                    f"{names}; only YOLOv8 detect models get NMS appended")
    out = model.graph.output[0]
    tt = out.type.tensor_type
    dims = [_dim(d) for d in tt.shape.dim]
    if tt.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16) or len(dims) != 3 \
            or not isinstance(dims[1], int) or dims[1] < 5:
        raise UnsupportedModelError(f"output {out.name!r} has shape {dims}; expected a float YOLOv8 detect output "
                                    "[B, 4+nc, A] (a detect model, exported without NMS)")
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise UnsupportedModelError(f"ONNX opset {opset}: NMS needs opset >= {MIN_OPSET}; re-export with opset 17")
    return out, dims[1] - 4, dims[0]


class _Graph:
    """Appends nodes and constants under a ``nms/`` prefix, never reusing a name already in the graph."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.used = {n.name for n in graph.node} | {i.name for i in graph.initializer}
        self.used |= {t for n in graph.node for t in [*n.input, *n.output]} | {v.name for v in graph.input}
        self.added: list[onnx.NodeProto] = []

    def name(self, base: str) -> str:
        name, i = f"nms/{base}", 1
        while name in self.used:
            name, i = f"nms/{base}_{i}", i + 1
        self.used.add(name)
        return name

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, n_out: int = 1, domain: str = "", **attrs) -> list[str]:
        outs = [self.name(f"{base}_out{i}" if n_out > 1 else base) for i in range(n_out)]
        node = helper.make_node(op_type, inputs, outs, name=self.name(f"{base}_{op_type}"), domain=domain or None,
                                **attrs)
        self.graph.node.append(node)
        self.added.append(self.graph.node[-1])  # the stored copy, so later edits reach the graph
        return outs

    def one(self, op_type: str, inputs: list[str], base: str, **attrs) -> str:
        return self.op(op_type, inputs, base, **attrs)[0]


def _decode(g: _Graph, head: str, nc: int) -> tuple[str, str, str, str]:
    """(xyxy [B,4,A], boxes [B,A,4], best-class-only scores [B,nc,A], best class [B,1,A] int64).

    Corners as the host computes them (``cxcy ∓ wh / 2`` in float32), so boxes match it bit for bit.
    """
    ax1, at0, at2, at4, end = (g.const(name, np.array([v], np.int64)) for name, v in
                               [("axis1", 1), ("at0", 0), ("at2", 2), ("at4", 4), ("to_end", np.iinfo(np.int64).max)])
    xy = g.one("Slice", [head, at0, at2, ax1], "xy")
    wh = g.one("Slice", [head, at2, at4, ax1], "wh")
    cls = g.one("Slice", [head, at4, end, ax1], "class_scores")
    half = g.one("Div", [wh, g.const("two", np.array(2.0, np.float32))], "half_wh")
    x1y1 = g.one("Sub", [xy, half], "x1y1")
    x2y2 = g.one("Add", [xy, half], "x2y2")
    xyxy = g.one("Concat", [x1y1, x2y2], "xyxy", axis=1)
    boxes = g.one("Transpose", [xyxy], "boxes", perm=[0, 2, 1])
    best = g.one("ArgMax", [cls], "best_class", axis=1, keepdims=1)  # first max on ties, as numpy's argmax
    onehot = g.one("Equal", [g.const("class_ids", np.arange(nc, dtype=np.int64).reshape(1, nc, 1)), best], "is_best")
    masked = g.one("Where", [onehot, cls, g.const("zero", np.array(0.0, np.float32))], "best_scores")
    return xyxy, boxes, masked, best


def _onnx_nms(g: _Graph, xyxy: str, boxes: str, masked: str, best: str, score_t: float, iou_t: float,
              max_det: int, num_anchors: int | str | None) -> str:
    """NonMaxSuppression, then kept scores scattered back per anchor and TopK over anchors: [B, max_det, 6]."""
    sel = g.one("NonMaxSuppression", [boxes, masked, g.const("max_per_class", np.array([max_det], np.int64)),
                                      g.const("iou_threshold", np.array([iou_t], np.float32)),
                                      g.const("score_threshold", np.array([score_t], np.float32))],
                "selected", center_point_box=0)  # [N, 3] (image, class, anchor); IoU is symmetric in x and y
    scores = g.one("GatherND", [masked, sel], "selected_scores")  # [N]
    at_anchor = g.one("Mul", [sel, g.const("drop_class", np.array([1, 0, 1], np.int64))], "selected_anchor")
    zeros = g.one("ConstantOfShape", [g.one("Shape", [best], "anchor_shape")], "no_scores",
                  value=numpy_helper.from_array(np.zeros(1, np.float32)))
    kept = g.one("ScatterND", [zeros, at_anchor, scores], "kept_scores")  # [B,1,A]; one class per anchor: no dups
    rows = g.one("Concat", [xyxy, kept, g.one("Cast", [best], "class_float", to=F32)], "rows", axis=1)  # [B,6,A]
    if not (isinstance(num_anchors, int) and num_anchors >= max_det):  # TopK needs K <= A: pad with zero scores
        pads = g.const("pad_anchors", np.array([0, 0, 0, 0, 0, max_det], np.int64))
        kept = g.one("Pad", [kept, pads], "kept_padded")
        rows = g.one("Pad", [rows, pads], "rows_padded")
    top, idx = g.op("TopK", [kept, g.const("k", np.array([max_det], np.int64))], "top", n_out=2,
                    axis=2, largest=1, sorted=1)  # [B,1,K]; equal scores: lower anchor first
    picked = g.one("GatherElements", [rows, g.one("Expand", [idx, g.const("six", np.array([1, 6, 1], np.int64))],
                                                  "top_index6")], "picked", axis=2)  # [B,6,K]
    valid = g.one("Transpose", [g.one("Greater", [top, g.const("zero_score", np.array(0.0, np.float32))], "valid")],
                  "valid_rows", perm=[0, 2, 1])  # [B,K,1]
    dets = g.one("Transpose", [picked], "detections_unmasked", perm=[0, 2, 1])
    return g.one("Where", [valid, dets, g.const("zero_row", np.array(0.0, np.float32))], "detections")


def _unsqueeze_last(g: _Graph, x: str, base: str, opset: int) -> str:
    if opset >= 13:
        return g.one("Unsqueeze", [x, g.const(f"{base}_axes", np.array([-1], np.int64))], base)
    return g.one("Unsqueeze", [x], base, axes=[-1])


def _efficient_nms(g: _Graph, boxes: str, masked: str, score_t: float, iou_t: float, max_det: int,
                   batch, opset: int) -> str:
    """The EfficientNMS_TRT plugin node on best-class-only scores, its outputs concatenated: [B, max_det, 6]."""
    scores = g.one("Transpose", [masked], "scores_bac", perm=[0, 2, 1])  # the plugin wants [B, A, nc]
    num, det_boxes, det_scores, det_classes = g.op(
        EFFICIENT_NMS, [boxes, scores], "efficient", n_out=4, domain=PLUGIN_DOMAIN,
        plugin_version="1", plugin_namespace="", score_threshold=score_t, iou_threshold=iou_t,
        max_output_boxes=max_det, background_class=-1, score_activation=0, class_agnostic=0, box_coding=0)
    g.graph.value_info.extend([
        helper.make_tensor_value_info(num, TensorProto.INT32, [batch, 1]),
        helper.make_tensor_value_info(det_boxes, F32, [batch, max_det, 4]),
        helper.make_tensor_value_info(det_scores, F32, [batch, max_det]),
        helper.make_tensor_value_info(det_classes, TensorProto.INT32, [batch, max_det]),
    ])
    score_col = _unsqueeze_last(g, det_scores, "score_column", opset)
    class_col = _unsqueeze_last(g, g.one("Cast", [det_classes], "class_float", to=F32), "class_column", opset)
    return g.one("Concat", [det_boxes, score_col, class_col], "detections", axis=2)


def append_nms(model: onnx.ModelProto, variant: str = "onnx", conf: float = 0.25, iou: float = 0.7,
               max_det: int = 300) -> onnx.ModelProto:
    """A copy of a YOLOv8 detect ONNX whose only output is ``detections`` [B, max_det, 6] float32.

    Rows (x1, y1, x2, y2, score, class) in input pixels, highest score first per image, zero rows as padding;
    the batch dim is kept (dynamic stays dynamic). ``metadata_props`` are copied plus ``end2end``, ``nms``,
    ``max_det``, ``conf``, ``iou``. See the module docstring for the two variants.
    """
    _check_options(variant, conf, iou, max_det)
    max_det = int(max_det)
    head_vi, nc, batch = _head_output(model)
    num_anchors = _dim(head_vi.type.tensor_type.shape.dim[2])
    out = onnx.ModelProto()
    out.CopyFrom(model)
    opset = _opset(out)
    g = _Graph(out.graph)
    if OUTPUT_NAME in g.used:
        raise UnsupportedModelError(f"the model already has a tensor named {OUTPUT_NAME!r}")
    head = head_vi.name
    if head_vi.type.tensor_type.elem_type != F32:  # an FP16-typed graph output: NMS and the result are float32
        head = g.one("Cast", [head], "head_float", to=F32)
    score_t, iou_t = thresholds(variant, conf, iou)
    xyxy, boxes, masked, best = _decode(g, head, nc)
    if variant == "onnx":
        dets = _onnx_nms(g, xyxy, boxes, masked, best, score_t, iou_t, max_det, num_anchors)
    else:
        dets = _efficient_nms(g, boxes, masked, score_t, iou_t, max_det, batch, opset)
        if not any(o.domain == PLUGIN_DOMAIN for o in out.opset_import):
            out.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    last = g.added[-1]  # the last node added computes the result: it becomes the output
    if last.output[0] != dets:
        raise RuntimeError(f"NMS graph construction: the last node {last.name!r} does not output {dets!r}")
    last.output[0] = OUTPUT_NAME
    del out.graph.output[:]
    out.graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, F32, [batch, max_det, 6]))
    set_metadata(out, {"end2end": True, "nms": variant, "max_det": max_det, "conf": float(conf), "iou": float(iou)})
    return out


def nms_stage(src: str | Path, config: NmsConfig = NmsConfig()) -> StageResult:
    """``<X>.onnx`` → ``<X>.nms.onnx`` (``.nms-efficient.onnx`` for the plugin) + a ``.json`` report beside it.

    Skipped when the report's key (source content + options) matches and the output is intact.
    """
    cfg = config
    _check_options(cfg.variant, cfg.conf, cfg.iou, cfg.max_det)
    src = Path(src)
    if not src.is_file():
        raise InputError(f"{src}: no such file; pass the path of an exported .onnx model")
    out = Path(cfg.out) if cfg.out is not None else nms_path(src, cfg.variant)
    if out.resolve() == src.resolve():
        raise InputError(f"{out}: the output would overwrite the input; pass another output path", param="out")
    key = sha256_json({
        "stage": "nms", "stage_version": STAGE_VERSION, "model": sha256_file(src), "variant": cfg.variant,
        "conf": float(cfg.conf), "iou": float(cfg.iou), "max_det": int(cfg.max_det), "onnx": package_version("onnx"),
    })

    def make(outputs: Outputs) -> dict:
        model = load_onnx(src)
        try:
            result = append_nms(model, cfg.variant, cfg.conf, cfg.iou, cfg.max_det)
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{src}: {exc}") from None
        onnx.checker.check_model(result)
        tmp = outputs.path(out, ".onnx")
        onnx.save(result, str(tmp))
        before, after = op_histogram(model), op_histogram(result)
        score_t, iou_t = thresholds(cfg.variant, cfg.conf, cfg.iou)
        return {
            "input": str(src), "output": str(out), "variant": cfg.variant, "conf": float(cfg.conf),
            "iou": float(cfg.iou), "max_det": int(cfg.max_det), "score_threshold": score_t, "iou_threshold": iou_t,
            "output_shape": [_dim(d) for d in result.graph.output[0].type.tensor_type.shape.dim],
            "nodes_added": len(result.graph.node) - len(model.graph.node),
            "ops_added": {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)},
            "bytes": tmp.stat().st_size,
        }

    return run_stage("nms", key, onnx_report_path(out), out, make, cfg.force, inputs={"model": src},
                     overwrite=cfg.overwrite)
