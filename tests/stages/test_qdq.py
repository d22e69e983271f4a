"""INT8 Q/DQ placement on a real YOLOv8n export: per-channel weights, SiLU and decode untouched, shared scales,
residual adds, exclusions, and accuracy of the trained reference model against FP32 in ONNX Runtime."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtbuild.config import ExportConfig, SimplifyConfig
from trtbuild.data.synth import render_image
from trtbuild.errors import InputError
from trtbuild.stages.export import export
from trtbuild.stages.precision.qdq import quantize_qdq, sensitivity_candidates
from trtbuild.stages.simplify import simplify
from trtbuild.vision.letterbox import letterbox_batch

from ..helpers import skimage_photos, ultralytics_photos

REFERENCE_PT = Path(__file__).resolve().parents[2] / "models" / "shapes-yolov8n.pt"
IMGSZ = 320


# -- helpers shared with test_fp16 -------------------------------------------------------------------------------


def simplified(path: Path) -> onnx.ModelProto:
    return onnx.load(str(simplify(path, SimplifyConfig(out=path.with_name(path.stem + ".sim.onnx"))).output))


def export_reference(tmp_path_factory) -> onnx.ModelProto:
    out = tmp_path_factory.mktemp("reference")
    return simplified(export(str(REFERENCE_PT), ExportConfig(imgsz=(IMGSZ, IMGSZ), out_dir=out)).output)


def photos_batch() -> np.ndarray:
    return letterbox_batch([cv2.imread(str(p)) for p in ultralytics_photos() + skimage_photos()], IMGSZ)[0]


def synth_batch(split: str, indices) -> np.ndarray:
    return letterbox_batch([render_image(0, split, i)[0] for i in indices], IMGSZ)[0]


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def observed_ranges(model: onnx.ModelProto, batch: np.ndarray, pct: float = 99.999) -> dict:
    """(min, max) of every float tensor over ``batch``, tails beyond the ``pct`` percentile of |x| clipped.

    Every intermediate tensor becomes a graph output for one ONNX Runtime run per image; the percentile clip is
    what a percentile calibrator does (plain min/max lets one outlier coarsen a whole tensor's INT8 grid).
    """
    m = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for name in node.output:
            if name not in have and types.get(name) == TensorProto.FLOAT:
                m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = session(m)
    names = [o.name for o in sess.get_outputs()]
    feed = sess.get_inputs()[0].name
    stats: dict[str, list[float]] = {}
    for x in batch:
        for name, v in [(feed, x), *zip(names, sess.run(None, {feed: x[None]}))]:
            lo, hi, a = float(v.min()), float(v.max()), float(np.percentile(np.abs(v), pct))
            old = stats.setdefault(name, [lo, hi, a])
            stats[name] = [min(old[0], lo), max(old[1], hi), max(old[2], a)]
    return {k: (max(lo, -a), min(hi, a)) for k, (lo, hi, a) in stats.items()}


def downstream(model: onnx.ModelProto, tensors) -> set[str]:
    """Names of every node fed (directly or not) by ``tensors``."""
    users = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            users[name].append(node)
    seen, todo = set(), list(tensors)
    while todo:
        for node in users[todo.pop()]:
            if node.name not in seen:
                seen.add(node.name)
                todo.extend(node.output)
    return seen


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32(exported_yolov8n, tmp_path_factory):
    src = tmp_path_factory.mktemp("qdq") / "yolov8n.onnx"
    src.write_bytes(Path(exported_yolov8n).read_bytes())
    return simplified(src)


@pytest.fixture(scope="module")
def ranges(fp32):
    return observed_ranges(fp32, photos_batch())


@pytest.fixture(scope="module")
def quantized(fp32, ranges):
    return quantize_qdq(fp32, ranges)


def producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def inits(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def head_outputs_downstream(fp32) -> set[str]:
    """Nodes fed by the activation-free head Convs (no Sigmoid reads their output): the decode."""
    sig_inputs = {n.input[0] for n in fp32.graph.node if n.op_type == "Sigmoid"}
    raw = [n.output[0] for n in fp32.graph.node if n.op_type == "Conv" and n.output[0] not in sig_inputs]
    return downstream(fp32, raw)


def decode_convs(fp32) -> list[str]:
    """The DFL's arange Conv(s): Convs downstream of the head's Softmax."""
    soft = [n.output[0] for n in fp32.graph.node if n.op_type == "Softmax"]
    below = downstream(fp32, soft)
    return [n.name for n in fp32.graph.node if n.op_type == "Conv" and n.name in below]


# -- tests ---------------------------------------------------------------------------------------------------------


def test_valid_onnx_that_runs_in_onnxruntime(fp32, quantized):
    model, _ = quantized
    onnx.checker.check_model(model)
    x = photos_batch()[:1]
    a = session(fp32).run(None, {"images": x})[0]
    b = session(model).run(None, {"images": x})[0]
    assert a.shape == b.shape and np.isfinite(b).all()


def test_counts_match_the_graph(fp32, quantized):
    model, report = quantized
    convs = [n.name for n in fp32.graph.node if n.op_type == "Conv"]
    excluded = decode_convs(fp32)
    assert len(excluded) == 1
    prod = producers(model)
    int8_convs = [n.name for n in model.graph.node
                  if n.op_type == "Conv" and prod[n.input[0]].op_type == "DequantizeLinear"]
    assert int8_convs == report.quantized_convs == [c for c in convs if c not in excluded]
    assert sensitivity_candidates(fp32) == report.quantized_convs
    assert set(report.excluded_convs) == set(excluded) and report.convs == len(convs)
    ops = [n.op_type for n in model.graph.node]
    weight_dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_int8")]
    assert report.weight_per_channel == len(weight_dqs) == len(int8_convs)
    assert report.qdq_pairs == ops.count("QuantizeLinear") == ops.count("DequantizeLinear") - len(weight_dqs)
    assert len(report.quantized_tensors) == report.qdq_pairs
    print(f"\n{report.summary()}")


def test_weights_per_channel_activations_per_tensor_symmetric(fp32, quantized):
    model, report = quantized
    prod, values, original = producers(model), inits(model), inits(fp32)
    for conv in (n for n in model.graph.node if n.name in report.quantized_convs):
        wdq = prod[conv.input[1]]
        assert wdq.op_type == "DequantizeLinear"
        assert helper.get_attribute_value(next(a for a in wdq.attribute if a.name == "axis")) == 0
        q, scale, zp = (values[i] for i in wdq.input)
        w = original[next(n for n in fp32.graph.node if n.name == conv.name).input[1]]
        assert q.dtype == np.int8 and scale.shape == (w.shape[0],) and not zp.any()
        deq = q.astype(np.float32) * scale.reshape(-1, 1, 1, 1)
        assert np.all(np.abs(deq - w) <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7)
        adq = prod[conv.input[0]]
        a_scale, a_zp = values[adq.input[1]], values[adq.input[2]]
        assert a_scale.shape == () and a_zp.dtype == np.int8 and a_zp == 0
        assert len(conv.input) < 3 or conv.input[2] in original  # bias stays the float initializer


def test_nothing_between_conv_sigmoid_and_mul(fp32, quantized):
    model, _ = quantized
    prod = producers(model)
    silu = 0
    for node in model.graph.node:
        if node.op_type == "Mul" and {prod[i].op_type for i in node.input if i in prod} == {"Conv", "Sigmoid"}:
            sig = next(prod[i] for i in node.input if prod[i].op_type == "Sigmoid")
            assert prod[sig.input[0]].op_type == "Conv" and sig.input[0] in node.input
            silu += 1
    conv_outs = {n.output[0] for n in fp32.graph.node if n.op_type == "Conv"}
    assert silu == sum(n.op_type == "Sigmoid" and n.input[0] in conv_outs for n in fp32.graph.node) > 50
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        assert q.input[0] == "images" or prod[q.input[0]].op_type not in ("Conv", "Sigmoid")


def test_concat_maxpool_resize_share_one_scale(fp32, quantized):
    model, report = quantized
    prod, values = producers(model), inits(model)
    users = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            users[name].append(node)

    def in_scale(node, i):
        dq = prod.get(node.input[i])
        return float(values[dq.input[1]]) if dq is not None and dq.op_type == "DequantizeLinear" else None

    joined = 0
    for node in model.graph.node:
        if node.op_type not in ("Concat", "MaxPool", "Resize") or node.name not in report.int8_passthrough:
            continue
        data = range(len(node.input)) if node.op_type == "Concat" else [0]
        scales = {in_scale(node, i) for i in data}
        out_q = [u for u in users[node.output[0]] if u.op_type == "QuantizeLinear"]
        scales |= {float(values[q.input[1]]) for q in out_q}
        assert len(scales) == 1 and None not in scales, node.name
        joined += 1
    head = head_outputs_downstream(fp32)
    expected = [n.name for n in fp32.graph.node if n.op_type in ("Concat", "MaxPool", "Resize") and n.name not in head]
    assert joined == len(expected) and report.int8_passthrough == expected


def test_decode_and_class_sigmoid_stay_float(fp32, quantized):
    model, _ = quantized
    out = fp32.graph.output[0].name
    last = next(n for n in fp32.graph.node if out in n.output)
    soft = next(n for n in fp32.graph.node if n.op_type == "Softmax")
    decode = downstream(fp32, soft.output) | {soft.name, last.name}
    decode |= {producers(fp32)[i].name for i in last.input if producers(fp32)[i].op_type == "Sigmoid"}
    prod = producers(model)
    for node in model.graph.node:
        if node.name in decode:
            for name in node.input:
                assert name not in prod or prod[name].op_type not in ("QuantizeLinear", "DequantizeLinear"), node.name
    qdq_nodes = {n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert not qdq_nodes & downstream(model, soft.output)


def test_residual_add_quantizes_the_skip_input_only(fp32, quantized):
    model, report = quantized
    prod = producers(model)
    fprod, head = producers(fp32), head_outputs_downstream(fp32)
    adds = [n.name for n in fp32.graph.node if n.op_type == "Add" and n.name not in head
            and all(i in fprod and fprod[i].op_type != "Constant" for i in n.input)]
    assert adds == report.residual_adds and adds
    for add in (n for n in model.graph.node if n.name in report.residual_adds):
        kinds = sorted(prod[i].op_type for i in add.input)
        assert kinds == ["DequantizeLinear", "Mul"], add.name  # skip INT8, conv-branch SiLU output float


def test_exclude_nodes_keeps_exactly_those_float(fp32, ranges, quantized):
    _, default = quantized
    candidates = sensitivity_candidates(fp32)
    chosen = {candidates[0], candidates[len(candidates) // 2]}
    model, report = quantize_qdq(fp32, ranges, exclude_nodes=chosen)
    assert set(report.quantized_convs) == set(default.quantized_convs) - chosen
    assert all("exclude_nodes" in report.excluded_convs[c] for c in chosen)
    prod, original = producers(model), inits(fp32)
    for conv in (n for n in model.graph.node if n.name in chosen):
        assert conv.input[1] in original and prod.get(conv.input[0], conv).op_type != "DequantizeLinear"
    onnx.checker.check_model(model)
    with pytest.raises(InputError, match="no Conv"):
        quantize_qdq(fp32, ranges, exclude_nodes={"/no/such/Conv"})


def test_conv_without_a_range_stays_float(fp32, ranges):
    first = sensitivity_candidates(fp32)[1]
    tensor = next(n for n in fp32.graph.node if n.name == first).input[0]
    model, report = quantize_qdq(fp32, {k: v for k, v in ranges.items() if k != tensor})
    assert "no calibration range" in report.excluded_convs[first]
    onnx.checker.check_model(model)


@pytest.mark.slow
def test_int8_stays_close_to_fp32_on_the_reference_model(tmp_path_factory):
    fp32 = export_reference(tmp_path_factory)
    ranges = observed_ranges(fp32, synth_batch("train", range(8)))
    model, report = quantize_qdq(fp32, ranges)
    ref, int8 = session(fp32), session(model)
    for x in synth_batch("val", range(2)):
        a = ref.run(None, {"images": x[None]})[0][0]
        b = int8.run(None, {"images": x[None]})[0][0]
        sa, sb = a[4:].ravel(), b[4:].ravel()
        cosine = float(sa @ sb / (np.linalg.norm(sa) * np.linalg.norm(sb)))
        assert cosine > 0.99, f"class-score cosine {cosine:.4f} ({report.summary()})"
        confident = a[4:].max(0) > 0.5
        assert confident.any() and np.abs(a[:4, confident] - b[:4, confident]).max() < 4.0  # px at 320


# -- YOLO11 / YOLO26 / YOLOv10: attention blocks and NMS-free heads -------------------------------------------------


@pytest.fixture(scope="module", params=["yolo11n.yaml", "yolo26n.yaml", "yolov10n.yaml"])
def family(request, tmp_path_factory):
    """(config name, simplified FP32 export at 320 with random weights, its Q/DQ model, the report)."""
    out = tmp_path_factory.mktemp(request.param.split(".")[0])
    model = simplified(export(request.param, ExportConfig(imgsz=(IMGSZ, IMGSZ), out_dir=out)).output)
    quantized, report = quantize_qdq(model, observed_ranges(model, photos_batch()[:4]))
    return request.param, model, quantized, report


def test_every_conv_but_the_dfl_is_int8_in_yolo11_yolo26_yolov10(family):
    name, fp32, model, report = family
    convs = [n.name for n in fp32.graph.node if n.op_type == "Conv"]
    dfl = [c for c in convs if "/dfl/" in c]  # ultralytics' module path names the DFL's arange conv
    assert len(dfl) == (0 if name.startswith("yolo26") else 1)  # YOLO26 regresses boxes directly (reg_max 1)
    assert any("/attn/" in c for c in convs)  # C2PSA / PSA attention: qkv, pe, proj convs
    prod = producers(model)
    int8 = [n.name for n in model.graph.node if n.op_type == "Conv" and prod[n.input[0]].op_type == "DequantizeLinear"
            and prod[n.input[1]].op_type == "DequantizeLinear"]
    assert int8 == report.quantized_convs == [c for c in convs if c not in dfl]
    assert set(report.excluded_convs) == set(dfl)
    assert all(why.startswith("box decode: the DFL") for why in report.excluded_convs.values())
    onnx.checker.check_model(model)
    x = photos_batch()[:1]
    a, b = session(fp32).run(None, {"images": x})[0], session(model).run(None, {"images": x})[0]
    assert a.shape == b.shape and np.isfinite(b).all()
    print(f"\n{name}: {len(int8)}/{len(convs)} convs INT8; float: {report.float_summary()}")


def test_attention_matmul_and_softmax_stay_float_with_their_reason(family):
    _, fp32, model, report = family
    prod = producers(model)
    ops = {n.name: n for n in model.graph.node if n.op_type in ("MatMul", "Softmax")}
    assert set(report.float_ops) == set(ops)
    attention = [n for n in ops.values() if "/attn/" in n.name]
    assert len([n for n in attention if n.op_type == "MatMul"]) >= 2 and any(n.op_type == "Softmax" for n in attention)
    for node in ops.values():
        assert all(prod[i].op_type not in ("QuantizeLinear", "DequantizeLinear") for i in node.input if i in prod)
        assert report.float_ops[node.name].startswith(
            f"{node.op_type}, {'attention' if '/attn/' in node.name else 'box decode'}:")
    # the attention's residual adds quantize the skip input, like C2f's
    assert any("/attn/" not in a and "/model.10/" in a for a in report.residual_adds)
