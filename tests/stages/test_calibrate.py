"""INT8 calibration: image selection, exact inference preprocessing, content-hash key, cached stage, ranges, table."""

from __future__ import annotations

import shutil
import struct
import warnings
from dataclasses import replace

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.cli.precision import calibrate_cmd
from trtbuild.config import CalibrateConfig
from trtbuild.errors import FewImagesWarning, InputError
from trtbuild.owned import NotOursError
from trtbuild.data.images import select_images
from trtbuild.stages.precision.calibrate import calibrate, calibration_key
from trtbuild.stages.precision.ranges import load_ranges
from trtbuild.stages.precision.qdq import quantize_qdq
from trtbuild.stages.precision.ranges import CalibrationData, _groups, compute_ranges
from trtbuild.stages.precision.table import amax, parse_table
from trtbuild.vision.io import read_image
from trtbuild.vision.letterbox import letterbox_batch

from ..helpers import extra_photos, skimage_photos, ultralytics_photos


@pytest.fixture(scope="module")
def sim_model(tmp_path_factory, exported_yolov8n):
    """yolov8n.yaml at 320, static batch 1, simplified (the graph calibration sees in the pipeline)."""
    from trtbuild.stages.simplify import simplify

    dst = tmp_path_factory.mktemp("calib_model") / "yolov8n.onnx"
    shutil.copyfile(exported_yolov8n, dst)
    return simplify(dst).output


def _all_photos():
    return ultralytics_photos() + skimage_photos() + extra_photos()


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """13 real pictures (colour, grayscale, RGBA and a 16-bit PNG made from bus.jpg), a corrupt .jpg and a .txt."""
    folder = tmp_path_factory.mktemp("calib_photos")
    photos = _all_photos()
    assert len(photos) == 12
    for p in photos:
        shutil.copyfile(p, folder / p.name)
    cv2.imwrite(str(folder / "depth16.png"), cv2.imread(str(photos[0])).astype(np.uint16) * 257)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("labels are not needed\n")
    return folder


@pytest.fixture()
def calib_dir(tmp_path, photo_dir):
    dst = tmp_path / "calib"
    shutil.copytree(photo_dir, dst)
    return dst


def _small_tensor_set(model_path, convs=6):
    """Graph input plus the inputs and outputs of the first few Convs: keeps entropy fast."""
    model = onnx.load(str(model_path))
    names = ["images"]
    for node in [n for n in model.graph.node if n.op_type == "Conv"][:convs]:
        names += [node.input[0], node.output[0]]
    return list(dict.fromkeys(names))


def test_select_reports_and_skips_bad_files_and_warns(photo_dir):
    with pytest.warns(FewImagesWarning, match="unstable"):
        selected, skipped = select_images(photo_dir)
    photos = {p.name for p in _all_photos()} | {"depth16.png"}
    assert {p.name for p in selected} == photos  # grayscale, RGBA and 16-bit pictures are used, as BGR uint8
    assert cv2.imread(str(photo_dir / "coins.png"), cv2.IMREAD_UNCHANGED).ndim == 2
    assert cv2.imread(str(photo_dir / "logo.png"), cv2.IMREAD_UNCHANGED).shape[2] == 4
    assert cv2.imread(str(photo_dir / "depth16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    reasons = {p.name: r for p, r in skipped}
    assert set(reasons) == {"broken.jpg", "notes.txt"}
    assert "decoded" in reasons["broken.jpg"] and "not an image" in reasons["notes.txt"]


def test_selection_is_seeded_deterministic_and_order_free(photo_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewImagesWarning)
        picks = {seed: [p.name for p in select_images(photo_dir, num=3, seed=seed)[0]] for seed in range(5)}
        assert picks[0] == [p.name for p in select_images(photo_dir, num=3, seed=0)[0]]
        assert len({tuple(v) for v in picks.values()}) > 1  # the seed matters
        assert all(len(v) == 3 and v == sorted(v) for v in picks.values())
        # same files created in the opposite order (another directory order): same selection
        other = tmp_path / "reversed"
        other.mkdir()
        for p in sorted(photo_dir.iterdir(), reverse=True):
            shutil.copyfile(p, other / p.name)
        assert [p.name for p in select_images(other, num=3, seed=0)[0]] == picks[0]


def test_no_usable_image_is_an_input_error(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"nope")
    (folder / "b.txt").write_text("x")
    with pytest.raises(InputError, match="no usable image") as err:
        select_images(folder)
    assert str(folder) in str(err.value) and "images=DIR" in str(err.value)


def test_fewer_than_eight_usable_images_are_refused_in_one_line(photo_dir, tmp_path, sim_model):
    few = tmp_path / "few"
    few.mkdir()
    for p in _all_photos()[:5]:
        shutil.copyfile(p, few / p.name)
    (few / "cut.jpg").write_bytes((photo_dir / "bus.jpg").read_bytes()[:300])  # truncated: does not decode
    with pytest.raises(InputError, match="has 5 usable image.*1 skipped: cut.jpg.*at least 8 are needed"):
        select_images(few)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["calibrate", str(sim_model), "--images", str(few), "--out-dir", str(out)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "--images" in result.output and not out.exists()  # nothing written
    with pytest.raises(InputError, match="does not exist"):
        select_images(tmp_path / "missing")


def test_preprocessing_is_exactly_letterbox_batch(photo_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewImagesWarning)
        selected, _ = select_images(photo_dir)
    data = CalibrationData(selected, 320, batch=3)
    batches = list(data)
    assert len(data) == len(batches) == 5 and [len(b) for b in batches] == [3, 3, 3, 3, 1]
    expected, _ = letterbox_batch([read_image(p) for p in selected[:3]], (320, 320))
    assert batches[0].dtype == np.float32 and batches[0].shape == (3, 3, 320, 320)
    assert np.array_equal(batches[0], expected)


def test_key_changes_when_one_image_changes(sim_model, calib_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewImagesWarning)
        selected, _ = select_images(calib_dir)
    key = calibration_key(sim_model, selected, (320, 320), "entropy", 8, num_bins=2048)
    assert key == calibration_key(sim_model, selected, (320, 320), "entropy", 8, num_bins=2048)
    for other in [
        calibration_key(sim_model, selected, (320, 320), "minmax", 8, num_bins=2048),
        calibration_key(sim_model, selected, (320, 320), "entropy", 4, num_bins=2048),
        calibration_key(sim_model, selected, (320, 320), "entropy", 8, num_bins=1024),
        calibration_key(sim_model, selected, (640, 640), "entropy", 8, num_bins=2048),
    ]:
        assert other != key
    with open(selected[2], "ab") as f:  # one byte appended to ONE image
        f.write(b"\0")
    assert calibration_key(sim_model, selected, (320, 320), "entropy", 8, num_bins=2048) != key


def test_stage_writes_ranges_and_table_then_skips(sim_model, calib_dir, tmp_path):
    out = tmp_path / "out"
    cfg = CalibrateConfig(images=calib_dir, out_dir=out, batch=4, method="minmax")
    first = calibrate(sim_model, cfg)
    r = first.report
    assert not first.skipped and first.output == out / "yolov8n.ranges.json"
    assert {s["path"] for s in r["skipped"]} == {"broken.jpg", "notes.txt"}
    assert len(r["images"]) == 13 and "unstable" in r["warning"] and r["model_batch"] == 1
    assert r["collector"] == "one-pass"
    ranges = load_ranges(first.output)
    assert len(ranges) > 200 and r["table"]["tensors"] == len(ranges)
    lo, hi = ranges["images"]
    assert 0.0 <= lo <= hi <= 1.0 and hi > 0.9  # letterboxed 0..1 pixels
    # the TensorRT table: one line per tensor, scale = float32(amax) / 127 in float32, except the tensors the
    # Q/DQ ONNX quantizes, which carry their scale group's (checked against the int8 ONNX in test_calibrate_fast)
    header, scales = parse_table(out / "yolov8n.calib.cache")
    assert header == r["table"]["header"] == "TRT-100300-EntropyCalibration2"
    assert list(scales) == list(ranges)
    _, plan = quantize_qdq(onnx.load(str(sim_model)), ranges)
    assert 0 < len(plan.quantized_tensors) < len(ranges)
    for name, rng in ranges.items():
        want = np.float32(plan.quantized_tensors[name]) if name in plan.quantized_tensors else \
            np.float32(np.float32(amax(rng)) / np.float32(127))
        assert struct.pack(">f", scales[name]) == struct.pack(">f", want), name
    # same inputs: skipped; outputs untouched
    mtime = first.output.stat().st_mtime_ns
    again = calibrate(sim_model, cfg)
    assert again.skipped and first.output.stat().st_mtime_ns == mtime
    # one image changed: recalibrated
    victim = calib_dir / "bus.jpg"
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert not calibrate(sim_model, cfg).skipped
    # an edited table is not up to date, and no longer trtbuild's: replaced only with overwrite
    (out / "yolov8n.calib.cache").write_text("TRT-100300-EntropyCalibration2\n")
    with pytest.raises(NotOursError, match="yolov8n.calib.cache: changed since trtbuild wrote it"):
        calibrate(sim_model, cfg)
    assert (out / "yolov8n.calib.cache").read_text() == "TRT-100300-EntropyCalibration2\n"
    assert not calibrate(sim_model, replace(cfg, overwrite=True)).skipped


def test_minmax_contains_entropy_and_percentile(sim_model, photo_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewImagesWarning)
        selected, _ = select_images(photo_dir)
    tensors = _small_tensor_set(sim_model)
    results = {
        m: compute_ranges(sim_model, CalibrationData(selected, 320, batch=4), m, num_bins=512, tensors=tensors)
        for m in ("minmax", "entropy", "percentile", "mse")
    }
    for method, ranges in results.items():
        assert list(ranges) == tensors, method  # restricted to the tensors asked for, in graph order
        for lo, hi in ranges.values():
            assert type(lo) is float and type(hi) is float and lo <= hi
    mm = results["minmax"]
    for method in ("entropy", "percentile", "mse"):
        for name, (lo, hi) in results[method].items():
            slack = 1e-6 * max(abs(mm[name][0]), abs(mm[name][1]))  # entropy's session runs unfused: last bits
            assert mm[name][0] - slack <= lo and hi <= mm[name][1] + slack, (method, name)
            assert amax((lo, hi)) <= amax(mm[name]) * (1 + 1e-6)
    assert 0.0 <= results["entropy"]["images"][0] and results["entropy"]["images"][1] <= 1.0
    with pytest.raises(InputError, match="no (activation )?tensor named 'nope'"):
        compute_ranges(sim_model, [], "minmax", tensors=["nope"])


def test_static_batch_is_fed_in_model_sized_groups():
    batch = np.arange(3 * 3 * 2 * 2, dtype=np.float32).reshape(3, 3, 2, 2)
    feeds, padded = _groups(batch, "images", 2, (2, 2), np.float32)
    assert [f["images"].shape[0] for f in feeds] == [2, 2] and padded == 1
    assert np.array_equal(feeds[1]["images"][0], batch[2]) and np.array_equal(feeds[1]["images"][1], batch[2])
    feeds, padded = _groups(batch, "images", None, None, np.float32)
    assert len(feeds) == 1 and feeds[0]["images"].shape[0] == 3 and padded == 0
    with pytest.raises(InputError, match="does not fit"):
        _groups(batch, "images", 1, (4, 4), np.float32)


def test_cli_prints_summary(sim_model, calib_dir, tmp_path):
    args = [str(sim_model), "--images", str(calib_dir), "--method", "minmax", "--batch", "4",
            "--out-dir", str(tmp_path / "cli")]
    result = CliRunner().invoke(calibrate_cmd, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "13 image(s)" in out and "2 file(s) skipped" in out and "tensors" in out
    assert "warning: only 13 calibration image(s)" in out
    assert "broken.jpg: cannot be decoded" in out and "notes.txt" in out
    assert "yolov8n.ranges.json" in out and "yolov8n.calib.cache" in out
    again = CliRunner().invoke(calibrate_cmd, args)
    assert again.exit_code == 0 and "up to date" in again.output


def test_yolo_dataset_companions_are_not_reported_as_skipped(tmp_path):
    """A YOLO data set used as a calibration folder: labels, data.yaml and READMEs are expected files."""
    from trtbuild.data.synth import generate_dataset

    generate_dataset(tmp_path / "ds", n_train=8, n_val=0, seed=1, workers=1, progress=False)
    (tmp_path / "ds" / "README.md").write_text("about these images\n")
    (tmp_path / "ds" / "notes.txt").write_text("not an image, not a label\n")
    selected, skipped = select_images(tmp_path / "ds", num=10)
    assert len(selected) == 8
    assert [p.name for p, _ in skipped] == ["notes.txt"]
