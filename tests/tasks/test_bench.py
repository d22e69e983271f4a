"""``trtbuild bench`` on real ONNX Runtime runs of real exports, on ultralytics' real photos.

Fast settings (3 timed calls on a 320 model). The numbers are checked for internal consistency (ordered
percentiles, throughput = images / time, stages summing to the latency) and against the runner's own split
where a (test) runner reports one; a profile-limited runner stands in for a dynamic TensorRT engine.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.cuda.plan import check_profile
from trtbuild.runtime.base import Runner
from trtbuild.runtime.onnx import OnnxRunner
from trtbuild.config import BenchConfig
from trtbuild.tasks.bench import STAGES, run_bench
from trtbuild.tasks.bench_report import write_bench_report

from ..helpers import skimage_photos, ultralytics_photos

FAST = dict(warmup=1, iters=3)


@pytest.fixture(scope="module")
def dynamic_yolov8n(exported_yolov8n_dynamic):
    """yolov8n.yaml exported at 320 with a dynamic batch axis (the session's)."""
    return exported_yolov8n_dynamic


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _ok(model: dict, batch: int) -> dict:
    res = next(r for r in model["results"] if r["batch"] == batch)
    assert res["status"] == "ok", res
    return res


def _check_numbers(res: dict, batch: int, iters: int) -> None:
    lat = res["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert res["iters"] == iters and res["images"] == batch * iters
    assert res["seconds"] == pytest.approx(lat["mean"] * iters / 1000, rel=1e-3)
    assert res["throughput_ips"] == pytest.approx(res["images"] / res["seconds"], rel=1e-3)
    stages = res["stages_ms"]
    assert set(stages) == set(STAGES) and all(v >= 0 for v in stages.values())
    assert stages["preprocess"] > 0 and stages["compute"] > 0 and stages["postprocess"] > 0
    assert sum(stages.values()) == pytest.approx(lat["mean"], rel=0.02)


def test_bench_cli_writes_reports_with_sane_numbers(exported_yolov8n, tmp_path):
    res = _cli("bench", exported_yolov8n, "--batch", "1", "--warmup", 1, "--iters", 3, "--out-dir", tmp_path,
               "--name", "n320", "--quiet")
    assert res.exit_code == 0, res.output
    files = {e: tmp_path / f"n320.bench.{e}" for e in ("json", "md", "png")}
    assert all(p.is_file() for p in files.values())
    # no temp file left, only trtbuild's record of what it wrote
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in files.values()} | {".trtbuild-files.json"}
    rep = json.loads(files["json"].read_text())
    assert {"host", "settings", "models", "ratios", "files"} <= set(rep)
    assert rep["host"]["onnxruntime"] == onnxruntime.__version__ and rep["host"]["cpu"]
    assert [Path(p).name for p in rep["settings"]["images"]] == [p.name for p in ultralytics_photos()]
    (model,) = rep["models"]
    assert model["label"] == exported_yolov8n.name and "ONNX Runtime" in model["backend"]
    assert model["imgsz"] == [320, 320] and model["static_batch"] == 1 and rep["ratios"] == []
    r = _ok(model, 1)
    _check_numbers(r, 1, 3)
    assert r["stage_source"] == "wall" and r["stages_ms"]["h2d"] == 0 == r["stages_ms"]["d2h"]
    assert r["device_memory"] == "n/a" and r["device_memory_bytes"] is None
    md = files["md"].read_text()
    assert f"| {exported_yolov8n.name} | {model['backend']} | 1 | {r['latency_ms']['p50']:.2f} |" in md
    png = cv2.imread(str(files["png"]))
    assert png is not None and png.shape[0] > 300 and png.shape[1] > 600 and png.std() > 0
    assert f"{r['latency_ms']['p50']:.2f}" in res.output and "report " in res.output  # the printed table


def test_static_model_skips_batches_it_cannot_run(exported_yolov8n):
    rep = run_bench([exported_yolov8n], BenchConfig(batches=(1, 2), **FAST))
    (model,) = rep["models"]
    _check_numbers(_ok(model, 1), 1, 3)
    skipped = next(r for r in model["results"] if r["batch"] == 2)
    assert skipped["status"] == "skipped" and "static batch 1" in skipped["reason"] and "--dynamic" in skipped["reason"]


def test_default_batches_are_one_plus_static_batches(exported_yolov8n):
    rep = run_bench([exported_yolov8n], BenchConfig(warmup=0, iters=1))
    assert rep["settings"]["batches"] == [1] and rep["settings"]["warmup"] == 0


def test_dynamic_batch_export_runs_batches_1_and_2(dynamic_yolov8n):
    rep = run_bench([dynamic_yolov8n], BenchConfig(batches=(1, 2), **FAST))
    (model,) = rep["models"]
    assert model["static_batch"] is None and model["input"]["shape"][0] != 1
    b1, b2 = _ok(model, 1), _ok(model, 2)
    _check_numbers(b1, 1, 3)
    _check_numbers(b2, 2, 3)


def test_two_models_give_ratios_against_the_first(exported_yolov8n, dynamic_yolov8n, tmp_path):
    rep = run_bench([exported_yolov8n, dynamic_yolov8n], BenchConfig(batches=(1, 2), **FAST))
    base, other = rep["models"]
    assert [r["status"] for r in base["results"]] == ["ok", "skipped"]
    assert [r["status"] for r in other["results"]] == ["ok", "ok"]
    (ratio,) = rep["ratios"]  # batch 2 has no baseline measurement
    assert ratio["batch"] == 1 and ratio["baseline"] == base["label"] and ratio["model"] == other["label"]
    want = _ok(base, 1)["latency_ms"]["p50"] / _ok(other, 1)["latency_ms"]["p50"]
    assert ratio["speedup"] == pytest.approx(want, rel=1e-3)
    word = "faster" if want >= 1 else "slower"
    assert f"{other['label']} " in ratio["text"] and f"× {word} than {base['label']} at batch 1" in ratio["text"]
    files = write_bench_report(rep, tmp_path, "pair")
    assert ratio["text"] in files["md"].read_text()
    assert json.loads(files["json"].read_text())["ratios"] == rep["ratios"]


class SplitRunner(Runner):
    """An ONNX Runtime runner that reports an h2d/compute/d2h split of its own infer time, like a GPU runner."""

    backend_name = "split-test"

    def __init__(self, path, profile=None):
        self.inner = OnnxRunner(path)
        self.path, self.metadata, self.profile = Path(path), self.inner.metadata, profile
        self.split, self.closed = None, False

    @property
    def input_specs(self):
        return self.inner.input_specs

    @property
    def output_specs(self):
        return self.inner.output_specs

    def infer(self, batch):
        if self.profile:
            check_profile("images", batch.shape, self.profile)
        t0 = time.perf_counter()
        out = self.inner.infer(batch)
        ms = (time.perf_counter() - t0) * 1000
        self.split = {"h2d": 0.1 * ms, "compute": 0.7 * ms, "d2h": 0.1 * ms}
        return out

    def stage_times(self):
        return self.split

    def device_memory(self):
        return 12_345_678

    def close(self):
        self.closed = True


def test_backend_stage_split_and_device_memory(exported_yolov8n):
    opened = []

    def opener(path):
        opened.append(SplitRunner(path))
        return opened[-1]

    rep = run_bench([exported_yolov8n], BenchConfig(batches=(1,), **FAST), opener=opener)
    (model,) = rep["models"]
    r = _ok(model, 1)
    _check_numbers(r, 1, 3)
    st = r["stages_ms"]
    assert r["stage_source"] == "backend" and model["backend"] == "split-test"
    assert st["h2d"] > 0 and st["d2h"] > 0 and st["compute"] == pytest.approx(7 * st["h2d"], rel=1e-2)
    assert st["other"] >= 0.1 / 0.7 * st["compute"] * 0.99  # the 10 % the runner left out, plus host overhead
    assert r["device_memory_bytes"] == 12_345_678 and r["device_memory"] == "11.8 MB"
    assert opened[0].closed


class FramesRunner(SplitRunner):
    """Also takes raw frames (as the TensorRT runner does with its GPU letterbox): CPU letterbox + a fixed delay
    standing in for the preprocessing done inside the call."""

    takes_frames = True

    def infer_frames(self, frames, hw):
        from trtbuild.vision.letterbox import letterbox_batch

        self.frames_calls = getattr(self, "frames_calls", 0) + 1
        time.sleep(0.01)
        x, infos = letterbox_batch(frames, hw)
        return self.infer(x), infos


def test_runner_with_infer_frames_preprocesses_inside_its_call(exported_yolov8n):
    runners = []

    def opener(path):
        runners.append(FramesRunner(path))
        return runners[-1]

    gpu = _ok(run_bench([exported_yolov8n], BenchConfig(batches=(1,), **FAST), opener=opener)["models"][0], 1)
    assert runners[0].frames_calls == FAST["warmup"] + FAST["iters"]
    assert gpu["stages_ms"]["preprocess"] >= 10.0  # the delay inside infer_frames counts as preprocessing
    assert gpu["stages_ms"]["other"] == pytest.approx(0.0, abs=1e-6)
    cpu = _ok(run_bench([exported_yolov8n], BenchConfig(batches=(1,), gpu_preprocess=False, **FAST),
                        opener=opener)["models"][0], 1)
    assert getattr(runners[1], "frames_calls", 0) == 0 and cpu["stages_ms"]["preprocess"] < 10.0


def test_batch_outside_an_engine_profile_is_skipped_with_the_fix(dynamic_yolov8n):
    profile = ((1, 3, 320, 320), (2, 3, 320, 320), (2, 3, 320, 320))
    rep = run_bench([dynamic_yolov8n], BenchConfig(batches=(1, 4), **FAST), opener=lambda p: SplitRunner(p, profile))
    (model,) = rep["models"]
    _ok(model, 1)
    skipped = next(r for r in model["results"] if r["batch"] == 4)
    assert skipped["status"] == "skipped" and "--max-batch 4" in skipped["reason"]


def test_images_folder_skips_non_images(exported_yolov8n, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in skimage_photos()[:2]:
        shutil.copy(p, photos / p.name)
    (photos / "notes.txt").write_text("not an image")
    rep = run_bench([exported_yolov8n], BenchConfig(batches=(1,), images=photos, warmup=0, iters=2))
    assert sorted(Path(p).name for p in rep["settings"]["images"]) == sorted(p.name for p in skimage_photos()[:2])
    _check_numbers(_ok(rep["models"][0], 1), 1, 2)


def test_bad_inputs_exit_2(exported_yolov8n, tmp_path):
    res = _cli("bench", tmp_path / "missing.onnx", "--quiet", "--out-dir", tmp_path)
    assert res.exit_code == 2 and "missing.onnx: no such model file" in res.output
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    res = _cli("bench", exported_yolov8n, broken, "--quiet", "--out-dir", tmp_path)
    assert res.exit_code == 2 and "broken.onnx" in res.output
    res = _cli("bench", exported_yolov8n, "--images", tmp_path / "nope", "--quiet", "--out-dir", tmp_path)
    assert res.exit_code == 2 and "nope" in res.output
    res = _cli("bench", exported_yolov8n, "--batch", "1,x", "--quiet", "--out-dir", tmp_path)
    assert res.exit_code == 2 and "--batch" in res.output
    assert not list(tmp_path.glob("*.bench.*"))  # nothing written by a failed run


def test_imgsz_is_ignored_for_a_fixed_input_with_a_note(exported_yolov8n):
    rep = run_bench([exported_yolov8n], BenchConfig(batches=(1,), imgsz=(640, 640), warmup=0, iters=1))
    (model,) = rep["models"]
    assert model["imgsz"] == [320, 320] and any("ignored" in n and "320×320" in n for n in model["notes"])
