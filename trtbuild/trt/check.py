"""``trtbuild check ONNX``: what the installed TensorRT makes of an ONNX file before anything is built.

It parses with the flavor that a build would use (TensorRT-RTX on a CPU host: a real TensorRT, no GPU needed) and
reports the nodes the parser cannot import (name and operator), the layers it made, the input profile a build would
use, whether every Q/DQ pair became a quantize/dequantize layer, and the layers the flavor cannot build (TensorRT-RTX
1.7.1 has no NMS runner and no plugin library). A stage like the others: ``X.check.json`` beside ``X.onnx``, keyed by
the file's hash and the flavor's version, so ``make engine`` re-checks only what changed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..artifacts import Outputs, StageResult, run_stage, sha256_file, sha256_json
from ..config import BuildConfig, CheckConfig
from ..errors import InputError
from ..layout import check_report
from ..onnx.graph import io_specs, load_onnx
from .buildspec import make_profiles
from .host import Host, probe_host
from .network import layer_types, parse_network

STAGE_VERSION = 1
RTX_UNSUPPORTED = {"NMS": "no runner for NonMaxSuppression in TensorRT-RTX", "PLUGIN": "no plugin library",
                   "PLUGIN_V2": "no plugin library", "PLUGIN_V3": "no plugin library"}


def _profile(inputs) -> dict:
    """The profile a default build would use, or why it needs more options."""
    try:
        return {"profiles": {k: [list(s) for s in v] for k, v in make_profiles(inputs, BuildConfig()).items()}}
    except InputError as exc:
        return {"profiles": None, "profile_note": str(exc)}


def check(onnx_path: str | os.PathLike, config: CheckConfig = CheckConfig(), *, host: Host | None = None
          ) -> StageResult:
    """Parse ``onnx_path`` with ``config.flavor`` (``auto``: the one a build would use) and report; the report's
    ``ok`` says whether a build can proceed, ``problems`` why not."""
    src = Path(onnx_path)
    model = load_onnx(src, check=False)
    host = host or probe_host()
    chosen = host.flavor(config.flavor)
    report_path = check_report(src)
    host.require_tensorrt(chosen)
    info = host.info(chosen)
    key = sha256_json({"stage": "check", "stage_version": STAGE_VERSION, "onnx": sha256_file(src),
                       "flavor": chosen, "version": info.version})

    def make(outputs: Outputs) -> dict:
        parsed = parse_network(src, chosen, strongly_typed=True, raise_errors=False)
        ops = Counter(n.op_type for n in model.graph.node)
        layers = layer_types(parsed.network) if not parsed.errors else Counter()
        problems = [f"{e.get('node_name') or 'node #' + str(e.get('node', '?'))} ({e.get('op') or '?'}): "
                    f"{e.get('desc', '').strip()}" for e in parsed.errors]
        if info.rtx:
            problems += [f"{n} {t} layer(s): {why}" for t, why in RTX_UNSUPPORTED.items() if (n := layers.get(t))]
        qdq = {"onnx_quantize": ops["QuantizeLinear"], "onnx_dequantize": ops["DequantizeLinear"],
               "quantize_layers": layers.get("QUANTIZE", 0), "dequantize_layers": layers.get("DEQUANTIZE", 0)}
        if not parsed.errors and ops["QuantizeLinear"] and qdq["quantize_layers"] < ops["QuantizeLinear"]:
            problems.append(f"{ops['QuantizeLinear'] - qdq['quantize_layers']} QuantizeLinear node(s) did not become "
                            "quantize layers")
        inputs, _ = io_specs(model)
        return {"input": str(src), "flavor": chosen, "tensorrt": info.label, "ok": not problems,
                "problems": problems, "parser_errors": parsed.errors, "onnx_nodes": len(model.graph.node),
                "layers": sum(layers.values()), "layer_types": dict(layers.most_common()), "qdq": qdq,
                "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in inputs],
                **_profile(inputs), "output": str(report_path)}

    return run_stage("check", key, report_path, report_path, make, config.force, inputs={"onnx": src},
                     overwrite=config.overwrite)


def require_ok(result: StageResult) -> None:
    """InputError naming the file and every problem when the check found any."""
    r = result.report
    if not r["ok"]:
        more = f" (+{len(r['problems']) - 5} more)" if len(r["problems"]) > 5 else ""
        raise InputError(f"{r['input']}: {r['tensorrt']} cannot build it: " + " | ".join(r["problems"][:5]) + more)
