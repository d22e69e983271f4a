"""Small ONNX helpers shared by the stages: safe loading, I/O specs, opset, op histograms, metadata_props."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import onnx
from onnx import helper

from ..config import HEAD_STRIDES
from ..errors import InputError
from ..iospec import IOSpec


def load_onnx(path: str | Path, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX file, turning every way it can be unreadable into a one-line ``InputError``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass the path of an .onnx model")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty; re-export it with `trtbuild export`")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise InputError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); the file may be truncated "
            "or not ONNX at all: re-export it with `trtbuild export`"
        ) from None
    if not model.graph.node:
        raise InputError(f"{path}: ONNX graph has no nodes; the file is truncated or not a model")
    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: ONNX checker rejected the model: {first}") from None
    return model


def dim(d: onnx.TensorShapeProto.Dimension) -> int | str | None:
    """One shape dimension: its value, its symbolic name, or None."""
    return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)


def dims(value_info) -> tuple:
    """The shape of a graph input/output (``ValueInfoProto``) as a tuple of :func:`dim` values."""
    return tuple(dim(d) for d in value_info.type.tensor_type.shape.dim)


def opset(model: onnx.ModelProto) -> int:
    """The model's default-domain ONNX opset (0 when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _np_dtype(value_info) -> str:
    elem = value_info.type.tensor_type.elem_type
    return str(helper.tensor_dtype_to_np_dtype(elem)) if elem else "unknown"


def io_specs(model: onnx.ModelProto) -> tuple[list[IOSpec], list[IOSpec]]:
    """(inputs, outputs) of the graph; initializers listed as inputs (old exporters) are left out."""
    inits = {i.name for i in model.graph.initializer}
    ins = [IOSpec(v.name, dims(v), _np_dtype(v)) for v in model.graph.input if v.name not in inits]
    outs = [IOSpec(v.name, dims(v), _np_dtype(v)) for v in model.graph.output]
    return ins, outs


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type, most frequent first."""
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: dict[str, object]) -> None:
    """Add or replace ``metadata_props`` entries (values stored as strings)."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        text = value if isinstance(value, str) else repr(value)
        if key in existing:
            existing[key].value = text
        else:
            model.metadata_props.add(key=key, value=text)


def parse_literal(text: str | None, default=None):
    """Parse a metadata value written by ultralytics (Python literal: dict, list, int) safely."""
    if text is None:
        return default
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def anchor_count(h: int, w: int, strides: tuple[int, ...] = HEAD_STRIDES) -> int:
    """Number of YOLOv8 anchor points for an H×W input: Σ ceil(H/s)·ceil(W/s) over the head strides."""
    return sum(-(-h // s) * -(-w // s) for s in strides)


def graph_counts(model: onnx.ModelProto) -> dict:
    """Node, Q/DQ and Cast counts of a graph, as the precision reports list them."""
    ops = [n.op_type for n in model.graph.node]
    return {
        "nodes": len(ops),
        "qdq_pairs": ops.count("QuantizeLinear"),
        "dequantize_nodes": ops.count("DequantizeLinear"),
        "casts": ops.count("Cast"),
    }
