"""Bad inputs across every command: each case asserts the exit code, one ``error:`` line naming what is wrong, no
traceback, and what the folder holds before and after (nothing lost, nothing partial).

Read-only and full file systems are real: small tmpfs mounts (the tests run as root in CI; elsewhere those cases
skip with the reason).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml
from click.testing import CliRunner
from onnx import TensorProto, helper

from trtbuild.cli import cli
from trtbuild.cuda.probe import CudaProbe
from trtbuild.trt.compat import TensorRTInfo
from trtbuild.trt.host import Host

from ..helpers import photo_folder, refused, ultralytics_photos

NO_TENSORRT = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj=NO_TENSORRT)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def shas_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def not_a_detector(tmp_path_factory) -> Path:
    """A valid ONNX with an image input that is not a YOLO detector (Add of the input to itself)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Add", ["images", "images"], ["out"])], "g", [x], [y])
    path = tmp_path_factory.mktemp("notdet") / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def data80(shapes_val_data, tmp_path_factory) -> Path:
    """The synthetic val images under a data YAML naming yolov8n's 80 classes (labels 0-7 are among them)."""
    src = yaml.safe_load(Path(shapes_val_data).read_text())
    path = tmp_path_factory.mktemp("data80") / "data.yaml"
    path.write_text(yaml.safe_dump({**src, "nc": 80, "names": {i: str(i) for i in range(80)}}))
    return path


@pytest.fixture(scope="module")
def model(exported_yolov8n, tmp_path_factory) -> Path:
    """The session's yolov8n (320, 80 classes), simplified, in a folder of its own."""
    from trtbuild.stages.simplify import simplify

    folder = tmp_path_factory.mktemp("bad-model")
    shutil.copyfile(exported_yolov8n, folder / "yolov8n.onnx")
    return simplify(folder / "yolov8n.onnx").output


def _mount(path: Path, size: str, readonly: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root")


@pytest.fixture
def readonly_dir(tmp_path):
    path = tmp_path / "ro"
    _mount(path, "1m", readonly=True)
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.fixture
def full_dir(tmp_path):
    path = tmp_path / "full"
    _mount(path, "256k", readonly=False)
    yield path
    subprocess.run(["umount", str(path)], check=False)


# ------------------------------------------------------------------------------------------------ model files
@pytest.mark.parametrize("case", ["missing", "text", "corrupt_pt", "seg_yaml"])
def test_export_refuses_what_is_not_a_detector_checkpoint(tmp_path, case):
    out = tmp_path / "out"
    model, needle = {"missing": (tmp_path / "nope.pt", "nope.pt"),
                     "text": (tmp_path / "notes.txt", "notes.txt"),
                     "corrupt_pt": (tmp_path / "broken.pt", "broken.pt"),
                     "seg_yaml": ("yolov8n-seg.yaml", "supports these tasks")}[case]
    if case == "text":
        model.write_text("hello")
    if case == "corrupt_pt":
        model.write_bytes(b"PK\x03\x04 definitely not a torch checkpoint")
    refused(run("export", model, "--out-dir", out), 2, needle)
    assert listing(out) == []  # no output folder left behind


@pytest.mark.parametrize("imgsz, needle", [("100000", "larger than 8192"), ("33", "multiples of 32"),
                                            ("abc", "expected an integer")])
def test_export_bad_imgsz_is_one_usage_line(tmp_path, imgsz, needle):
    refused(run("export", "yolov8n.yaml", "--imgsz", imgsz, "--out-dir", tmp_path), 2, "--imgsz", needle)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
def test_names_with_folders_are_refused(tmp_path, name):
    refused(run("export", "yolov8n.yaml", "--name", name, "--out-dir", tmp_path / "out"), 2, "--name",
            "without folders")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "jpeg"])
def test_simplify_refuses_unreadable_onnx(model, tmp_path, case):
    path = tmp_path / "m.onnx"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(model.read_bytes()[:4000])
    elif case == "jpeg":
        path.write_bytes(ultralytics_photos()[0].read_bytes())
    before = listing(tmp_path)
    refused(run("simplify", path), 2, "m.onnx")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("command", ["infer", "eval", "bench", "budget", "report"])
def test_an_onnx_that_is_not_a_detector_is_one_line(not_a_detector, shapes_val_data, tmp_path, command):
    args = {"infer": ["infer", not_a_detector, ultralytics_photos()[0]],
            "eval": ["eval", not_a_detector, "--data", shapes_val_data],
            "bench": ["bench", not_a_detector, "--iters", "1", "--warmup", "0", "--out-dir", tmp_path / "b"],
            "budget": ["budget", not_a_detector, "--data", shapes_val_data],
            "report": ["report", not_a_detector, "--data", shapes_val_data]}[command]
    before = listing(not_a_detector.parent)
    line = refused(run(*args), 2, "add.onnx")
    assert "detect" in line or "ranges" in line
    assert listing(not_a_detector.parent) == before and not (tmp_path / "b").exists()


def test_infer_sources(model, tmp_path):
    refused(run("infer", model, tmp_path / "missing"), 2, "missing", "no such file or folder; give an image")
    (tmp_path / "empty").mkdir()
    refused(run("infer", model, tmp_path / "empty"), 2, "empty", "is empty")
    refused(run("infer", tmp_path / "model.xyz", ultralytics_photos()[0]), 2, "model.xyz")


def test_two_pictures_with_one_stem_are_both_kept(model, tmp_path):
    src = tmp_path / "src"
    for sub in ("a", "b"):
        (src / sub).mkdir(parents=True)
    shutil.copyfile(ultralytics_photos()[0], src / "a" / "x.jpg")
    shutil.copyfile(ultralytics_photos()[1], src / "b" / "x.jpg")
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copyfile(ultralytics_photos()[0], flat / "x.jpg")
    shutil.copyfile(ultralytics_photos()[1], flat / "x.png")
    res = run("infer", model, flat, "--save", tmp_path / "annotated", "--quiet")
    assert res.exit_code == 0, res.output
    assert listing(tmp_path / "annotated") == [".trtbuild-files.json", "x.jpg", "x_2.jpg"]


# ------------------------------------------------------------------------------------------------ data sets
def test_eval_without_labels_is_refused(model, tmp_path):
    data = tmp_path / "data"
    (data / "images" / "val").mkdir(parents=True)
    shutil.copyfile(ultralytics_photos()[0], data / "images" / "val" / "bus.jpg")
    (data / "data.yaml").write_text(yaml.safe_dump({"path": str(data), "val": "images/val",
                                                    "names": {i: str(i) for i in range(80)}}))
    refused(run("eval", model, "--data", data), 2, "has a label file", "mAP would be 0")
    (data / "labels" / "val").mkdir(parents=True)
    (data / "labels" / "val" / "bus.txt").write_text("")
    refused(run("eval", model, "--data", data), 2, "hold no object")


def test_eval_with_other_classes_is_refused(model, shapes_val_data, tmp_path):
    report = tmp_path / "eval.json"
    refused(run("eval", model, "--data", shapes_val_data, "--report", report), 2, "predicts 80 classes",
            "names 8")
    assert not report.exists()


@pytest.mark.parametrize("case", ["missing", "not_yaml", "no_names", "bad_split"])
def test_eval_bad_data_yaml(model, tmp_path, case):
    data = tmp_path / "d.yaml"
    if case == "not_yaml":
        data.write_text(": : :\n  - [")
    elif case == "no_names":
        data.write_text(yaml.safe_dump({"path": str(tmp_path), "val": "images"}))
    elif case == "bad_split":
        data.write_text(yaml.safe_dump({"path": str(tmp_path), "val": "nowhere", "names": ["a"]}))
    refused(run("eval", model, "--data", data), 2, "d.yaml")


# ------------------------------------------------------------------------------------------------ precision
def test_calibrate_with_too_few_images_writes_nothing(model, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for p in ultralytics_photos():
        shutil.copyfile(p, few / p.name)
    before = listing(model.parent)
    refused(run("calibrate", model, "--images", few), 2, "2 usable image(s)", "at least 8")
    refused(run("calibrate", model, "--images", tmp_path / "none"), 2, "does not exist")
    assert listing(model.parent) == before


@pytest.mark.parametrize("case", ["empty_ranges", "foreign_ranges", "not_json"])
def test_budget_refuses_ranges_that_would_make_no_int8_model(model, data80, tmp_path, case):
    work = tmp_path / "w"
    work.mkdir()
    sim = work / model.name
    shutil.copyfile(model, sim)
    ranges = work / "r.ranges.json"
    ranges.write_text({"empty_ranges": json.dumps({"ranges": {}}),
                       "foreign_ranges": json.dumps({"ranges": {"some/other/tensor": [0.0, 1.0]},
                                                     "images": [], "images_dir": "."}),
                       "not_json": "{oops"}[case])
    before = listing(work)
    needle = {"empty_ranges": "holds no ranges", "foreign_ranges": "would not be INT8",
              "not_json": "not a calibration ranges file"}[case]
    refused(run("budget", sim, "--data", data80, "--limit", "4", "--ranges", ranges, "--images", photo_folder(
        tmp_path / "held")), 2, "r.ranges.json", needle)
    assert listing(work) == before  # no "INT8" ONNX without Q/DQ, no budget report


# ------------------------------------------------------------------------------------------------ engines
@pytest.mark.parametrize("args, needle", [
    (["build", "{m}", "--precision", "int4"], "--precision"),
    (["build", "{m}", "--max-batch", "0"], "--max-batch"),
    (["build", "{dir}/nope.onnx"], "nope.onnx"),
    (["engine", "--precision", "int4"], "int4"),
    (["bench", "{m}", "--batch", "0,x"], "--batch"),
    (["infer", "{m}"], "Missing argument"),
    (["nosuchcommand"], "No such command"),
    (["export", "--nosuchflag"], "No such option"),
])
def test_usage_errors_are_one_line(model, tmp_path, args, needle):
    args = [a.format(m=model, dir=tmp_path) for a in args]
    refused(run(*args), 2, needle)


def test_debug_shows_the_traceback(tmp_path):
    res = run("--debug", "simplify", tmp_path / "nope.onnx")
    assert res.exit_code != 0 and res.exception is not None and "nope.onnx" in str(res.exception)


# ------------------------------------------------------------------------------------------------ synth
def test_synth_never_deletes_files_it_did_not_write(tmp_path):
    out = tmp_path / "ds"
    (out / "images" / "val").mkdir(parents=True)
    mine = out / "images" / "val" / "zzz.jpg"
    mine.write_bytes(b"my own picture")
    for extra in ([], ["--overwrite"]):  # --overwrite replaces synth's own earlier files only, never this one
        refused(run("synth", "--out", out, "--train", "0", "--val", "2", "--quiet", *extra), 2, "zzz.jpg",
                "not written by synth", "move it away")
        assert mine.read_bytes() == b"my own picture" and listing(out) == ["images", "images/val", "images/val/zzz.jpg"]
    mine.unlink()
    ok = run("synth", "--out", out, "--train", "0", "--val", "2", "--quiet")
    assert ok.exit_code == 0 and len(list((out / "images" / "val").iterdir())) == 2
    again = run("synth", "--out", out, "--train", "0", "--val", "3", "--quiet")  # its own files: replaced silently
    assert again.exit_code == 0 and len(list((out / "images" / "val").iterdir())) == 3


# ------------------------------------------------------------------------------------------------ file systems
def test_read_only_output_folder_fails_before_the_work(model, readonly_dir):
    refused(run("export", "yolov8n.yaml", "--out-dir", readonly_dir / "x"), 1, str(readonly_dir / "x"),
            "Read-only file system")
    res = run("bench", model, "--iters", "1", "--warmup", "0", "--out-dir", readonly_dir)
    refused(res, 1, str(readonly_dir), "Read-only")
    assert "p50" not in res.output  # refused before benchmarking, not after
    refused(run("eval", model, "--data", "nowhere", "--report", readonly_dir / "e.json"), 2, "nowhere")
    refused(run("infer", model, ultralytics_photos()[0], "--json", readonly_dir / "d.jsonl"), 1, "Read-only")
    assert listing(readonly_dir) == []


def test_full_disk_is_one_line_and_leaves_no_partial_file(model, full_dir):
    out = full_dir / "out"
    refused(run("simplify", model, "--out", out / "m.sim.onnx"), 1, f"error: {out}: No space left", "free space")
    assert listing(full_dir) in ([], ["out"])  # no half-written model, no temporary file
    assert not [p for p in full_dir.rglob("*") if p.is_file()]


def test_infer_failing_midway_keeps_no_annotated_picture(model, tmp_path, full_dir):
    photos = photo_folder(tmp_path / "photos")
    refused(run("infer", model, photos, "--save", full_dir / "annotated", "--quiet"), 1, str(full_dir / "annotated"))
    assert listing(full_dir) == []  # the pictures written before the disk filled are removed, and the folder
    assert len(listing(photos)) == 12


def test_a_killed_runs_temporary_files_are_swept_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".yolov8n.onnx.999999.tmp-abc.onnx", out / ".export.999999.tmp-xyz"]
    stale[0].write_bytes(b"half")
    stale[1].mkdir()
    (stale[1] / "yolov8n.onnx").write_bytes(b"half")
    res = run("export", "yolov8n.yaml", "--imgsz", "320", "--out-dir", out)
    assert res.exit_code == 0, res.output
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in out.iterdir()) == [".trtbuild-files.json", "yolov8n.export.json", "yolov8n.onnx"]


# ------------------------------------------------------------------------------------------------ first run, help
def test_engine_without_model_says_what_it_uses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/ here: the random-weights default, said loudly
    res = run("engine", "--imgsz", "320", "--precision", "fp32", "--out-dir", tmp_path / "e")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == ("model     no --model given: yolov8n.yaml (random weights: detections are "
                                          "meaningless; pass --model YOUR.pt)")


def test_every_command_has_an_example_and_every_option_a_sentence():
    import click

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    commands = dict(walk(cli, ["trtbuild"]))
    assert len(commands) >= 17
    for name, cmd in commands.items():
        assert "Example" in (cmd.help or ""), name
        assert all(p.help for p in cmd.params if isinstance(p, click.Option)), name


def test_readme_command_lines_use_real_commands_and_flags():
    """Every ``trtbuild …`` line in the code blocks of the README and of every page in docs/ names a real command
    and only its real flags."""
    import re

    import click

    root = Path(__file__).resolve().parents[2]
    commands = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        lang = None
        for raw in page.read_text().splitlines():
            if raw.startswith("```"):
                lang = raw[3:].strip() if lang is None else None
            elif lang in ("bash", "sh", ""):
                commands.append(raw)
    checked = 0
    for line in (ln.split(" #")[0].strip() for ln in commands):
        if not line.startswith("trtbuild "):
            continue
        words = line.split()[1:]
        cmd = cli
        while isinstance(cmd, click.Group) and words and re.fullmatch(r"[a-z]+", words[0]):
            assert words[0] in cmd.commands, line
            cmd, words = cmd.commands[words[0]], words[1:]
        assert not isinstance(cmd, click.Group) or not words or words[0].startswith("-"), line
        flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
        for flag in re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", line):  # synopsis lines too: [--iou 0.7]
            assert flag in flags or f"--{flag.split('--')[-1]}" in flags, (line, flag)
        checked += 1
    assert checked >= 25, checked


def test_progress_is_a_few_lines_in_a_log(model, tmp_path):
    """Non-terminal stderr (a log file): bars write a line at most every 30 s, not one per step."""
    folder = photo_folder(tmp_path / "photos")
    log = tmp_path / "calibrate.log"
    trtbuild = Path(shutil.which("trtbuild") or Path(__import__("sys").executable).parent / "trtbuild")
    with open(log, "w") as f:
        done = subprocess.run([str(trtbuild), "calibrate", str(model), "--images", str(folder), "--batch", "1",
                               "--out-dir", str(tmp_path / "r")], stdout=f, stderr=subprocess.STDOUT)
    text = log.read_text()
    assert done.returncode == 0, text
    bars = [line for line in text.replace("\r", "\n").splitlines() if line.startswith("calibrate:")]
    assert len(bars) <= 2, text  # 12 images, one step each: the first state, not 12 redraws
    assert any(line.startswith("calibrate ") for line in text.splitlines())


# ------------------------------------------------------------------------------------------------ round 2 (issue 18)
def _video(path: Path, frames: int) -> Path:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(frames):
        frame = np.full((240, 320, 3), 8 * i, np.uint8)
        cv2.putText(frame, str(i), (40, 160), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 255), 6)
        writer.write(frame)
    writer.release()
    return path


def test_a_damaged_video_says_which_frames_it_lost(model, tmp_path):
    """A video cut short (the file truncated after ~40 % of its bytes) is reported, never silently shortened."""
    whole = _video(tmp_path / "whole.avi", 20)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.4)])
    res = run("infer", model, cut, "--json", tmp_path / "d.jsonl", "--quiet")
    assert res.exit_code == 0, res.output
    read = len((tmp_path / "d.jsonl").read_text().splitlines())
    assert 0 < read < 20
    assert f"warning: {cut}: frames {read}-19 could not be read: the file declares 20 frames" in res.output
    assert f"infer     {read} frame(s)" in res.output
    ok = run("infer", model, whole, "--json", tmp_path / "w.jsonl", "--quiet")
    assert "could not be read" not in ok.output and "infer     20 frame(s)" in ok.output


@pytest.fixture(scope="module")
def dynamic_model(exported_yolov8n_dynamic) -> Path:
    return exported_yolov8n_dynamic


def test_a_batch_beyond_this_hosts_memory_is_one_line(dynamic_model, tmp_path):
    refused(run("infer", dynamic_model, ultralytics_photos()[0], "--batch", "100000"), 2, "--batch 100000",
            "inputs for", "of memory, this host has", "use a smaller batch")
    refused(run("bench", dynamic_model, "--batch", "1,100000", "--out-dir", tmp_path / "b"), 2, "--batch 100000")
    assert listing(tmp_path) == []
    assert run("infer", dynamic_model, ultralytics_photos()[0], "--batch", "64").exit_code == 0  # what fits runs


def test_calibrate_num_below_the_minimum_is_refused_like_a_small_folder(model, tmp_path):
    before = listing(model.parent)
    folder = photo_folder(tmp_path / "photos")
    refused(run("calibrate", model, "--images", folder, "--num", "3"), 2, "--num 3", "at least 8 images")
    refused(run("engine", "--model", "yolov8n.yaml", "--calib-num", "5", "--out-dir", tmp_path / "e"), 2,
            "--calib-num 5", "at least 8 images")
    assert listing(model.parent) == before and not (tmp_path / "e").exists()


def test_bench_of_a_static_model_at_another_batch_measures_nothing_and_writes_nothing(model, tmp_path):
    refused(run("bench", model, "--batch", "4", "--out-dir", tmp_path / "b", "--iters", "1"), 2, "--batch 4",
            "takes batch 1 only", "nothing of it would be measured", "--dynamic")
    assert listing(tmp_path) == []


def test_inspect_of_an_onnx_says_what_inspect_reads(model):
    refused(run("inspect", model), 2, f"{model}: an ONNX model, not an engine", f"trtbuild build {model}",
            f"trtbuild check {model}")


def test_a_sidecar_that_is_not_json_is_not_called_missing(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"\0" * 64)
    (tmp_path / "m.fp16.engine.json").write_text('{"engine": "m.fp16.engine", ')  # cut short
    before = shas_of(tmp_path)
    refused(run("deploy", "triton", engine, "--out", tmp_path / "repo"), 2, "m.fp16.engine.json",
            "not readable JSON", "--force")
    assert shas_of(tmp_path) == before


def test_export_of_another_model_family_is_the_supports_line(tmp_path):
    refused(run("export", "rtdetr-l.yaml", "--out-dir", tmp_path / "o"), 2, "an RT-DETR model",
            "trtbuild supports these tasks: detect")
    assert listing(tmp_path) == []


def test_nested_progress_bars_write_plain_lines_into_a_log(tmp_path):
    code = ("from trtbuild.console import progress_bar\n"
            "outer = progress_bar(total=2, desc='outer', mininterval=0, maxinterval=0)\n"
            "for _ in range(2):\n"
            "    inner = progress_bar(total=3, desc='inner', mininterval=0, maxinterval=0)\n"
            "    for _ in range(3): inner.update()\n"
            "    inner.close(); outer.update()\n"
            "outer.close()\n")
    with open(tmp_path / "log.txt", "w") as log:
        subprocess.run([sys.executable, "-c", code], stderr=log, check=True)
    text = (tmp_path / "log.txt").read_text()
    assert "\x1b" not in text and "\r" not in text, repr(text)
    lines = text.splitlines()
    assert sum(ln.startswith("inner:") for ln in lines) == 8 and sum(ln.startswith("outer:") for ln in lines) == 3
