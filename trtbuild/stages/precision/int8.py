"""The int8 stage: ``<name>.sim.onnx`` + calibration ranges → ``<name>.int8.onnx`` with TensorRT-fusable Q/DQ.

It wraps the graph rewrite (``qdq.quantize_qdq``) in the stage contract (``artifacts.run_stage``): inputs hashed
into a key, an atomic output and a JSON report, skipped when nothing changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from ...artifacts import Outputs, StageResult, package_version, run_stage, sha256_file, sha256_json
from ...config import Int8Config
from ...errors import InputError
from ...layout import Layout
from ...onnx.graph import load_onnx
from .calibrate import load_ranges
from .qdq import quantize_qdq

STAGE_VERSION = 1


def graph_counts(model: onnx.ModelProto) -> dict:
    """Node, Q/DQ and Cast counts of a graph, as the precision reports list them."""
    ops = [n.op_type for n in model.graph.node]
    return {
        "nodes": len(ops),
        "qdq_pairs": ops.count("QuantizeLinear"),
        "dequantize_nodes": ops.count("DequantizeLinear"),
        "casts": ops.count("Cast"),
    }


def int8(sim_onnx: str | os.PathLike, ranges_json: str | os.PathLike, config: Int8Config = Int8Config()
         ) -> StageResult:
    """``<name>.sim.onnx`` + ranges → ``<name>.<tag>.onnx`` (+ ``.json``); ``config.exclude`` keeps those convs
    float."""
    cfg = config
    src, ranges_json = Path(sim_onnx), Path(ranges_json)
    layout = Layout.of(src)
    out = layout.typed(cfg.tag)
    exclude = sorted(cfg.exclude)
    key = sha256_json({
        "stage": "int8", "stage_version": STAGE_VERSION, "model": sha256_file(src),
        "ranges": sha256_file(ranges_json), "exclude": exclude, "onnx": package_version("onnx"),
    })

    def make(outputs: Outputs) -> dict:
        quantized, rep = quantize_qdq(load_onnx(src), load_ranges(ranges_json), exclude_nodes=set(exclude))
        if not rep.quantized_convs and len(exclude) < rep.convs:
            why = next(iter(rep.excluded_convs.values()), "no conv")
            raise InputError(f"{ranges_json}: no conv of {src} could be quantized with these ranges ({why}): the "
                             f"result would not be INT8; recalibrate this model: trtbuild calibrate {src}")
        tmp = outputs.path(out, ".onnx")
        onnx.save(quantized, str(tmp))
        return {"input": str(src), "ranges": str(ranges_json), "output": str(out), "exclude": exclude,
                **graph_counts(quantized), "qdq": rep.to_dict(), "bytes": tmp.stat().st_size}

    return run_stage("int8", key, layout.typed_report(cfg.tag), out, make, cfg.force,
                     inputs={"model": src, "ranges": ranges_json}, overwrite=cfg.overwrite)


def qdq_tensors(sim_onnx: str | os.PathLike) -> list[str]:
    """Activation tensors that get Q/DQ (so calibration need only measure these): found by planning with
    placeholder ranges for every tensor."""
    model = load_onnx(sim_onnx, check=False)
    names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    _, rep = quantize_qdq(model, {t: (-1.0, 1.0) for t in names})
    return sorted(rep.quantized_tensors)
