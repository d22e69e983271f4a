"""FP16 typing of the trained reference model: decode kept FP32 by value range, full type check, I/O types,
closeness to FP32 in ONNX Runtime, and the report's reasons."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from trtbuild.errors import InputError
from trtbuild.stages.precision.fp16 import convert_fp16

from .test_qdq import export_reference, observed_ranges, producers, session, synth_batch

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
# boxes at imgsz 320 reach ~300-600 px; 256 puts them over the threshold whatever the calibration photos
MAX_ABS = 256.0


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return export_reference(tmp_path_factory)


@pytest.fixture(scope="module")
def ranges(fp32):
    return observed_ranges(fp32, synth_batch("train", range(4)), pct=100.0)


@pytest.fixture(scope="module")
def converted(fp32, ranges):
    return convert_fp16(fp32, ranges, max_abs=MAX_ABS)


def elem_types(model):
    g = model.graph
    return {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}


def box_chain(fp32) -> list[onnx.NodeProto]:
    """The nodes computing the box rows of ``output0``: back from the output Concat's first input to the DFL Conv."""
    prod = producers(fp32)
    out = fp32.graph.output[0].name
    chain, todo = [], [prod[out]]
    while todo:
        node = todo.pop()
        if node.op_type in ("Conv", "Constant") or node in chain:
            continue
        chain.append(node)
        todo.extend(prod[i] for i in (node.input[:1] if node is prod[out] else node.input) if i in prod)
    return chain


def test_full_check_passes_and_decode_stays_fp32(fp32, converted):
    model, report = converted
    onnx.checker.check_model(model, full_check=True)
    types = elem_types(model)
    chain = box_chain(fp32)
    assert {"Mul", "Sub", "Add", "Div", "Slice"} <= {n.op_type for n in chain}
    for node in chain:
        assert all(types[o] == F32 for o in node.output), node.name
        assert node.name in report.kept_fp32 and "value range" in report.kept_fp32[node.name]
    convs = [n for n in fp32.graph.node if n.op_type == "Conv" and n.name not in report.kept_fp32]
    assert len(convs) == sum(n.op_type == "Conv" for n in fp32.graph.node)  # DFL conv included: values ≤ 16
    assert all(types[c.output[0]] == F16 for c in convs)
    sigmoid = producers(fp32)[producers(fp32)[fp32.graph.output[0].name].input[1]]
    assert types[sigmoid.output[0]] == F16  # class scores are 0..1: FP16 is fine


def test_report_names_kept_nodes_with_observed_max(converted, ranges):
    _, report = converted
    seeds = {k: v for k, v in report.kept_fp32.items() if "max_abs" in v}
    assert seeds and set(seeds) == set(report.observed_max)
    assert all(v > MAX_ABS for v in report.observed_max.values())
    assert max(report.observed_max.values()) == pytest.approx(max(abs(x) for x in ranges["output0"]))
    assert report.fp16_nodes > 200 and report.casts >= 2 and report.initializers_fp16 > 100
    assert all(f"max_abs {MAX_ABS:g}" in v for v in seeds.values())


def test_keep_io_types(fp32, ranges, converted):
    kept, _ = converted
    assert [i.type.tensor_type.elem_type for i in kept.graph.input] == [F32]
    assert [o.type.tensor_type.elem_type for o in kept.graph.output] == [F32]
    half, _ = convert_fp16(fp32, ranges, keep_io_types=False, max_abs=MAX_ABS)
    onnx.checker.check_model(half, full_check=True)
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [F16]
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [F16]
    x = synth_batch("val", [0])
    out = session(half).run(None, {"images": x.astype(np.float16)})[0]
    assert out.dtype == np.float16 and np.isfinite(out).all()


def test_output_close_to_fp32(fp32, converted):
    model, _ = converted
    x = synth_batch("val", [0, 1])
    ref, half = session(fp32), session(model)
    for xi in x:
        a = ref.run(None, {"images": xi[None]})[0][0]
        b = half.run(None, {"images": xi[None]})[0][0]
        assert b.dtype == np.float32
        # ONNX Runtime's CPU runs most FP16 nodes through FP32 kernels: this checks typing, not GPU numerics
        assert np.abs(a[4:] - b[4:]).max() < 0.02
        assert np.abs(a[:4] - b[:4]).max() < 4.0  # px at imgsz 320


def test_block_nodes_weights_and_no_ranges(fp32, ranges):
    first = next(n for n in fp32.graph.node if n.op_type == "Conv")
    model, report = convert_fp16(fp32, ranges, block_nodes=[first.name])
    assert report.kept_fp32[first.name] == "explicit block (block_nodes)"
    assert elem_types(model)[first.output[0]] == F32
    onnx.checker.check_model(model, full_check=True)

    big = onnx.ModelProto()
    big.CopyFrom(fp32)
    init = next(i for i in big.graph.initializer if i.name == first.input[1])
    w = numpy_helper.to_array(init).copy()
    w.flat[0] = 1e5
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    _, report = convert_fp16(big, ranges)
    assert report.kept_fp32[first.name].startswith("weight range")

    model, report = convert_fp16(fp32, None)
    onnx.checker.check_model(model, full_check=True)
    assert all(elem_types(model)[o] == F32 for n in box_chain(fp32) for o in n.output)
    assert all("graph pattern" in report.kept_fp32[n.name] for n in box_chain(fp32))

    with pytest.raises(InputError, match="block_nodes"):
        convert_fp16(fp32, ranges, block_nodes=["/no/such/node"])
