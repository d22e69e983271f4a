"""Interrupted runs: SIGINT and SIGTERM at several points of export, simplify and calibrate, each followed by a
rerun that succeeds, and the folder checked for leftovers after both; a SIGKILL's leftovers swept by the next run.

The signals are real (``tests/interrupt_child.py`` sends them at an audit-event point, in Python or from a timer
while native code runs) and trtbuild's own handlers deal with them.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtbuild.cli import cli

from ..helpers import photo_folder

CHILD = Path(__file__).parents[1] / "interrupt_child.py"


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def interrupt(sig: str, event: str, match: str, nth: int, delay: float, *args, cwd: Path):
    return subprocess.run([sys.executable, str(CHILD), sig, event, match, str(nth), str(delay), "--",
                           *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_interrupted(done: subprocess.CompletedProcess, sig: str) -> None:
    err = done.stderr
    assert f"interrupt-test: {sig}" in err, err  # the point was reached: the run was really interrupted
    assert done.returncode == 130, (done.returncode, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("interrupt-test:")]
    assert "Traceback" not in err, err
    assert lines[-1].startswith(f"error: interrupted ({sig}); temporary files were removed"), err


def rerun(*args) -> None:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output


SIGNALS = ["SIGINT", "SIGTERM"]

EXPORT_POINTS = {  # name: (audit event, its argument contains, n-th such event, delay in s)
    "hashing-the-config": ("open", "yolov8.yaml", 1, 0),  # before the stage starts
    "loading-the-model": ("open", "default.yaml", 1, 0),  # the stage's temporary folder exists
    "tracing": ("open", "/proc/cpuinfo", 1, 0.1),  # from a timer: lands while torch traces and exports
    "writing-the-temporary-folder": ("open", "yolov8n.onnx", 1, 0),  # torch writes the ONNX in it
    "saving-the-output": ("open", ".yolov8n.onnx.", 1, 0),  # the final artifact's temporary file beside it
}


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_interrupted_export_leaves_nothing_and_reruns(tmp_path, sig, point):
    out = tmp_path / "engines"
    args = ("export", "yolov8n.yaml", "--imgsz", "160", "--out-dir", out)
    assert_interrupted(interrupt(sig, *EXPORT_POINTS[point], *args, cwd=tmp_path), sig)
    assert listing(tmp_path) == []  # no temporary folder, no half-written ONNX, no empty engines/
    rerun(*args)
    assert listing(out) == [".trtbuild-files.json", "yolov8n.export.json", "yolov8n.onnx"]


SIMPLIFY_POINTS = {
    "importing-onnxsim": ("import", "onnxsim", 1, 0),
    "inside-onnxsim": ("open", "=/tmp", 1, 0.05),  # its native stderr captured; the signal lands in onnxsim's C++
    "parity-check": ("open", "yolov8n.onnx", 3, 0.02),  # ONNX Runtime runs both graphs
    "saving-the-output": ("open", ".yolov8n.sim.onnx.", 1, 0),
}


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", SIMPLIFY_POINTS)
def test_interrupted_simplify_leaves_nothing_and_reruns(tmp_path, exported_yolov8n, sig, point):
    shutil.copyfile(exported_yolov8n, tmp_path / "yolov8n.onnx")
    assert_interrupted(interrupt(sig, *SIMPLIFY_POINTS[point], "simplify", "yolov8n.onnx", cwd=tmp_path), sig)
    assert listing(tmp_path) == ["yolov8n.onnx"]
    rerun("simplify", tmp_path / "yolov8n.onnx")
    assert listing(tmp_path) == [".trtbuild-files.json", "yolov8n.onnx", "yolov8n.sim.onnx", "yolov8n.simplify.json"]


CALIBRATE_POINTS = {  # the photos are opened twice while selected, then once each while collected
    "collecting": ("open", "zidane.jpg", 3, 0),  # between batches: the statistics thread is busy
    "inside-onnxruntime": ("open", "bus.jpg", 3, 0.01),  # lands while ONNX Runtime runs the model
    "saving-the-table": ("open", ".yolov8n.calib.cache.", 1, 0),
    "saving-the-ranges": ("open", ".yolov8n.ranges.json.", 1, 0),  # the report, written last
}


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", CALIBRATE_POINTS)
def test_interrupted_calibrate_leaves_nothing_and_reruns(tmp_path, exported_yolov8n, sig, point):
    shutil.copyfile(exported_yolov8n, tmp_path / "yolov8n.onnx")
    photos = photo_folder(tmp_path / "photos")
    before = listing(tmp_path)
    args = ("calibrate", "yolov8n.onnx", "--images", "photos", "--batch", "1", "--out-dir", "ranges")
    assert_interrupted(interrupt(sig, *CALIBRATE_POINTS[point], *args, cwd=tmp_path), sig)
    if point == "saving-the-ranges":  # the outputs are in place: the stage finishes, then the interrupt is raised
        assert listing(tmp_path) == sorted([*before, "ranges", "ranges/.trtbuild-files.json",
                                            "ranges/yolov8n.calib.cache", "ranges/yolov8n.ranges.json"])
    else:
        assert listing(tmp_path) == before  # no ranges/ folder, no table, the photos untouched
    rerun(*args[:1], tmp_path / "yolov8n.onnx", "--images", photos, "--batch", "1", "--out-dir", tmp_path / "ranges")
    assert listing(tmp_path / "ranges") == [".trtbuild-files.json", "yolov8n.calib.cache", "yolov8n.ranges.json"]


def test_a_sigkill_leaves_a_temporary_folder_the_next_run_removes(tmp_path):
    out = tmp_path / "engines"
    args = ("export", "yolov8n.yaml", "--imgsz", "160", "--out-dir", out)
    done = interrupt("SIGKILL", "open", "yolov8n.onnx", 1, 0, *args, cwd=tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1 and left[0].startswith(".export.") and ".tmp-" in left[0], left  # nothing could run
    rerun(*args)
    assert listing(out) == [".trtbuild-files.json", "yolov8n.export.json", "yolov8n.onnx"]
