"""The streaming pipeline against a real RTSP server on loopback (GStreamer, ``tests/live``) and a real HTTP server:
a live stream read in order, the server killed mid-stream and restarted (the stream reports the loss, reconnects
and resumes while a file stream beside it goes on), a stalled camera, a live source faster than the model, a video
over HTTP. Every frame the server sends carries its number in the picture (``tests.live.framecode``), so order and
gaps are checked on the pixels themselves.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from trtbuild.config import StreamConfig
from trtbuild.runtime.null import RecordedRunner
from trtbuild.runtime.onnx import OnnxRunner
from trtbuild.stream import Hooks, build_pipeline, parse_sources, sources, stream
from trtbuild.vision.letterbox import letterbox_batch

from ..live import framecode, write_video

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def model(shapes_dynamic_onnx):
    return shapes_dynamic_onnx


def run_for(model, srcs, seconds: float, config=StreamConfig(), on_event=None):
    """Results of ``srcs`` for ``seconds`` (then the loop is left: how a live run is stopped from Python)."""
    results, t0 = [], time.monotonic()
    for r in stream(model, srcs, config, hooks=Hooks(on_event=on_event)):
        results.append(r)
        if time.monotonic() - t0 > seconds:
            break
    return results


def codes(results) -> list[int]:
    return [framecode.read(r.image) for r in results]


def test_a_live_rtsp_stream_comes_in_order_at_its_rate(model, rtsp_server):
    results = run_for(model, [rtsp_server.url("/live")], 4.0, StreamConfig(keep_frames=True))
    numbers = codes(results)
    assert len(results) > 40 and None not in numbers
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # in order, no frame twice
    frames = [r.frame for r in results]  # its index in the stream: a gap is a frame dropped while the model was busy
    assert frames == sorted(set(frames)) and frames[0] == 0
    span = results[-1].captured - results[0].captured
    assert 20 < (len(results) - 1) / span < 40  # the source's 30 fps, not faster
    lat = sorted(r.latency_ms for r in results)
    print(f"live: {len(results)} frames, latency p50 {lat[len(lat) // 2]:.1f} ms, max {lat[-1]:.1f} ms")
    assert lat[len(lat) // 2] < 250


def test_a_killed_server_is_reported_and_reconnected_while_a_file_goes_on(model, rtsp_server, tmp_path):
    video = write_video(tmp_path / "file.mp4", frames=240, fps=30.0)
    events, lock = [], threading.Lock()

    def on_event(stream_id, kind, text):
        with lock:
            events.append((time.monotonic(), stream_id, kind, text))

    done = threading.Event()

    def outage():  # this thread lives until the test ends: the server it restarts dies with it (PDEATHSIG)
        time.sleep(2.5)
        rtsp_server.kill()
        time.sleep(1.5)
        rtsp_server.restart()
        done.wait(60)

    cut = threading.Thread(target=outage, daemon=True)
    cut.start()
    t0 = time.monotonic()
    results = []
    try:
        for r in stream(model, [rtsp_server.url("/live"), str(video)], StreamConfig(keep_frames=True),
                        hooks=Hooks(on_event=on_event)):
            results.append((time.monotonic(), r))
            if time.monotonic() - t0 > 11 and any(e[2] == "ended" and e[1] == 1 for e in events):
                break
    finally:
        done.set()
        cut.join()
    kinds = [(e[1], e[2]) for e in events]
    assert (0, "lost") in kinds and (0, "reconnected") in kinds, events
    lost_at = next(t for t, s, k, _ in events if (s, k) == (0, "lost"))
    back_at = next(t for t, s, k, _ in events if (s, k) == (0, "reconnected"))
    live_after = [r for t, r in results if r.stream == 0 and t > back_at]
    assert len(live_after) > 10  # it resumed
    assert codes(live_after)[0] < 60  # a new session of the restarted server: its numbering starts again
    file_frames = [r.frame for _, r in results if r.stream == 1]
    assert file_frames == list(range(240))  # the file stream went on through the outage, every frame
    during = [r for t, r in results if r.stream == 1 and lost_at < t < back_at]
    assert during, "the file stream produced results while the live one was down"
    print(f"lost after {lost_at - t0:.1f} s, reconnected {back_at - lost_at:.1f} s later; "
          f"{len(live_after)} live frames after")


def test_a_stalled_camera_is_detected_and_retried(model, rtsp_server, monkeypatch):
    monkeypatch.setattr(sources, "READ_TIMEOUT_MS", 1000)
    events = []
    results = run_for(model, [rtsp_server.url("/stall")], 6.0, on_event=lambda *e: events.append(e))
    assert 0 < len(results) <= 40  # the frames it sent before stalling
    lost = [e for e in events if e[1] == "lost"]
    assert lost and "no frame for 1 s" in lost[0][2]


def test_a_live_source_faster_than_the_model_drops_and_stays_fresh(model, rtsp_server):
    """/fast sends 120 fps; the model takes 50 ms a call: most frames are dropped (counted), and the results
    stay fresh — a result's frame is at most a few model calls old, not seconds behind."""
    with OnnxRunner(model) as real:
        slow = _Slow(real, letterbox_batch([np.zeros((320, 320, 3), np.uint8)], 320)[0])
    pipeline = build_pipeline([slow], parse_sources([rtsp_server.url("/fast")]), StreamConfig(batch=1, buffers=2))
    results, t0 = [], time.monotonic()
    for r in pipeline.results():
        results.append(r)
        if time.monotonic() - t0 > 4:
            break
    s = pipeline.snapshot()["streams"][0]
    assert s["dropped"] > 2 * s["done"] and s["read"] >= s["done"] + s["dropped"]
    lat = sorted(r.latency_ms for r in results[5:])
    print(f"fast: read {s['read']}, done {s['done']}, dropped {s['dropped']}, latency p50 {lat[len(lat) // 2]:.0f} "
          f"ms, max {lat[-1]:.0f} ms")
    assert lat[-1] < 1000 * (2 + 2) * _Slow.delay + 150  # ring of 2 + its own call, plus decoding


class _Slow(RecordedRunner):
    delay = 0.05

    def infer(self, batch):
        time.sleep(self.delay)
        return super().infer(batch)


def test_a_video_over_http_is_read_to_its_end(model, http_video):
    results = list(stream(model, [http_video.url("clip.mp4")], StreamConfig(keep_frames=True)))
    assert [r.frame for r in results] == list(range(http_video.frames))
    assert codes(results) == list(range(http_video.frames))
