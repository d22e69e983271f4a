"""The precision report on the reference model at 320: files, the FP16-on-CPU note, figures that match an
independent evaluation, zero error of FP32 against itself, reuse of the budget's figures, and caching."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from trtbuild.artifacts import read_json
from trtbuild.config import BudgetConfig, FP16Config, ReportConfig
from trtbuild.stages.precision.fp16 import fp16
from trtbuild.stages.precision.int8 import int8
from trtbuild.tasks.budget import fit_budget
from trtbuild.config import EvalConfig
from trtbuild.tasks.evaluate import evaluate
from trtbuild.tasks.report import default_variants, format_report, precision_report

from .test_budget import IMGSZ, budget_workspace  # noqa: F401  (the session fixture, shared with test_budget)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(budget_workspace, tmp_path_factory):  # noqa: F811
    ws = budget_workspace
    sim = Path(ws["sim"])
    # FP32 + INT8 figures
    fit_budget(sim, ws["ranges"], BudgetConfig(data=ws["data"], max_map_drop=100.0, images=ws["images"][:4]))
    variants = {
        "FP32": sim,
        "FP16": fp16(sim, FP16Config(images=tuple(ws["images"]), imgsz=(IMGSZ, IMGSZ))).output,
        "INT8": int8(sim, ws["ranges"]).output,
    }
    prefix = tmp_path_factory.mktemp("report") / "shapes"
    images = ws["images"][:3]
    cfg = ReportConfig(data=ws["data"], variants=variants, compare_images=tuple(images), out_prefix=prefix)
    t0 = time.perf_counter()
    res = precision_report(sim, cfg)
    return {"res": res, "rep": res.report, "cfg": cfg, "prefix": prefix, "variants": variants, "images": images,
            "ws": ws, "seconds": time.perf_counter() - t0}


def test_files_exist_md_has_fp16_note_png_is_valid(report):
    prefix = report["prefix"]
    js, md, png = (prefix.with_name(f"shapes.precision.{e}") for e in ("json", "md", "png"))
    assert js.is_file() and md.is_file() and png.is_file()
    assert report["res"].output == md and report["res"].report_path == js and not report["res"].skipped
    text = md.read_text()
    assert "computes FP16 ops in FP32" in text and "not a check of FP16 numerics" in text
    for label in ("FP32", "FP16", "INT8"):
        assert f"| {label} |" in text
    header = next(line for line in text.splitlines() if line.startswith("| precision"))
    assert header.count("|") == 14  # 13 columns: no stray pipe in a header cell
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    import matplotlib.image as mpimg

    h, w = mpimg.imread(str(png)).shape[:2]
    assert h >= 300 and w >= 600
    saved = read_json(js)
    assert [v["label"] for v in saved["variants"]] == ["FP32", "FP16", "INT8"]
    assert "FP16" in format_report(report["rep"], skipped=False)


def test_figures_match_an_independent_evaluation(report):
    ws, rows = report["ws"], {r["label"]: r for r in report["rep"]["variants"]}
    assert rows["FP32"]["map_source"] == "budget" and rows["INT8"]["map_source"] == "budget"
    assert rows["FP16"]["map_source"] == "evaluated"
    for label in ("FP32", "INT8"):
        ref = evaluate(report["variants"][label], EvalConfig(data=ws["data"]))
        assert rows[label]["map50"] == pytest.approx(ref["map50"], abs=1e-9)
        assert rows[label]["map50_95"] == pytest.approx(ref["map50_95"], abs=1e-9)
        assert rows[label]["drop_map50_95"] == pytest.approx(
            (rows["FP32"]["map50_95"] - rows[label]["map50_95"]) * 100, abs=1e-3)


def test_fp32_against_itself_has_zero_error_and_counts_are_right(report):
    rows = {r["label"]: r for r in report["rep"]["variants"]}
    for part in ("all", "box", "score", "box_confident"):
        e = rows["FP32"]["error"][part]
        assert e["max_abs"] == 0 and e["mean_abs"] == 0 and e["mean_rel"] == 0 and e["cosine"] == pytest.approx(1)
    assert rows["FP32"]["drop_map50_95"] == 0 and rows["FP32"]["qdq_pairs"] == 0
    assert rows["INT8"]["qdq_pairs"] > 0 and rows["INT8"]["error"]["all"]["max_abs"] > 0
    assert rows["INT8"]["bytes"] < rows["FP16"]["bytes"] < rows["FP32"]["bytes"]
    assert 0.9 < rows["FP16"]["error"]["score"]["cosine"] <= 1 + 1e-9


def test_second_run_is_a_no_op_and_defaults_find_the_variants(report):
    again = precision_report(report["ws"]["sim"], report["cfg"])
    assert again.skipped and again.report["variants"] == report["rep"]["variants"]
    assert again.output == report["res"].output
    assert "up to date" in format_report(again.report, skipped=again.skipped)
    found = default_variants(report["ws"]["sim"])
    assert list(found)[:3] == ["FP32", "FP16", "INT8"]


def test_cli_writes_the_report_beside_the_model(report):
    from click.testing import CliRunner

    from trtbuild.cli.precision import budget_cmd, report_cmd

    ws = report["ws"]
    res = CliRunner().invoke(report_cmd, [str(ws["sim"]), "--data", str(ws["data"]), "--limit", "6",
                                          "--num-compare", "2"])
    assert res.exit_code == 0, res.output
    assert "FP32" in res.output and Path(ws["sim"]).with_name("shapes-yolov8n.precision.png").is_file()
    assert "--max-map-drop" in CliRunner().invoke(budget_cmd, ["--help"]).output
