"""Real live video into OpenCV's FFmpeg reader (cv2.VideoCapture, CAP_FFMPEG): the facts a streaming layer builds on.

RTSP tests (marker ``live``) use the session's real GStreamer RTSP server on loopback (tests/live/rtsp_server.py,
fixture ``rtsp_server``): /live 640x360 at 30 fps, /fast 320x180 at 120 fps, /stall 30 frames then silence. Every
frame carries its number (tests/live/framecode.py), so a test sees exactly which frames it got. The HTTP and file
tests (fixture ``http_video``) need no GStreamer. Each test records its measured timings (the "recorded figures"
section of the pytest summary); tests/live/README.md sums them up.
"""

from __future__ import annotations

import hashlib
import time

import cv2
import pytest

from ..live import closed_port, framecode, read_all, silent_port

live = pytest.mark.live

FAST_OPEN = "rtsp_transport;tcp|analyzeduration;0|probesize;32"  # OPENCV_FFMPEG_CAPTURE_OPTIONS, see test below


def open_capture(url: str, open_ms: int | None = None, read_ms: int | None = None,
                 threads: int | None = None) -> tuple[cv2.VideoCapture, float]:
    """cv2.VideoCapture(url, CAP_FFMPEG, params) and the seconds the constructor took. The timeouts and the
    decoder's thread count are open parameters: ``cap.set()`` of them afterwards does nothing (it returns False)."""
    params = []
    if open_ms is not None:
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms]
    if read_ms is not None:
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
    if threads is not None:
        params += [cv2.CAP_PROP_N_THREADS, threads]
    t = time.monotonic()
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    return cap, time.monotonic() - t


def read_numbered(cap: cv2.VideoCapture, n: int) -> tuple[list[int], list[float]]:
    """The frame numbers of the next ``n`` frames and the monotonic time each read() returned."""
    numbers, times = [], []
    for _ in range(n):
        ok, frame = cap.read()
        assert ok, f"read() failed after {len(numbers)} frames"
        numbers.append(framecode.read(frame))
        times.append(time.monotonic())
    return numbers, times


def consecutive(numbers: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(numbers, numbers[1:]))


def figures(record_property, text: str) -> None:
    print(text)
    record_property("figures", text)


# -- RTSP: frame rates ---------------------------------------------------------------------------------------------
@live
def test_live_mount_delivers_every_frame_at_30_fps(rtsp_server, record_property):
    cap, t_open = open_capture(rtsp_server.url("/live"), open_ms=10000, read_ms=5000)
    try:
        assert cap.isOpened()
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
        assert cap.get(cv2.CAP_PROP_FPS) == 30
        numbers, times = read_numbered(cap, 75)
    finally:
        cap.release()
    # the frames FFmpeg buffered while it probed the stream at open come first, at once; then one per 1/30 s
    assert numbers[0] == 0 and consecutive(numbers), numbers
    steady = (len(times) - 36) / (times[-1] - times[35])
    assert 24 <= steady <= 36, steady
    figures(record_property, f"/live: open {t_open:.2f} s, {len(numbers)} frames in order from frame 0, "
                             f"steady {steady:.1f} fps (frames 35-74)")


@live
def test_fast_mount_delivers_more_than_60_fps(rtsp_server, record_property):
    cap, t_open = open_capture(rtsp_server.url("/fast"), open_ms=10000, read_ms=5000)
    try:
        assert cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 320
        numbers, times = read_numbered(cap, 200)
    finally:
        cap.release()
    steady = (len(times) - 61) / (times[-1] - times[60])
    assert consecutive(numbers), numbers
    assert steady > 60, steady
    figures(record_property, f"/fast: open {t_open:.2f} s, steady {steady:.0f} fps (frames 60-199, source 120)")


@live
def test_two_clients_of_a_mount_share_one_stream(rtsp_server, record_property):
    """Shared media: the second client joins the first one's running stream (frame numbers far from 0) and
    decodes the same frames bit for bit, not a stream of its own."""
    a, _ = open_capture(rtsp_server.url("/live"), open_ms=10000, read_ms=5000)
    b = None
    try:
        seen_a = dict(zip(*read_numbered(a, 30)))  # ~1 s of backlog, then live
        b, t_open_b = open_capture(rtsp_server.url("/live"), open_ms=10000, read_ms=5000)
        assert b.isOpened()
        frames_a, frames_b = {}, {}
        for _ in range(45):
            for cap, into in ((a, frames_a), (b, frames_b)):
                ok, frame = cap.read()
                assert ok
                into[framecode.read(frame)] = hashlib.sha1(frame.tobytes()).hexdigest()
    finally:
        a.release()
        if b is not None:
            b.release()
    first_b = min(frames_b)
    assert first_b > max(seen_a), (first_b, max(seen_a))  # joined mid-stream: an own stream would start at 0
    common = sorted(set(frames_a) & set(frames_b))
    assert len(common) >= 20, (sorted(frames_a), sorted(frames_b))
    assert all(frames_a[n] == frames_b[n] for n in common)
    figures(record_property, f"shared /live: 2nd client opened in {t_open_b:.2f} s at frame {first_b}; "
                             f"{len(common)} common frames, identical pixels")


# -- RTSP: the server vanishes, comes back ------------------------------------------------------------------------
@live
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_killed_server_fails_read_at_once_and_a_new_capture_reads_after_restart(rtsp_server, transport, monkeypatch,
                                                                                  record_property):
    """OpenCV asks for RTP over the RTSP TCP connection (rtsp_flags=prefer_tcp) unless OPENCV_FFMPEG_CAPTURE_OPTIONS
    is set; then FFmpeg's own default, UDP, applies. Either way a vanished server fails read() at once."""
    if transport == "udp":
        monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp")
    url = rtsp_server.url("/live")
    cap, _ = open_capture(url, open_ms=5000, read_ms=2000)
    try:
        assert cap.isOpened()
        read_numbered(cap, 40)
        rtsp_server.kill()
        t_kill, after_kill = time.monotonic(), 0
        while cap.read()[0]:  # frames already received and decoded still come out
            after_kill += 1
            assert after_kill < 30
        t_fail = time.monotonic() - t_kill
        t = time.monotonic()
        assert not cap.read()[0]  # it stays failed, at once
        t_again = time.monotonic() - t

        t0 = time.monotonic()
        rtsp_server.restart()
        t_restart = time.monotonic() - t0
        assert rtsp_server.url("/live") == url  # same port
        assert not cap.read()[0]  # the old capture does not reconnect by itself
        new, t_open = open_capture(url, open_ms=5000, read_ms=2000)
        try:
            assert new.isOpened()
            ok, frame = new.read()
            t_first = time.monotonic() - t0
            assert ok and framecode.read(frame) == 0  # a fresh stream from the restarted server
        finally:
            new.release()
    finally:
        cap.release()
    assert t_fail < 5.0 and t_again < 1.0, (t_fail, t_again)
    assert after_kill <= 3, after_kill
    assert t_first < 10.0, t_first
    figures(record_property, f"kill -9 of the server ({transport}): read() False after {t_fail:.2f} s "
                             f"({after_kill} buffered frames first), again {t_again:.2f} s; restart "
                             f"{t_restart:.2f} s, new capture "
                             f"open {t_open:.2f} s, first frame {t_first:.2f} s after the restart began")


@live
def test_stalled_stream_read_blocks_for_the_read_timeout_then_fails(rtsp_server, record_property):
    """/stall sends 30 frames (1 s) and then nothing, the RTSP session still open: read() blocks. It gives up
    after CAP_PROP_READ_TIMEOUT_MSEC (30 s by default), and the last frame or two come out only then."""
    timeout_s = 1.0
    cap, _ = open_capture(rtsp_server.url("/stall"), open_ms=10000, read_ms=int(timeout_s * 1000), threads=1)
    numbers, blocked = [], []
    try:
        assert cap.isOpened()
        while True:
            t = time.monotonic()
            ok, frame = cap.read()
            blocked.append(time.monotonic() - t)
            if not ok:
                break
            numbers.append(framecode.read(frame))
            assert len(numbers) < 100, "the /stall mount did not stall"
        t = time.monotonic()
        assert not cap.read()[0]  # still stalled: every further read blocks for the timeout again
        t_again = time.monotonic() - t
    finally:
        cap.release()
    assert numbers == list(range(30)), numbers
    late = [round(s, 2) for s in blocked[:-1] if s > 0.8 * timeout_s]  # frames held back until a timeout
    assert len(late) <= 2, blocked
    assert 0.8 * timeout_s <= blocked[-1] <= timeout_s + 2.0, blocked[-1]
    assert 0.8 * timeout_s <= t_again <= timeout_s + 2.0, t_again
    stall_to_fail = sum(s for s in blocked if s > 0.8 * timeout_s)
    figures(record_property, f"/stall, READ_TIMEOUT {timeout_s:.0f} s, N_THREADS 1: frames 0-29, then "
                             f"{len(late)} late frame(s) after {late} s, read() False after {blocked[-1]:.2f} s "
                             f"({stall_to_fail:.2f} s in all); next read False after {t_again:.2f} s")


# -- RTSP: nothing there ------------------------------------------------------------------------------------------
@live
def test_unreachable_sources_fail_to_open_within_a_bound(rtsp_server, record_property):
    refused, t_refused = open_capture(f"rtsp://127.0.0.1:{closed_port()}/live", open_ms=3000)
    missing, t_missing = open_capture(rtsp_server.url("/no-such-mount"), open_ms=3000)
    with silent_port() as port:  # accepts TCP, never answers: only the open timeout ends the wait
        silent, t_silent = open_capture(f"rtsp://127.0.0.1:{port}/live", open_ms=1500)
    assert not refused.isOpened() and not missing.isOpened() and not silent.isOpened()
    assert t_refused < 1.0 and t_missing < 1.0, (t_refused, t_missing)
    assert 1.2 <= t_silent <= 4.0, t_silent
    figures(record_property, f"open fails: closed port {t_refused:.2f} s, unknown mount (404) {t_missing:.2f} s, "
                             f"silent port {t_silent:.2f} s with OPEN_TIMEOUT 1.5 s")


# -- RTSP: open latency and the first frame's age --------------------------------------------------------------
@live
def test_open_backlog_and_how_to_start_fresh(rtsp_server, monkeypatch, record_property):
    """By default open() probes ~1 s of the stream and read() then returns those buffered frames first (frame 0,
    about 1 s old). ``analyzeduration;0|probesize;32`` opens at once with a fresh first frame; N_THREADS=1 keeps
    the steady latency at about one frame (the decoder holds N_THREADS frames)."""
    url = rtsp_server.url("/live")

    def run(threads):
        cap, t_open = open_capture(url, open_ms=10000, read_ms=5000, threads=threads)
        try:
            assert cap.isOpened()
            numbers, times = read_numbered(cap, 45)
        finally:
            cap.release()
        t0 = rtsp_server.first_frame_time("/live")
        ages = [t - (t0 + n / 30) for n, t in zip(numbers, times)]
        time.sleep(0.3)  # the shared media stops with its last client: the next run starts a new stream
        return t_open, numbers[0], ages[0], sorted(ages[-15:])[7]

    default = run(None)
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", FAST_OPEN)
    fast = run(1)
    assert default[1] == 0 and default[2] >= 0.5, default  # the probed backlog comes first
    assert fast[0] < 0.5 and fast[2] < 0.3 and fast[3] < 0.15, fast
    figures(record_property, f"/live open: default {default[0]:.2f} s, first frame {default[1]} aged "
                             f"{default[2]:.2f} s, steady age {default[3] * 1000:.0f} ms; {FAST_OPEN} + N_THREADS 1: "
                             f"{fast[0]:.2f} s, first frame aged {fast[2]:.2f} s, steady {fast[3] * 1000:.0f} ms")


# -- HTTP and files -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["clip.mp4", "clip.avi"])
def test_http_video_reads_all_its_frames(http_video, name, record_property):
    cap, t_open = open_capture(http_video.url(name), open_ms=5000, read_ms=5000)
    try:
        assert cap.isOpened()
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == http_video.frames
        t = time.monotonic()
        frames = read_all(cap)
        t_read = time.monotonic() - t
    finally:
        cap.release()
    assert [framecode.read(f) for f in frames] == list(range(http_video.frames))
    assert frames[0].shape == (360, 640, 3)
    ranges = [r for (_, path, r) in http_video.http.requests if path == f"/{name}" and r]
    if name.endswith(".mp4"):  # the index (moov) is at the end: FFmpeg fetches it with a range request
        assert ranges, http_video.http.requests
    figures(record_property, f"http {name}: open {t_open:.2f} s, {len(frames)} frames in {t_read:.2f} s, "
                             f"{len(ranges)} range requests")


@pytest.mark.parametrize("where", ["file", "http"])
def test_truncated_videos(http_video, where):
    """A truncated mp4 (its moov index lost) does not open; a truncated MJPG AVI opens, keeps the frame count of
    its header and reads its first part, then read() fails."""
    src = (lambda n: str(http_video.path(n))) if where == "file" else http_video.url
    mp4, _ = open_capture(src("cut.mp4"), open_ms=5000)
    assert not mp4.isOpened()
    avi, _ = open_capture(src("cut.avi"), open_ms=5000, read_ms=5000)
    try:
        assert avi.isOpened() and avi.get(cv2.CAP_PROP_FRAME_COUNT) == http_video.frames
        numbers = [framecode.read(f) for f in read_all(avi)]
    finally:
        avi.release()
    assert 0 < len(numbers) < http_video.frames and numbers == list(range(len(numbers)))


# -- the server itself --------------------------------------------------------------------------------------------
@live
def test_server_exits_cleanly_on_sigterm_and_refuses_a_taken_port():
    from ..live import RtspServer

    with RtspServer(["/only=320x180@10"]) as srv:
        taken = srv.port
        cap, _ = open_capture(srv.url("/only"), open_ms=10000, read_ms=5000)
        try:
            assert cap.isOpened() and cap.read()[0] and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 320
        finally:
            cap.release()
        other = RtspServer(port=taken, bind_retry=0)
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{taken}"):
            other.start()
        assert srv.stop() == 0  # SIGTERM: exit status 0
