"""`trtbuild inspect`: the 10.x, 11.x and names-only inspector layouts (fixtures after NVIDIA's documented
examples), the headline against the real yolov8n ONNX, and the CLI (text, --json/--md/--plot, error exits)."""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from trtbuild.artifacts import sha256_file, write_json_atomic
from trtbuild.cli import cli
from trtbuild.trt.inspect import (
    LAYOUT_10,
    LAYOUT_11,
    LAYOUT_NAMES,
    inspect_path,
    metadata_nodes,
    parse_inspector,
    precision_of,
    summarize,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "inspector"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SILU0 = ["/model.0/conv/Conv", "/model.0/act/Sigmoid", "/model.0/act/Mul"]
FOLDED_OPS = {"Identity", "Constant", "Shape", "Gather"}  # what the synthetic engine below folds away


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_trt10_layout_layers_precisions_tactics_and_fused_groups():
    parsed = parse_inspector(fixture("trt10_detailed.layers.json"))
    assert parsed.layout == LAYOUT_10 and parsed.detailed
    assert [t["name"] for t in parsed.io_tensors] == ["images", "output0"]
    assert [layer.precision for layer in parsed.layers] == ["FP16", "FP16", "FP16", "FP16", "FP32", "FP32"]
    assert [len(layer.onnx_nodes) for layer in parsed.layers] == [0, 3, 3, 1, 3, 0]
    conv = parsed.layers[1]
    assert conv.layer_type == "CaskConvolution" and conv.onnx_nodes == SILU0
    assert conv.tactic.startswith("sm80_xmma_fprop_implicit_gemm_f16f16")  # TacticName wins over TacticValue
    assert parsed.layers[0].tactic == "0x00000000000003ea"  # no TacticName: the TacticValue
    assert parsed.layers[4].inputs[0].precision == "FP16"  # kgen layers give bare "Half"/"Float"

    rep = summarize(parsed, None)
    assert rep["headline"] == "ONNX node count unknown (pass --onnx) → 6 engine layers"
    assert rep["precision_histogram"] == {"FP16": 4, "FP32": 2}
    assert [g["onnx_nodes"] for g in rep["fused_groups"]][0] == SILU0
    assert len(rep["fused_groups"]) == 3 and rep["eliminated"] is None and rep["notes"] == []


def test_trt11_layout_io_tensors_and_split_datatype():
    parsed = parse_inspector(json.loads(fixture("trt11_detailed.layers.json")))  # parsed dicts work too
    assert parsed.layout == LAYOUT_11 and parsed.detailed
    assert parsed.io_tensors == [{"name": "images", "mode": "Input", "precision": "FP32"},
                                 {"name": "output0", "mode": "Output", "precision": "FP32"}]
    assert [layer.precision for layer in parsed.layers] == ["INT8", "INT8", "INT8", "FP16", "FP32"]
    assert [len(layer.onnx_nodes) for layer in parsed.layers] == [1, 6, 6, 3, 3]
    assert parsed.layers[1].onnx_nodes[2:5] == SILU0
    assert parsed.layers[1].outputs[0].datatype == "Int8"  # DataType, not the (kCHW32) Format string
    rep = summarize(parsed, None)
    assert rep["precision_histogram"] == {"INT8": 3, "FP16": 1, "FP32": 1}
    assert [len(g["onnx_nodes"]) for g in rep["fused_groups"]] == [6, 6, 3, 3]


def test_names_only_layout_says_unknown_and_how_to_rebuild():
    parsed = parse_inspector(fixture("names_only.layers.json"))
    assert parsed.layout == LAYOUT_NAMES and not parsed.detailed
    assert len(parsed.layers) == 6 and all(layer.precision is None for layer in parsed.layers)
    assert parsed.layers[1].onnx_nodes == SILU0  # guessed from "a + PWN(PWN(b), PWN(c))"
    assert parsed.layers[0].onnx_nodes == [] and parsed.layers[4].onnx_nodes == []  # reformat, ForeignNode range
    rep = summarize(parsed, SILU0 + ["/model.9/m/MaxPool", "/model.9/Concat"])
    assert rep["precision_histogram"] == {"unknown": 6}
    assert rep["headline"] == "5 ONNX nodes → 6 engine layers"
    assert rep["eliminated"] == ["/model.9/Concat"]  # /model.1/* guesses are not in this ONNX: dropped, not unmatched
    assert rep["unmatched"] == [] and rep["layers"][2]["absorbed"] == 0
    assert any("precision and tactic unknown" in n and "profilingVerbosity=detailed" in n for n in rep["notes"])


def test_layout_detection_by_top_level_keys():
    doc = json.loads(fixture("trt10_detailed.layers.json"))
    io = json.loads(fixture("trt11_detailed.layers.json"))["I/O Tensors"]
    as_11 = parse_inspector({"Layers": doc["Layers"], "I/O Tensors": io})  # 10.x-style tensors, 11.x I/O list
    assert as_11.layout == LAYOUT_11 and [t["mode"] for t in as_11.io_tensors] == ["Input", "Output"]
    no_bindings = parse_inspector({"Layers": doc["Layers"]})  # older TensorRT wrote no Bindings
    assert no_bindings.layout == LAYOUT_10 and no_bindings.io_tensors == []
    assert parse_inspector(doc["Layers"]).layout == LAYOUT_10  # a bare list of layers
    empty = parse_inspector({"Layers": [], "Bindings": ["images"]})  # ProfilingVerbosity.NONE
    assert empty.layout == LAYOUT_NAMES and "no layer information at all" in summarize(empty, None)["notes"][0]


@pytest.mark.parametrize("meta, nodes", [
    ("[ONNX Layer: a]\x1e[ONNX Layer: b/c]", ["a", "b/c"]),
    ("[ONNX Layer: a]\x1f[ONNX Layer: b]\x1e[ONNX Layer: c]", ["a", "b", "c"]),
    ("[ONNX Layer: qk][ONNX Layer: softmax]", ["qk", "softmax"]),
    (["[ONNX Layer: a]", "[ONNX Layer: b]"], ["a", "b"]),
    ({"onnx": "[ONNX Layer: a]"}, ["a"]),
    ("[ONNX Layer: a]\x1e[ONNX Layer: a]", ["a"]),
    ("", []),
    ("x\x1ey", ["x", "y"]),  # no markers: the records themselves
])
def test_metadata_variants(meta, nodes):
    assert metadata_nodes(meta) == nodes


@pytest.mark.parametrize("text, precision", [
    ("Row major linear FP32", "FP32"), ("Channel major FP16 format where channel % 8 == 0", "FP16"),
    ("Thirty-two wide channel vectorized row major Int8 format.", "INT8"), ("Half", "FP16"), ("Float", "FP32"),
    ("Row major linear BFloat16 format", "BF16"), ("Row major linear FP32 format (kLINEAR)", "FP32"),
    ("N/A due to dynamic shapes", None), ("Unknown format", None), (None, None),
])
def test_precision_names(text, precision):
    assert precision_of(text) == precision


def test_other_profiles_left_out_and_bad_entries_rejected():
    layer = json.loads(fixture("trt10_detailed.layers.json"))["Layers"][1]
    copy = dict(layer, Name=layer["Name"] + " [profile 1]")
    parsed = parse_inspector({"Layers": [layer, copy], "Bindings": ["images", "images [profile 1]"]})
    assert len(parsed.layers) == 1 and parsed.skipped_profile_layers == 1
    assert [t["name"] for t in parsed.io_tensors] == ["images"]
    assert "profiles other than the first" in summarize(parsed, None)["notes"][0]
    with pytest.raises(Exception, match=r'^x\.json: not TensorRT engine-inspector JSON \(no "Layers"'):
        parse_inspector({"Layers": [1, 2]}, source="x.json")


def synthetic_engine(onnx_path: Path) -> tuple[dict, dict]:
    """Inspector JSON (10.x layout) of a plausible FP16 engine of ``onnx_path``: every Conv→Sigmoid→Mul fused into
    one layer, FOLDED_OPS folded away, every other node its own layer, plus input/output reformats."""
    nodes = list(onnx.load(str(onnx_path), load_external_data=False).graph.node)
    users = defaultdict(list)
    for n in nodes:
        for name in n.input:
            users[name].append(n)
    fmt16 = {"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}
    reformat = {"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
                "Outputs": [fmt16], "TacticValue": "0x00000000000003ea", "StreamId": 0, "Metadata": ""}
    layers, taken, eliminated, silu = [reformat], set(), [], []
    for n in nodes:
        if n.name in taken:
            continue
        if n.op_type in FOLDED_OPS:
            eliminated.append(n.name)
            continue
        group = [n]
        out = users[n.output[0]]
        if n.op_type == "Conv" and sorted(u.op_type for u in out) == ["Mul", "Sigmoid"]:
            sig, mul = sorted(out, key=lambda u: u.op_type != "Sigmoid")
            if sig.output[0] in mul.input:
                group = [n, sig, mul]
                silu.append([g.name for g in group])
        taken.update(g.name for g in group)
        layers.append({"Name": " + ".join(g.name for g in group), "LayerType": "CaskConvolution",
                       "Outputs": [fmt16], "TacticName": "sm80_xmma_fprop", "StreamId": 0,
                       "Metadata": "\x1e".join(f"[ONNX Layer: {g.name}]" for g in group)})
    layers.append({"Name": "Reformatting CopyNode for Output Tensor 0", "LayerType": "Reformat",
                   "Outputs": [{"Format/Datatype": "Row major linear FP32"}], "StreamId": 0, "Metadata": ""})
    expected = {"n": len(nodes), "m": len(layers), "eliminated": eliminated, "silu": silu}
    return {"Layers": layers, "Bindings": ["images", "output0"]}, expected


@pytest.fixture(scope="module")
def engine_dir(exported_yolov8n, tmp_path_factory):
    """engines/m.fp16.engine.layers.json + its sidecar naming the real ONNX (relative path, true sha256)."""
    root = tmp_path_factory.mktemp("inspect")
    onnx_path = root / "models" / "m.fp16.onnx"
    onnx_path.parent.mkdir()
    onnx_path.write_bytes(Path(exported_yolov8n).read_bytes())
    data, expected = synthetic_engine(onnx_path)
    engine = root / "engines" / "m.fp16.engine"
    write_json_atomic(engine.with_name(engine.name + ".layers.json"), data)
    write_json_atomic(engine.with_name(engine.name + ".json"),
                      {"source_onnx": "../models/m.fp16.onnx", "source_onnx_sha256": sha256_file(onnx_path)})
    return {"engine": engine, "onnx": onnx_path, "expected": expected}


def test_headline_and_eliminated_against_the_real_onnx(engine_dir):
    exp = engine_dir["expected"]
    assert len(exp["silu"]) > 40 and exp["eliminated"]  # the model really has SiLU convs and foldable nodes
    rep = inspect_path(engine_dir["engine"])  # the .engine path: its .layers.json, the sidecar's source ONNX
    assert rep["headline"] == f"{exp['n']} ONNX nodes → {exp['m']} engine layers"
    assert rep["onnx"] == str(engine_dir["onnx"])  # source_onnx is relative to the sidecar's folder
    assert rep["eliminated"] == exp["eliminated"] and rep["unmatched"] == []
    assert [g["onnx_nodes"] for g in rep["fused_groups"]] == exp["silu"]
    assert rep["precision_histogram"] == {"FP16": exp["m"] - 1, "FP32": 1}
    absorbed = sum(r["absorbed"] for r in rep["layers"])
    assert absorbed + len(exp["eliminated"]) == exp["n"]


def test_changed_or_other_onnx(engine_dir, tmp_path):
    other = tmp_path / "other.onnx"  # the first Conv renamed: the engine names a node this ONNX lacks
    model = onnx.load(str(engine_dir["onnx"]))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    old, conv.name = conv.name, "renamed_conv"
    onnx.save(model, str(other))
    rep = inspect_path(engine_dir["engine"].with_name("m.fp16.engine.layers.json"), onnx=other)
    assert rep["unmatched"] == [old] and "renamed_conv" in rep["eliminated"]
    assert rep["eliminated"] == [n.name for n in model.graph.node
                                 if n.op_type in FOLDED_OPS or n.name == "renamed_conv"]
    assert any("1 node name(s) in the engine are not in this ONNX" in n for n in rep["notes"])

    moved = tmp_path / "engines" / "m.fp16.engine"  # same files, but the sidecar's sha256 no longer matches
    moved.parent.mkdir()
    moved.with_name("m.fp16.engine.layers.json").write_bytes(
        engine_dir["engine"].with_name("m.fp16.engine.layers.json").read_bytes())
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.fp16.onnx").write_bytes(other.read_bytes())
    write_json_atomic(moved.with_name("m.fp16.engine.json"),
                      {"source_onnx": "../models/m.fp16.onnx", "source_onnx_sha256": sha256_file(engine_dir["onnx"])})
    rep = inspect_path(moved)
    assert rep["headline"].startswith("ONNX node count unknown (pass --onnx)") and rep["eliminated"] is None
    assert any("changed since the engine was built" in n for n in rep["notes"])


def test_cli_text_and_files(engine_dir, tmp_path):
    exp = engine_dir["expected"]
    out = {k: tmp_path / "out" / f"report.{k}" for k in ("json", "md", "png")}
    res = CliRunner().invoke(cli, ["inspect", str(engine_dir["engine"]), "--json", str(out["json"]),
                                   "--md", str(out["md"]), "--plot", str(out["png"])])
    assert res.exit_code == 0, res.output
    headline = f"{exp['n']} ONNX nodes → {exp['m']} engine layers"
    assert res.stdout.splitlines()[0] == headline
    for part in ("fused groups", f"eliminated or folded: {len(exp['eliminated'])} ONNX node(s)", "precision histogram"):
        assert part in res.stdout
    saved = json.loads(out["json"].read_text())
    assert saved["headline"] == headline and saved["eliminated"] == exp["eliminated"]
    assert len(saved["layers"]) == exp["m"]
    md = out["md"].read_text()
    assert f"**{headline}**" in md and "## Fused groups" in md and exp["eliminated"][0] in md
    assert out["png"].read_bytes()[:8] == PNG_MAGIC
    # no temp files, only trtbuild's record of what it wrote
    assert [p.name for p in out["json"].parent.glob(".*")] == [".trtbuild-files.json"]


def test_cli_top_shows_the_biggest_layers_only():
    res = CliRunner().invoke(cli, ["inspect", str(FIXTURES / "trt11_detailed.layers.json"), "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "top 2 by ONNX nodes absorbed" in res.stdout
    table = res.stdout.split("engine layers (top 2 by ONNX nodes absorbed)")[1].split("\n\n")[0].splitlines()[3:]
    assert len(table) == 2 and all(line.rstrip().endswith(" 6") for line in table)
    assert "__myl_ResSofTran" not in res.stdout.split("fused groups")[0]


@pytest.mark.parametrize("content", [b"{not json", b'{"Bindings": []}', b"\xff\xfe\x00garbage"])
def test_cli_bad_file_exit_2_one_line(tmp_path, content):
    bad = tmp_path / "m.engine.layers.json"
    bad.write_bytes(content)
    res = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: ")


def test_cli_missing_file_exit_2(tmp_path):
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "nope.engine")])
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: {tmp_path / 'nope.engine'}: no such engine and no "
                                  "nope.engine.layers.json beside it; build one with `trtbuild build MODEL.onnx`")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_cli_engine_without_layers_json_needs_tensorrt(tmp_path):
    from trtbuild.errors import INSTALL_HINT

    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"not a real engine")
    res = CliRunner().invoke(cli, ["inspect", str(engine)])
    assert res.exit_code == 3
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TensorRT is") and INSTALL_HINT in lines[0]
