"""``trtbuild infer`` end to end through the CLI: parity with ultralytics' predict, outputs, bad inputs, video.

Parity is checked on real photos (ultralytics' samples and scikit-image's) with two real models: yolov8n with
BatchNorm recalibrated on the photos (many detections) and the project's trained shapes model at a low conf.
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.data.synth import CLASS_NAMES, render_image

from ..helpers import skimage_photos, ultralytics_photos

pytestmark = pytest.mark.slow

IOU_MIN = 0.99
SCORE_TOL = 1e-3


def _cli(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _run_json(model, source, json_path, *extra) -> list[dict]:
    res = _cli("infer", model, source, "--json", json_path, "--quiet", *extra)
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in Path(json_path).read_text().splitlines()]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def _model_names(onnx_path) -> dict[int, str]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return {int(k): v for k, v in ast.literal_eval(sess.get_modelmeta().custom_metadata_map["names"]).items()}


def _write_synthetic(folder: Path, n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """``n`` rendered shapes images as JPEGs in ``folder``; returns {file name: labels [cls, x0, y0, x1, y1]}."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(n):
        img, lb, quality = render_image(seed, "train", i)
        name = f"synth_{i}.jpg"
        assert cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        labels[name] = lb
    return labels


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """The real photos, copied as files into one folder (both tools read the same bytes)."""
    folder = tmp_path_factory.mktemp("photos")
    paths = ultralytics_photos() + skimage_photos()
    assert len(paths) >= 6
    for p in paths:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("synth")
    return folder, _write_synthetic(folder, 3)


def _ultralytics_predict(model, folder: Path, conf: float, project: Path) -> dict[str, tuple]:
    """{file name: (boxes xyxy, scores, class ids)} from ultralytics' predictor on every image in ``folder``."""
    from ultralytics import YOLO

    results = YOLO(str(model), task="detect").predict(
        str(folder), conf=conf, iou=0.7, imgsz=640, device="cpu", verbose=False, save=False, project=str(project)
    )
    out = {}
    for r in results:
        b = r.boxes
        out[Path(r.path).name] = (b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64))
    return out


def _assert_parity(ours: list[dict], theirs: dict[str, tuple]) -> dict[str, int]:
    """Same images, same detection count per image, each of ours matched one-to-one to one of theirs with
    the same class, score within SCORE_TOL and IoU ≥ IOU_MIN. Returns {file name: detections}."""
    by_name = {Path(r["path"]).name: r for r in ours}
    assert set(by_name) == set(theirs)
    counts = {}
    for name, rec in by_name.items():
        tb, ts, tc = theirs[name]
        dets = rec["detections"]
        assert len(dets) == len(ts), f"{name}: {len(dets)} detections vs ultralytics' {len(ts)}"
        counts[name] = len(dets)
        if not dets:
            continue
        ob = np.array([d["box"] for d in dets], np.float64)
        os_ = np.array([d["score"] for d in dets])
        oc = np.array([d["class_id"] for d in dets])
        iou = _iou(ob, tb.astype(np.float64))
        free = np.ones(len(ts), bool)
        for i in range(len(dets)):
            ok = free & (tc == oc[i]) & (np.abs(ts - os_[i]) <= SCORE_TOL)
            assert ok.any(), f"{name}: detection {i} {dets[i]} has no same-class, same-score counterpart"
            j = int(np.argmax(np.where(ok, iou[i], -1)))
            assert iou[i, j] >= IOU_MIN, f"{name}: detection {i} {dets[i]} best IoU {iou[i, j]:.4f} with {tb[j]}"
            free[j] = False
    return counts


def test_parity_with_ultralytics_on_photos(calibrated_onnx, photo_dir, tmp_path):
    ours = _run_json(calibrated_onnx, photo_dir, tmp_path / "dets.jsonl")
    counts = _assert_parity(ours, _ultralytics_predict(calibrated_onnx, photo_dir, 0.25, tmp_path / "runs"))
    print(f"calibrated yolov8n, conf 0.25: detections per photo {counts}")
    assert len(counts) >= 6
    assert sum(n > 0 for n in counts.values()) >= 3 and sum(counts.values()) >= 50  # not an empty comparison


def test_parity_with_ultralytics_shapes_model(shapes_onnx, photo_dir, synth_dir, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(photo_dir, folder)
    for name in synth_dir[1]:
        shutil.copy(synth_dir[0] / name, folder / name)
    ours = _run_json(shapes_onnx, folder, tmp_path / "dets.jsonl", "--conf", "0.05")
    counts = _assert_parity(ours, _ultralytics_predict(shapes_onnx, folder, 0.05, tmp_path / "runs"))
    print(f"shapes-yolov8n, conf 0.05: detections per image {counts}")
    assert sum(counts[n] for n in synth_dir[1]) > 0  # the trained model finds shapes: the check is not empty


def test_json_lines_format(shapes_onnx, synth_dir, tmp_path):
    folder, labels = synth_dir
    records = _run_json(shapes_onnx, folder, tmp_path / "dets.jsonl")
    names = _model_names(shapes_onnx)
    assert sorted(names.values()) == sorted(CLASS_NAMES)
    assert [Path(r["path"]).name for r in records] == sorted(labels)
    found = total = 0
    for rec in records:
        assert set(rec) == {"path", "width", "height", "detections", "stream", "captured", "latency_ms"}
        assert rec["stream"] == 0 and rec["latency_ms"] > 0 and abs(rec["captured"] - time.time()) < 600
        img = cv2.imread(rec["path"])
        assert (rec["height"], rec["width"]) == img.shape[:2]
        scores = [d["score"] for d in rec["detections"]]
        assert scores == sorted(scores, reverse=True)
        for d in rec["detections"]:
            assert set(d) == {"box", "score", "class_id", "class_name"}
            x1, y1, x2, y2 = d["box"]
            assert len(d["box"]) == 4 and all(isinstance(v, float) for v in d["box"])
            assert 0 <= x1 <= x2 <= rec["width"] and 0 <= y1 <= y2 <= rec["height"]
            assert 0.25 <= d["score"] <= 1 and isinstance(d["class_id"], int)
            assert d["class_name"] == names[d["class_id"]]
        # the boxes are in original pixels: most labelled shapes are found where they are drawn
        lb = labels[Path(rec["path"]).name]
        if len(lb) and rec["detections"]:
            det_boxes = np.array([d["box"] for d in rec["detections"]])
            det_cls = np.array([d["class_id"] for d in rec["detections"]])
            iou = _iou(lb[:, 1:].astype(np.float64), det_boxes)
            found += int(((iou >= 0.5) & (lb[:, :1] == det_cls[None, :])).any(1).sum())
        total += len(lb)
    assert total > 0 and found >= 0.5 * total, f"{found} of {total} labelled shapes found"


def test_save_annotated(calibrated_onnx, photo_dir, tmp_path):
    save = tmp_path / "annotated"
    records = _run_json(calibrated_onnx, photo_dir, tmp_path / "dets.jsonl", "--save", save)
    pictures = [Path(r["path"]).stem + ".jpg" for r in records]
    assert sorted(p.name for p in save.iterdir()) == sorted([*pictures, ".trtbuild-files.json"])
    assert all(Path(r["saved"]) == save / (Path(r["path"]).stem + ".jpg") for r in records)
    with_dets = 0
    for rec in records:
        src = cv2.imread(rec["path"])
        out = cv2.imread(str(save / (Path(rec["path"]).stem + ".jpg")))
        assert out is not None and out.shape == src.shape
        changed = (np.abs(out.astype(np.int16) - src).max(2) > 60).mean()  # JPEG re-encoding alone stays below
        if rec["detections"]:
            with_dets += 1
            assert changed > 1e-3, f"{rec['path']}: annotated image looks like the input"
            x1, y1, x2, y2 = (int(round(v)) for v in rec["detections"][0]["box"])
            edge = np.abs(out[y1:y2 + 1, x1].astype(np.int16) - src[y1:y2 + 1, x1]).max(1)
            assert (edge > 30).mean() > 0.5  # the top box's left edge is drawn
        else:
            assert changed < 1e-3, f"{rec['path']}: no detections but the picture changed"
    assert with_dets >= 3


def test_bad_files_in_folder_are_skipped(shapes_onnx, synth_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(synth_dir[1])[:2]
    for name in good:
        shutil.copy(synth_dir[0] / name, folder / name)
    (folder / "notes.txt").write_text("not an image\n")
    data = (synth_dir[0] / good[0]).read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    res = _cli("infer", shapes_onnx, folder, "--json", tmp_path / "d.jsonl", "--quiet")
    assert res.exit_code == 0, res.output
    assert "3 file(s) skipped" in res.output
    for bad in ("notes.txt", "truncated.jpg", "empty.png"):
        assert any(line.startswith("skipped") and bad in line for line in res.stderr.splitlines()), bad
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [Path(r["path"]).name for r in records] == good


def test_bad_sources_exit_2(shapes_onnx, synth_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, needle in [
        (("infer", shapes_onnx, empty), "empty"),
        (("infer", shapes_onnx, tmp_path / "missing"), "no such file or folder; give an image"),
        (("infer", tmp_path / "missing.onnx", synth_dir[0]), "missing.onnx"),
    ]:
        res = _cli(*args, "--json", tmp_path / "d.jsonl", "--quiet")
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
        assert not (tmp_path / "d.jsonl").exists()


def test_video_frames(shapes_onnx, tmp_path):
    img, _, _ = render_image(3, "val", 0)
    img = cv2.resize(img, (640, 480))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    assert writer.isOpened()
    for _ in range(5):
        writer.write(img)
    writer.release()
    records = _run_json(shapes_onnx, video, tmp_path / "d.jsonl")
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4]
    assert all(r["path"] == str(video) and (r["width"], r["height"]) == (640, 480) for r in records)
    assert records[0]["detections"]  # the shapes are found in the frames
    assert all(r["detections"] == records[0]["detections"] for r in records)  # identical frames, same result
    save = tmp_path / "frames"
    saved = _run_json(shapes_onnx, video, tmp_path / "d2.jsonl", "--save", save)
    assert sorted(p.name for p in save.iterdir()) == [".trtbuild-files.json", "clip.mp4"]  # one video per stream
    assert {r["saved"] for r in saved} == {str(save / "clip.mp4")}
    cap = cv2.VideoCapture(str(save / "clip.mp4"))
    annotated = []
    while (got := cap.read())[0]:
        annotated.append(got[1])
    assert len(annotated) == 5 and annotated[0].shape == (480, 640, 3)
    assert np.abs(annotated[0].astype(int) - img.astype(int)).mean() > 0.5  # the boxes are drawn on it


def test_stdout_without_json(shapes_onnx, synth_dir, tmp_path):
    res = _cli("infer", shapes_onnx, synth_dir[0], "--quiet")
    assert res.exit_code == 0, res.output
    printed = [json.loads(line) for line in res.stdout.splitlines()]
    timing = ("captured", "latency_ms")  # when each frame was taken and how long it took: differ run to run
    assert [{k: v for k, v in r.items() if k not in timing} for r in printed] == \
        [{k: v for k, v in r.items() if k not in timing} for r in _run_json(shapes_onnx, synth_dir[0],
                                                                             tmp_path / "d.jsonl")]
    assert len(printed) == len(synth_dir[1])
    assert f"{len(printed)} image(s)" in res.stderr  # the summary goes to stderr, keeping stdout pure JSON


def test_infer_all_pads_a_static_batch_and_drops_the_padding(exported_yolov8n):
    """Runner.infer_all: any number of images through a static batch-1 model equals one-by-one runs."""
    import numpy as np

    from trtbuild.runtime.onnx import OnnxRunner

    runner = OnnxRunner(exported_yolov8n)
    x = np.random.default_rng(1).random((3, 3, 320, 320), dtype=np.float32)
    together = runner.infer_all(x)
    one_by_one = np.concatenate([runner.infer(x[i : i + 1])[0] for i in range(3)])
    assert together.shape == one_by_one.shape == (3, 84, 2100)
    np.testing.assert_array_equal(together, one_by_one)
    import onnx

    in_memory = OnnxRunner(onnx.load(str(exported_yolov8n)))
    np.testing.assert_array_equal(in_memory.infer_all(x[:1]), one_by_one[:1])


def test_an_onnx_that_is_not_a_detector_is_one_line(synth_dir, tmp_path):
    """A valid ONNX whose output is not a YOLOv8 head [B, 4+nc, A] is refused in one line naming the file."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 3, 1, 1])
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["images"], ["pooled"], name="pool")],
                              "not-yolo", [x], [y])
    path = tmp_path / "classifier.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = CliRunner().invoke(cli, ["infer", str(path), str(synth_dir[0]), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: output [1, 3, 1, 1] is not a YOLOv8 detect head")
