"""The streaming pipeline (``trtbuild.stream``, ``trtbuild infer`` on it) on real video files, real models in ONNX
Runtime, and frame streams made in Python: order and counts per stream, detections equal to single-image
inference, batching across streams, a failing or unreachable source beside good ones, a damaged video, Ctrl-C,
a live source faster than the model, memory over 10,000 frames. The RTSP cases are in ``test_stream_live.py``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.config import StreamConfig
from trtbuild.data.synth import render_image
from trtbuild.errors import InputError
from trtbuild.runtime.null import RecordedRunner
from trtbuild.runtime.onnx import OnnxRunner
from trtbuild.stream import Hooks, parse_sources, stream
from trtbuild.tasks.predictor import Predictor
from trtbuild.vision.letterbox import letterbox_batch

CHILD = Path(__file__).parents[1] / "interrupt_child.py"


def write_video(path: Path, frames: int, seed: int, size=(480, 320), fps: float = 25, codec="mp4v") -> Path:
    """A real video of ``frames`` frames panning over a synthetic shapes image (the reference model finds them)."""
    base = cv2.resize(render_image(seed, "val", seed)[0], (size[0] + 4 * frames, size[1]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.ascontiguousarray(base[:, 4 * i : 4 * i + size[0]]))
    writer.release()
    return path


def decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"cam{k}.mp4", 12 + 3 * k, seed=k) for k in range(4)]


def same_detections(a, b, what: str) -> None:
    assert len(a) == len(b), f"{what}: {len(a)} vs {len(b)} detections"
    np.testing.assert_array_equal(a.class_ids, b.class_ids, err_msg=what)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4, err_msg=what)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05, err_msg=what)


def test_four_videos_at_once_frames_in_order_and_detections_as_single_images(shapes_dynamic_onnx, videos):
    results = list(stream(shapes_dynamic_onnx, [str(v) for v in videos], StreamConfig(conf=0.25, batch=4)))
    by_stream = {k: [r for r in results if r.stream == k] for k in range(4)}
    with OnnxRunner(shapes_dynamic_onnx) as runner:
        single = Predictor(runner, conf=0.25)
        for k, video in enumerate(videos):
            frames = decoded(video)
            got = by_stream[k]
            assert [r.frame for r in got] == list(range(len(frames))), k  # every frame, in order
            assert all(r.path == str(video) and (r.width, r.height) == (480, 320) for r in got)
            for r, frame in zip(got, frames):
                same_detections(r.detections, single.predict([frame])[0], f"stream {k} frame {r.frame}")
    assert sum(len(r.detections) for r in results) > 20  # the shapes are found: the comparison is not empty


def test_batches_are_filled_across_streams(shapes_dynamic_onnx, videos):
    """With four streams and batch 4, most model calls carry frames of several streams."""
    calls = []

    class Spy(OnnxRunner):
        def infer(self, batch):
            calls.append(len(batch))
            return super().infer(batch)

    with Spy(shapes_dynamic_onnx) as runner:
        results = list(stream(runner, [str(v) for v in videos], StreamConfig(batch=4, max_wait_ms=50)))
    assert len(results) == sum(12 + 3 * k for k in range(4))
    assert max(calls) == 4 and np.mean(calls) > 2.5, calls


def test_a_static_batch_model_is_padded_and_the_padding_counted(exported_yolov8n, videos):
    """A batch-1 ONNX (static) takes one frame per call; a run with fewer frames than a batch says so."""
    spy = []
    with OnnxRunner(exported_yolov8n) as runner:
        from trtbuild.stream import build_pipeline

        pipeline = build_pipeline([runner], parse_sources([str(videos[0])]), StreamConfig())
        results = list(pipeline.results())
        spy.append(pipeline.snapshot())
    assert len(results) == 12 and spy[0]["batch"] == 1 and spy[0]["padded_rows"] == 0


def test_a_model_with_dynamic_height_and_width_runs_frames_at_their_rectangle(videos, tmp_path):
    """ultralytics' rectangular inference: 480x320 frames at 320 go to a dynamic-H/W model as 224x320, and the
    detections are ultralytics' own predictions on the same ONNX (which letterboxes the same way)."""
    from ultralytics import YOLO

    from tests.conftest import SHAPES_MODEL
    from trtbuild.config import ExportConfig
    from trtbuild.stages.export import export

    onnx = export(SHAPES_MODEL, ExportConfig(imgsz=(320, 320), dynamic=True, dynamic_hw=True, out_dir=tmp_path,
                                             name="rect")).output
    shapes = []

    class Spy(OnnxRunner):
        def infer(self, batch):
            shapes.append(batch.shape)
            return super().infer(batch)

    with Spy(onnx) as runner:
        ours = list(stream(runner, [str(videos[1])], StreamConfig(conf=0.25, batch=1)))
    assert {s[2:] for s in shapes} == {(224, 320)}
    theirs = list(YOLO(str(onnx), task="detect").predict(str(videos[1]), stream=True, imgsz=320, conf=0.25,
                                                         device="cpu", verbose=False))
    assert len(ours) == len(theirs) == 15
    for r, t in zip(ours, theirs):
        assert len(r.detections) == len(t.boxes), r.frame
        np.testing.assert_allclose(r.detections.boxes, t.boxes.xyxy.numpy(), atol=0.05, err_msg=str(r.frame))
        np.testing.assert_allclose(r.detections.scores, t.boxes.conf.numpy(), atol=1e-4, err_msg=str(r.frame))
    assert sum(len(r.detections) for r in ours) > 10


def test_a_failing_source_does_not_stop_the_others(shapes_dynamic_onnx, videos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    events = []
    results = list(stream(shapes_dynamic_onnx, [str(broken), str(videos[0]), "rtsp://127.0.0.1:9/nothing"],
                          StreamConfig(reconnect_s=1.0), hooks=Hooks(on_event=lambda *e: events.append(e))))
    assert [r.frame for r in results] == list(range(12)) and {r.stream for r in results} == {1}
    failed = {e[0]: e[2] for e in events if e[1] == "failed"}
    assert "cannot open video" in failed[0] and "unreachable and not back within 1 s" in failed[2]


def test_a_damaged_video_reports_the_frames_it_lost(shapes_dynamic_onnx, tmp_path):
    whole = write_video(tmp_path / "whole.avi", 30, seed=3, codec="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    events = []
    results = list(stream(shapes_dynamic_onnx, [str(cut)], hooks=Hooks(on_event=lambda *e: events.append(e))))
    short = [e for e in events if e[1] == "short"]
    assert 0 < len(results) < 30 and len(short) == 1
    assert short[0][2].startswith(f"{cut}: frames {len(results)}-29 could not be read: the file declares 30 frames")


def test_results_come_as_the_frames_do(shapes_dynamic_onnx):
    """The Python API yields a frame's result long before a slow source has ended."""
    image = render_image(0, "val", 1)[0]
    first_at, started = [], time.monotonic()

    def slow():
        for _ in range(6):
            time.sleep(0.3)
            yield image

    for r in stream(shapes_dynamic_onnx, [slow()]):
        first_at.append(time.monotonic() - started)
    assert len(first_at) == 6 and first_at[0] < 1.0 and first_at[-1] > 1.6


class SlowModel(RecordedRunner):
    """Real outputs, replayed after ``delay`` seconds per call: a model slower than the source."""

    delay = 0.05

    def infer(self, batch):
        time.sleep(self.delay)
        return super().infer(batch)


class LiveFrames:
    """A live source made in Python: ``fps`` frames per second for ``seconds``, whatever the consumer does."""

    live = True

    def __init__(self, image, fps: float, seconds: float):
        self.image, self.fps, self.seconds = image, fps, seconds

    def __iter__(self):
        start, i = time.monotonic(), 0
        while (now := time.monotonic()) - start < self.seconds:
            time.sleep(max(0.0, start + i / self.fps - now))
            i += 1
            yield self.image


def test_a_live_source_faster_than_the_model_drops_frames_and_latency_stays_bounded(shapes_dynamic_onnx):
    image = render_image(0, "val", 2)[0]
    with OnnxRunner(shapes_dynamic_onnx) as real:
        model = SlowModel(real, letterbox_batch([image], 320)[0])
    from trtbuild.stream import build_pipeline

    pipeline = build_pipeline([model], parse_sources([LiveFrames(image, fps=200, seconds=3)]),
                              StreamConfig(batch=2, buffers=3))
    results = list(pipeline.results())
    s = pipeline.snapshot()["streams"][0]
    assert s["dropped"] > 100 and s["read"] == s["done"] + s["dropped"]  # every frame accounted for
    assert len(results) == s["done"] and 30 < s["done"] < 150  # ~ 2 frames per 50 ms call
    # the latency of a result: at most the ring's batches ahead of it plus its own call, not the whole run
    assert max(r.latency_ms for r in results) < 1000 * (3 + 2) * SlowModel.delay
    assert [r.frame for r in results] == sorted(r.frame for r in results)


def test_memory_stays_flat_over_ten_thousand_frames(shapes_dynamic_onnx):
    """10,000 frames of a Python stream through the pipeline (recorded outputs: everything real but the model):
    the resident memory at the end is within 5 % of what it was after the first 1,000 frames."""
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 255, (240, 320, 3), np.uint8) for _ in range(8)]
    with OnnxRunner(shapes_dynamic_onnx) as real:
        model = RecordedRunner(real, letterbox_batch(pool[:1], 320)[0])

    def frames():
        for i in range(10_000):
            yield pool[i % 8].copy()  # a new array per frame, as a decoder makes

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    marks = {}
    for r in stream(model, [frames()], StreamConfig(batch=4)):
        if r.frame in (1000, 9999):
            marks[r.frame] = rss()
    assert set(marks) == {1000, 9999}
    growth = marks[9999] / marks[1000] - 1
    print(f"RSS after 1,000 frames {marks[1000] / 2**20:.1f} MiB, after 10,000 {marks[9999] / 2**20:.1f} MiB "
          f"({100 * growth:+.2f} %)")
    assert growth <= 0.05


def test_sources_are_parsed_from_their_text(tmp_path, videos):
    (tmp_path / "cams.streams").write_text(f"# four cameras\n{videos[0]}\nrtsp://10.0.0.2/live\n\n0\n"
                                           f"{videos[1].name}\n")
    (tmp_path / videos[1].name).write_bytes(videos[1].read_bytes())
    specs = parse_sources(tmp_path / "cams.streams")
    assert [(s.kind, s.live) for s in specs] == [("video", False), ("url", True), ("webcam", True),
                                                 ("video", False)]
    assert specs[3].uri == str(tmp_path / videos[1].name) and specs[2].name == "cam0" and specs[1].name == "live"
    (tmp_path / "empty.streams").write_text("# nothing\n")
    with pytest.raises(InputError, match="lists no source"):
        parse_sources(tmp_path / "empty.streams")
    with pytest.raises(InputError, match="no such file or folder"):
        parse_sources([str(videos[0]), str(tmp_path / "missing.mp4")])


def test_infer_cli_runs_several_streams_and_writes_stats(shapes_dynamic_onnx, videos, tmp_path):
    out = tmp_path / "d.jsonl"
    res = CliRunner().invoke(cli, ["infer", str(shapes_dynamic_onnx), *map(str, videos[:2]), "--json", str(out),
                                   "--stats", str(tmp_path / "stats.json"), "--save", str(tmp_path / "ann"),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in recs if r["stream"] == 1] == list(range(15))
    assert {r["stream"] for r in recs} == {0, 1} and all(r["latency_ms"] > 0 for r in recs)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == 27 and [s["done"] for s in stats["streams"]] == [12, 15]
    assert {row["stage"] for row in stats["stages"]} == {"decode", "letterbox", "infer", "post", "sink"}
    for k, video in enumerate(videos[:2]):  # one annotated video per stream, every frame in it
        assert len(decoded(tmp_path / "ann" / f"{video.stem}.mp4")) == 12 + 3 * k
    assert "bottleneck:" in res.output


def test_ctrl_c_keeps_complete_json_lines_and_a_valid_video(shapes_dynamic_onnx, tmp_path):
    """A real SIGINT / SIGTERM 2 s into a long run: exit 130, every JSON line so far complete, the annotated video
    finalised (readable, one frame per line), no temporary file."""
    video = write_video(tmp_path / "long.mp4", 400, seed=5)
    for sig in ("SIGINT", "SIGTERM"):
        out, ann = tmp_path / f"{sig}.jsonl", tmp_path / f"ann-{sig}"
        done = subprocess.run([sys.executable, str(CHILD), sig, "open", f"={out}", "1", "2.0", "--", "infer",
                               str(shapes_dynamic_onnx), str(video), "--json", str(out), "--save", str(ann),
                               "--quiet"], capture_output=True, text=True, timeout=300)
        assert f"interrupt-test: {sig}" in done.stderr and done.returncode == 130, done.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert 0 < len(lines) < 400 and [r["frame"] for r in lines] == list(range(len(lines)))
        frames = decoded(ann / "long.mp4")
        assert abs(len(frames) - len(lines)) <= 1 and frames[0].shape == (320, 480, 3)
        assert not [p for p in tmp_path.rglob(".*tmp*")]


def test_bench_streams_measures_the_four_figures(shapes_dynamic_onnx, videos, tmp_path):
    before = set(threading.enumerate())
    res = CliRunner().invoke(cli, ["bench", str(shapes_dynamic_onnx), "--streams", str(videos[0]), "--streams",
                                   str(videos[1]), "--batch", "2", "--out-dir", str(tmp_path), "--name", "s"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "s.streams.json").read_text())
    assert report["batch"] == 2 and report["end_to_end"]["frames"] == 27
    assert report["host_capacity"]["frames"] == 27 and report["serial_host_path"]["frames"] == 27
    assert report["model_only"]["fps"] > 0 and report["host_capacity"]["fps"] > report["end_to_end"]["fps"]
    assert 0 < report["ratios"]["end_to_end_vs_model_only"] < 2 and report["ratios"]["host_pipelined_vs_serial"] > 0
    for part in ("model only", "end to end", "host capacity", "serial host path", "bottleneck"):
        assert part in res.output
    left = [t for t in set(threading.enumerate()) - before if t.name.startswith(("read-", "model-", "results"))]
    assert not left, left  # every thread of the three pipeline runs ended with its run
