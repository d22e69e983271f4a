"""The INT8 accuracy budget on the reference model at 320: sensitivity ranking, doubling fallback steps, caching.

Kept small (2 CPU cores): 24 val images, 16 calibration images (minmax, Q/DQ tensors only), 4 sensitivity
images and a handful of candidate convs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import trtbuild.tasks.budget as budget_module
from trtbuild.artifacts import read_json, sha256_file
from trtbuild.cli.present import format_budget
from trtbuild.config import BudgetConfig
from trtbuild.errors import InputError
from trtbuild.onnx.compare import sensitivity
from trtbuild.onnx.graph import load_onnx
from trtbuild.stages.precision.ranges import load_ranges
from trtbuild.stages.precision.qdq import quantize_qdq, sensitivity_candidates
from trtbuild.tasks.budget import _steps, fit_budget, layer_sensitivity

REFERENCE_PT = Path(__file__).resolve().parents[2] / "models" / "shapes-yolov8n.pt"
IMGSZ = 320


@pytest.fixture(scope="session")
def budget_workspace(tmp_path_factory) -> dict:
    """Reference model exported at 320 and simplified, a 24-image val set, 16 calibration images, minmax ranges."""
    from trtbuild.config import CalibrateConfig, ExportConfig
    from trtbuild.data.synth import generate_dataset
    from trtbuild.stages.export import export
    from trtbuild.stages.precision.calibrate import calibrate
    from trtbuild.stages.precision.int8 import qdq_tensors
    from trtbuild.stages.simplify import simplify

    root = tmp_path_factory.mktemp("budget")
    sim = simplify(export(str(REFERENCE_PT), ExportConfig(imgsz=(IMGSZ, IMGSZ), out_dir=root)).output).output
    data = generate_dataset(root / "val", n_train=0, n_val=24, seed=0, workers=1, progress=False)
    generate_dataset(root / "calib", n_train=16, n_val=0, seed=1, workers=1, progress=False)
    calib = CalibrateConfig(images=root / "calib", num=16, method="minmax", tensors=tuple(qdq_tensors(sim)))
    ranges = calibrate(sim, calib).output
    images = sorted((root / "calib" / "images" / "train").iterdir())
    return {"root": root, "sim": sim, "data": data, "ranges": ranges, "images": images}


def _breakable_conv(model, candidates, ranges) -> str:
    """A mid-network candidate whose input is a SiLU output read by that conv alone (so it is in no shared-scale
    group and a bad range for it reaches only this conv)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    readers = Counter(i for n in model.graph.node for i in n.input)
    convs = {n.name: n for n in model.graph.node}
    for name in candidates[6:]:
        t = convs[name].input[0]
        if readers[t] == 1 and t in ranges and getattr(producers.get(t), "op_type", "") == "Mul":
            return name
    raise AssertionError("no suitable conv found")


def test_doubling_steps_end_with_every_candidate():
    assert _steps(0) == [] and _steps(1) == [1] and _steps(2) == [1, 2]
    assert _steps(5) == [1, 2, 4, 5] and _steps(8) == [1, 2, 4, 8] and _steps(63)[-2:] == [32, 63]


def test_sensitivity_zero_for_identical_and_box_only_on_confident_anchors():
    rng = np.random.default_rng(0)
    ref = rng.random((2, 4 + 3, 50)).astype(np.float32) * 0.2  # every score ≤ 0.2: no confident anchor
    assert sensitivity(ref, ref.copy(), (320, 320)) == pytest.approx({"score": 0.0, "cls_err": 0.0, "box_err": 0.0})
    moved = ref.copy()
    moved[:, :4] += 10  # boxes move, but no anchor passes 0.25: box_err stays 0
    assert sensitivity(ref, moved, (320, 320))["box_err"] == 0.0
    ref[0, 4, 7] = 0.9
    assert sensitivity(ref, moved, (320, 320))["box_err"] == pytest.approx(10 / 320, rel=1e-5)


def test_sensitivity_ranks_a_broken_layer_first(budget_workspace):
    ws = budget_workspace
    model = load_onnx(ws["sim"])
    cands = sensitivity_candidates(model)
    ranges = load_ranges(ws["ranges"])
    broken = _breakable_conv(model, cands, ranges)
    tensor = next(n for n in model.graph.node if n.name == broken).input[0]
    ranges[tensor] = (-1e-3, 1e-3)  # everything it sees saturates at ±1e-3
    _, rep = quantize_qdq(model, ranges, exclude_nodes=set(cands) - {broken})
    assert rep.quantized_convs == [broken] and rep.quantized_tensors[tensor] == pytest.approx(1e-3 / 127)

    subset = cands[:3] + [broken] + cands[-2:]  # the first convs are the naturally most sensitive ones
    rows = layer_sensitivity(ws["sim"], ranges, ws["images"][:4], IMGSZ, candidates=subset, progress=False)
    assert [r["conv"] for r in rows][0] == broken
    assert sorted(r["conv"] for r in rows) == sorted(subset)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert rows[0]["score"] > 10 * rows[1]["score"]
    for r in rows:
        assert r["score"] == pytest.approx(r["cls_err"] + r["box_err"]) and r["cls_err"] >= -1e-6


def test_huge_budget_stops_at_full_int8_and_writes_no_fallback(budget_workspace):
    ws = budget_workspace
    sim = Path(ws["sim"])
    res = fit_budget(sim, ws["ranges"], BudgetConfig(data=ws["data"], max_map_drop=100.0, images=ws["images"][:4]))
    rep = res.report
    assert not res.skipped and res.output == Path(rep["output"]) and res.report_path == sim.with_name(
        "shapes-yolov8n.budget.json")
    assert rep["met"] and rep["chosen_step"] == 0 and len(rep["steps"]) == 1 and rep["sensitivity"] == []
    assert rep["steps"][0]["excluded"] == [] and Path(rep["output"]).name == "shapes-yolov8n.int8.onnx"
    assert not sim.with_name("shapes-yolov8n.int8fb.onnx").exists()
    assert sim.with_name("shapes-yolov8n.budget.json").is_file()
    step = rep["steps"][0]
    assert step["drop"] == pytest.approx((rep["fp32"]["map50_95"] - step["map50_95"]) * 100, abs=1e-3)
    assert "INT8 step 0" in format_budget(res)


def test_tiny_budget_falls_back_in_growing_steps_then_is_cached(budget_workspace, monkeypatch):
    ws = budget_workspace
    sim = Path(ws["sim"])
    cands = sensitivity_candidates(load_onnx(sim))
    subset = cands[:4] + cands[-4:]
    cfg = BudgetConfig(data=ws["data"], max_map_drop=0.0, images=ws["images"][:4], candidates=tuple(subset))
    # count the expensive work (evaluations, sensitivity ranking) instead of timing the cached run
    calls = Counter()
    for name in ("_eval", "layer_sensitivity"):
        real = getattr(budget_module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(budget_module, name, spy)
    res = fit_budget(sim, ws["ranges"], cfg)
    rep = res.report
    assert not res.skipped
    steps = rep["steps"]
    assert steps[0]["drop"] > 0, "full INT8 must lose some mAP here for the fallback to run"
    assert [len(s["excluded"]) for s in steps] == [0, *_steps(len(subset))[: len(steps) - 1]]
    ranked = [r["conv"] for r in rep["sensitivity"]]
    assert sorted(ranked) == sorted(subset)
    for s in steps[1:]:
        assert s["excluded"] == ranked[: len(s["excluded"])]
        assert s["drop"] == pytest.approx((rep["fp32"]["map50_95"] - s["map50_95"]) * 100, abs=1e-3)
    assert all(s["drop"] > 0 for s in steps[:-1])  # it stopped at the first step within budget, if any
    assert rep["met"] == (steps[-1]["drop"] <= 0) and (rep["met"] or len(steps[-1]["excluded"]) == len(subset))
    if not rep["met"]:
        assert "could not meet" in rep["message"]
    fb = sim.with_name("shapes-yolov8n.int8fb.onnx")
    assert res.output == Path(rep["output"]) == fb and sha256_file(fb) == steps[-1]["model_sha256"]
    fb_report = read_json(sim.with_name("shapes-yolov8n.int8fb.json"))
    assert fb_report["exclude"] == sorted(steps[-1]["excluded"])
    assert len(fb_report["qdq"]["quantized_convs"]) == len(cands) - len(steps[-1]["excluded"])

    assert calls == {"_eval": 1 + len(steps), "layer_sensitivity": 1}  # FP32 + each step; one ranking

    calls.clear()
    again = fit_budget(sim, ws["ranges"], cfg)
    assert again.skipped and again.report["steps"] == steps and again.output == fb
    assert calls == {}  # cached: nothing evaluated, nothing ranked


def test_bad_inputs_are_input_errors(budget_workspace, tmp_path):
    ws = budget_workspace
    with pytest.raises(InputError, match="does not exist"):
        fit_budget(ws["sim"], tmp_path / "missing.ranges.json", BudgetConfig(data=ws["data"]))
    with pytest.raises(InputError, match="max_map_drop=-1: must be ≥ 0") as err:
        fit_budget(ws["sim"], ws["ranges"], BudgetConfig(data=ws["data"], max_map_drop=-1))
    assert err.value.param == "max_map_drop"
