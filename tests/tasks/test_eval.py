"""``trtbuild eval`` through the CLI on a synthetic shapes val split: agreement with ultralytics' val, the report,
unreadable images, and that the metric tells a trained model from a random one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.data.synth import CLASS_NAMES

from ..conftest import SHAPES_VAL_IMAGES

pytestmark = pytest.mark.slow

TOLERANCE = 0.005  # |ours - ultralytics| allowed on mAP50 and mAP50-95


def _eval(model, data, report: Path, *extra) -> tuple[dict, str]:
    res = CliRunner().invoke(cli, ["eval", str(model), "--data", str(data), "--report", str(report), "--quiet",
                                   *map(str, extra)])
    assert res.exit_code == 0, res.output
    return json.loads(report.read_text()), res.output


@pytest.fixture(scope="module")
def shapes_eval(shapes_onnx, shapes_val_data, tmp_path_factory) -> tuple[dict, str]:
    """(report, printed output) of ``trtbuild eval`` of the reference model on the session's val split."""
    return _eval(shapes_onnx, shapes_val_data.parent, tmp_path_factory.mktemp("eval") / "r.json")


def test_agrees_with_ultralytics_val(shapes_onnx, shapes_val_data, shapes_eval, tmp_path):
    from ultralytics import YOLO

    ours = shapes_eval[0]
    theirs = YOLO(str(shapes_onnx), task="detect").val(
        data=str(shapes_val_data), split="val", imgsz=640, batch=1, device="cpu", plots=False, verbose=False,
        project=str(tmp_path), name="val",
    )
    print(f"\nmAP50-95: trtbuild {ours['map50_95']:.4f}  ultralytics {theirs.box.map:.4f}"
          f"\nmAP50:    trtbuild {ours['map50']:.4f}  ultralytics {theirs.box.map50:.4f}"
          f"  ({ours['n_images']} images, {ours['n_instances']} instances)")
    assert abs(ours["map50_95"] - theirs.box.map) < TOLERANCE
    assert abs(ours["map50"] - theirs.box.map50) < TOLERANCE


def test_report_contents(shapes_eval, shapes_val_data):
    report, printed = shapes_eval
    data = yaml.safe_load(shapes_val_data.read_text())
    names = [data["names"][i] for i in range(data["nc"])]
    assert names == list(CLASS_NAMES)
    label_files = sorted((shapes_val_data.parent / "labels" / "val").glob("*.txt"))
    instances = sum(len(f.read_text().splitlines()) for f in label_files)

    assert report["n_images"] == SHAPES_VAL_IMAGES == len(label_files)
    assert report["n_instances"] == instances > 0
    assert report["unreadable_images"] == []
    for key in ("map50", "map50_95", "precision", "recall"):
        assert 0 <= report[key] <= 1, key
    assert report["map50"] > 0.5 and report["map50"] >= report["map50_95"] > 0.3  # a trained model
    assert report["precision"] > 0.5 and report["recall"] > 0.5
    per_class = report["per_class"]
    assert [c["class_id"] for c in per_class] == list(range(8))
    assert [c["name"] for c in per_class] == names
    assert sum(c["instances"] for c in per_class) == instances
    assert report["map50_95"] == pytest.approx(sum(c["map50_95"] for c in per_class) / 8)
    assert report["map50"] == pytest.approx(sum(c["map50"] for c in per_class) / 8)
    for name in ("all", *names):
        assert name in printed
    assert f"{report['map50_95']:.4f}" in printed


def test_unreadable_image_is_counted_not_fatal(shapes_onnx, shapes_val_data, tmp_path):
    src = shapes_val_data.parent
    root = tmp_path / "ds"
    images = sorted((src / "images" / "val").glob("*.jpg"))[:12]
    for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
        (root / kind / "val").mkdir(parents=True)
        for im in images:
            shutil.copy(src / kind / "val" / (im.stem + suffix), root / kind / "val" / (im.stem + suffix))
    names = yaml.safe_load(shapes_val_data.read_text())["names"]
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "val": "images/val", "names": names}))
    bad = root / "images" / "val" / images[3].name
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")

    report, printed = _eval(shapes_onnx, root, tmp_path / "r.json")
    assert [Path(p).resolve() for p in report["unreadable_images"]] == [bad.resolve()]
    assert report["n_images"] == len(images) - 1
    assert "skipped 1 unreadable image(s)" in printed
    assert report["map50"] > 0.5

    # skipping the image is the same as not having it
    bad.unlink()
    (root / "labels" / "val" / (bad.stem + ".txt")).unlink()
    clean, _ = _eval(shapes_onnx, root, tmp_path / "clean.json")
    assert clean["unreadable_images"] == [] and clean["n_images"] == report["n_images"]
    for key in ("map50", "map50_95", "precision", "recall", "n_instances"):
        assert clean[key] == report[key], key


def test_random_model_scores_far_lower(exported_yolov8n, shapes_val_data, shapes_eval, tmp_path):
    """A random yolov8n with the data set's 8 classes scores near 0; the 80-class one is refused outright."""
    from ultralytics.utils import ROOT

    refused = CliRunner().invoke(cli, ["eval", str(exported_yolov8n), "--data", str(shapes_val_data)])
    assert refused.exit_code == 2 and "predicts 80 classes, but" in refused.output and "names 8" in refused.output
    cfg = yaml.safe_load((ROOT / "cfg" / "models" / "v8" / "yolov8.yaml").read_text())
    (tmp_path / "yolov8n-8cls.yaml").write_text(yaml.safe_dump({**cfg, "nc": len(CLASS_NAMES)}))
    from trtbuild.config import ExportConfig
    from trtbuild.stages.export import export

    random8 = export(tmp_path / "yolov8n-8cls.yaml", ExportConfig(out_dir=tmp_path)).output
    reference = shapes_eval[0]
    random_, _ = _eval(random8, shapes_val_data, tmp_path / "random.json")
    print(f"\nrandom yolov8n.yaml: mAP50 {random_['map50']:.4f} mAP50-95 {random_['map50_95']:.4f}; "
          f"reference: mAP50 {reference['map50']:.4f} mAP50-95 {reference['map50_95']:.4f}")
    assert random_["n_images"] == reference["n_images"]
    assert random_["map50_95"] < 0.05 and random_["map50"] < 0.1
    assert reference["map50_95"] - random_["map50_95"] > 0.3
    assert [c["name"] for c in random_["per_class"]] == list(CLASS_NAMES)  # names come from data.yaml
