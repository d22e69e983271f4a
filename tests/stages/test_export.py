"""Export of yolov8n.yaml through ultralytics: shapes, anchors from the strides, metadata, caching, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.config import ExportConfig
from trtbuild.onnx.graph import get_metadata, io_specs, parse_literal
from trtbuild.owned import NotOursError
from trtbuild.stages.export import export

from ..helpers import files_in


def expected_anchors(h: int, w: int, strides) -> int:
    return sum((h // s) * (w // s) for s in strides)


def run_onnx(path, batch: int, h: int, w: int) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(
    "imgsz,batch,dynamic",
    [((640, 640), 1, False), ((640, 640), 1, True), ((320, 480), 2, False), ((320, 480), 1, True)],
    ids=["640-static", "640-dynamic", "320x480-static-b2", "320x480-dynamic"],
)
def test_export_shapes_and_metadata(tmp_path, imgsz, batch, dynamic):
    res = export("yolov8n.yaml", ExportConfig(imgsz=imgsz, batch=batch, dynamic=dynamic, out_dir=tmp_path))
    assert res.output == tmp_path / "yolov8n.onnx" and not res.skipped
    model = onnx.load(str(res.output))
    meta = get_metadata(model)
    names = parse_literal(meta["names"])
    stride = parse_literal(meta["stride"])
    strides = [stride // 4, stride // 2, stride] if isinstance(stride, int) else stride
    assert len(names) == 80 and meta["task"] == "detect"
    assert parse_literal(meta["imgsz"]) == list(imgsz)
    for key in ("source_sha256", "ultralytics_version", "trtbuild_version"):
        assert meta[key]
    h, w = imgsz
    anchors = expected_anchors(h, w, strides)
    (inp,), (out,) = io_specs(model)
    assert inp.shape[1:] == (3, h, w)
    assert out.shape[1:] == (4 + len(names), anchors)
    if dynamic:
        assert not isinstance(inp.shape[0], int) and not isinstance(out.shape[0], int)
        run_batch = 3
    else:
        assert inp.shape[0] == batch and out.shape[0] == batch
        run_batch = batch
    y = run_onnx(res.output, run_batch, h, w)
    assert y.shape == (run_batch, 4 + len(names), anchors)
    report = json.loads(res.report_path.read_text())
    assert report["outputs_spec"][0]["shape"][1:] == [84, anchors]


def test_dynamic_hw_makes_height_and_width_dynamic(tmp_path):
    res = export("yolov8n.yaml", ExportConfig(imgsz=(320, 320), dynamic_hw=True, out_dir=tmp_path))
    (inp,), (out,) = io_specs(onnx.load(str(res.output)))
    assert inp.shape[1] == 3 and not any(isinstance(d, int) for d in (inp.shape[0], *inp.shape[2:]))
    assert out.shape[1] == 84
    y = run_onnx(res.output, 1, 256, 384)
    assert y.shape == (1, 84, expected_anchors(256, 384, (8, 16, 32)))


def test_export_is_skipped_when_unchanged_and_redone_when_changed(tmp_path):
    cfg = ExportConfig(imgsz=(320, 320), out_dir=tmp_path)
    first = export("yolov8n.yaml", cfg)
    again = export("yolov8n.yaml", cfg)
    assert again.skipped and again.report["key"] == first.report["key"]
    changed = export("yolov8n.yaml", ExportConfig(imgsz=(352, 352), out_dir=tmp_path))
    assert not changed.skipped and changed.report["key"] != first.report["key"]
    # a damaged output is not up to date even though the key matches; it is rebuilt when the user says so (it is
    # no longer the file trtbuild wrote)
    changed.output.write_bytes(b"garbage")
    with pytest.raises(NotOursError, match="yolov8n.onnx: changed since trtbuild wrote it; pass overwrite=True"):
        export("yolov8n.yaml", ExportConfig(imgsz=(352, 352), out_dir=tmp_path))
    assert changed.output.read_bytes() == b"garbage"
    rebuilt = export("yolov8n.yaml", ExportConfig(imgsz=(352, 352), out_dir=tmp_path, overwrite=True))
    assert not rebuilt.skipped and onnx.load(str(rebuilt.output)).graph.node


def test_pt_checkpoint_is_exported_without_writing_beside_it(tmp_path):
    from ultralytics import YOLO

    src_dir = tmp_path / "src"
    src_dir.mkdir()
    YOLO("yolov8n.yaml").save(str(src_dir / "tiny.pt"))
    res = export(src_dir / "tiny.pt", ExportConfig(imgsz=(320, 320), out_dir=tmp_path / "out"))
    assert res.output.name == "tiny.onnx" and res.output.is_file()
    assert files_in(src_dir) == {"tiny.pt"}  # ultralytics would have written tiny.onnx here


@pytest.mark.parametrize(
    "make_input,needle",
    [
        (lambda d: d / "missing.pt", "no such file"),
        (lambda d: _write(d / "notes.pt", b"this is a text file, not a checkpoint\n"), "not a YOLO checkpoint"),
        (lambda d: _write(d / "empty.pt", b""), "file is empty"),
        (lambda d: _write(d / "model.txt", b"x"), "expected a YOLOv8 .pt checkpoint or a .yaml"),
    ],
    ids=["missing", "text-as-pt", "empty", "wrong-suffix"],
)
def test_bad_model_files_give_one_line_errors_and_no_artifact(tmp_path, make_input, needle):
    model = make_input(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(model), "--out-dir", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert str(model.name) in lines[0]
    assert files_in(out) == set()


def test_non_detect_model_is_refused_with_supported_tasks(tmp_path):
    result = CliRunner().invoke(cli, ["export", "yolov8n-seg.yaml", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "'segment' model" in result.output and "supports these tasks" in result.output and "detect" in result.output
    assert files_in(tmp_path) == set()


def test_bad_imgsz_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["export", "--imgsz", "333", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "multiples of 32" in result.output


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_relative_out_dir_and_pt_path(tmp_path, monkeypatch):
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)
    YOLO("yolov8n.yaml").save("tiny.pt")
    result = CliRunner().invoke(cli, ["export", "tiny.pt", "--imgsz", "320", "--out-dir", "engines"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "engines" / "tiny.onnx").is_file()
    assert files_in(tmp_path / "engines") == {"tiny.onnx", "tiny.export.json", ".trtbuild-files.json"}
