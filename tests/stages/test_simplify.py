"""onnxsim stage: fewer nodes, parity with ONNX Runtime, fallback to the original, caching, bad inputs."""

from __future__ import annotations

import shutil

import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import trtbuild
from trtbuild.cli import cli
from trtbuild.config import SimplifyConfig
from trtbuild.stages.simplify import parity, simplify

from ..helpers import files_in


@pytest.fixture()
def onnx_copy(tmp_path, exported_yolov8n):
    dst = tmp_path / "model.onnx"
    shutil.copyfile(exported_yolov8n, dst)
    return dst


def test_simplify_lowers_node_count_and_keeps_parity(onnx_copy):
    res = trtbuild.simplify(onnx_copy)
    r = res.report
    assert res.output == onnx_copy.with_name("model.sim.onnx") and r["simplified"]
    assert r["nodes_after"] < r["nodes_before"]
    assert len(onnx.load(str(res.output)).graph.node) == r["nodes_after"]
    assert r["ops_before"].get("Identity", 0) > r["ops_after"].get("Identity", 0)
    assert r["parity"]["ok"] and r["parity"]["max_rel"] < 1e-4
    # the parity check compares real outputs: rerun it independently on the written file
    again = parity(str(onnx_copy), str(res.output), SimplifyConfig())
    assert again["max_rel"] < 1e-4


def test_cli_prints_report_with_parity_errors(onnx_copy):
    result = CliRunner().invoke(cli, ["simplify", str(onnx_copy)])
    assert result.exit_code == 0, result.output
    assert "parity max abs" in result.output and "rel" in result.output
    assert "total nodes" in result.output and "file size" in result.output
    assert "Identity" in result.output


def _shift_class_bias(src, dst, shift=2.0):
    """Write a copy of ``src`` whose first class-score conv bias is shifted (changes only the scores)."""
    model = onnx.load(str(src))
    init = next(i for i in model.graph.initializer if ".cv3." in i.name and i.name.endswith("bias"))
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((arr + shift).astype(arr.dtype), init.name))
    onnx.save(model, str(dst))
    return model


def test_parity_detects_a_change_in_the_scores_alone(onnx_copy, tmp_path):
    broken = tmp_path / "broken.onnx"
    _shift_class_bias(onnx_copy, broken)
    check = parity(str(onnx_copy), str(broken), SimplifyConfig())
    # boxes are untouched, so only a per-channel scale can see the score change
    assert not check["ok"] and check["max_rel"] > 1e-2 and "exceeds" in check["reason"]
    assert check["max_abs"] < 1.0


def test_failed_onnxsim_keeps_original(onnx_copy, monkeypatch):
    import onnxsim

    def boom(*a, **k):
        raise RuntimeError("simulated onnxsim crash")

    monkeypatch.setattr(onnxsim, "simplify", boom)
    res = simplify(onnx_copy)
    assert not res.report["simplified"] and "simulated onnxsim crash" in res.report["reason"]
    kept = onnx.load(str(res.output))
    assert len(kept.graph.node) == len(onnx.load(str(onnx_copy)).graph.node)


def test_parity_breaking_simplification_keeps_original(onnx_copy, monkeypatch):
    import onnxsim

    real = onnxsim.simplify

    def wrong(model, **kw):  # a "simplifier" that silently changes the maths
        out, ok = real(model, **kw)
        for init in out.graph.initializer:
            if ".cv3." in init.name and init.name.endswith("bias"):
                arr = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array((arr + 2.0).astype(arr.dtype), init.name))
                break
        else:
            raise AssertionError("no class-score bias found to perturb")
        return out, ok

    monkeypatch.setattr(onnxsim, "simplify", wrong)
    res = simplify(onnx_copy)
    assert not res.report["simplified"] and "parity check failed" in res.report["reason"]
    result = CliRunner().invoke(cli, ["simplify", str(onnx_copy), "--force", "--strict"])
    assert result.exit_code == 1 and "simplification rejected" in result.output


def test_simplify_is_skipped_when_input_unchanged(onnx_copy):
    first = simplify(onnx_copy)
    assert simplify(onnx_copy).skipped
    model = onnx.load(str(onnx_copy))
    model.metadata_props.add(key="edited", value="1")
    onnx.save(model, str(onnx_copy))
    second = simplify(onnx_copy)
    assert not second.skipped and second.report["key"] != first.report["key"]


@pytest.mark.parametrize("kind", ["truncated", "text", "missing", "empty"])
def test_bad_onnx_gives_one_line_error_and_no_artifact(tmp_path, exported_yolov8n, kind):
    bad = tmp_path / "bad.onnx"
    if kind == "truncated":
        data = exported_yolov8n.read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    elif kind == "text":
        bad.write_text("not an onnx model\n")
    elif kind == "empty":
        bad.write_bytes(b"")
    before = files_in(tmp_path)
    result = CliRunner().invoke(cli, ["simplify", str(bad)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.onnx" in lines[0]
    assert files_in(tmp_path) == before
