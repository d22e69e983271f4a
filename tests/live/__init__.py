"""Real live-video sources on loopback for the tests: an RTSP server, an HTTP file server, test video files.

- :class:`RtspServer` runs ``tests/live/rtsp_server.py`` (GStreamer's RTSP server) in a child process of the system
  ``python3`` (python3-gi is a Debian package, not in the venv). :func:`missing_rtsp_reason` says why it cannot run.
- :class:`HttpFileServer` serves a folder over HTTP/1.1 with byte ranges (FFmpeg seeks inside an mp4 that way).
- :func:`write_video` writes a real video (moving synthetic shapes with the frame number drawn in, see
  :mod:`tests.live.framecode`); :func:`truncated_copy` cuts one short.
- :func:`silent_port` is a TCP port that accepts connections and never answers (a camera that hangs).

The measured behaviour of OpenCV's FFmpeg reader against these sources is in tests/live/README.md.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import framecode

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "rtsp_server.py"
READY_TIMEOUT_S = 20.0  # the server is up in ~0.3 s; generous for a loaded 2-core CI host
#: The interpreter that runs the RTSP server: $TRTBUILD_GST_PYTHON, else the first of these with python3-gi.
GST_PYTHONS = ("/usr/bin/python3", "python3")
_PROBE = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("appsrc", "x264enc", "rtph264pay") if Gst.ElementFactory.find(e) is None]
print("MISSING " + " ".join(missing) if missing else "OK")
"""
APT_PACKAGES = ("python3-gi", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good",
                "gstreamer1.0-plugins-ugly")
_ELEMENT_PACKAGE = {"appsrc": "gstreamer1.0-plugins-base", "x264enc": "gstreamer1.0-plugins-ugly",
                    "rtph264pay": "gstreamer1.0-plugins-good"}


class RtspUnavailable(RuntimeError):
    """GStreamer's RTSP server cannot run on this host (the message says which package is missing)."""


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str | None, str | None]:
    """(interpreter, None) for the first Python that can run the server, else (None, why not)."""
    env = os.environ.get("TRTBUILD_GST_PYTHON")
    candidates = [env] if env else list(GST_PYTHONS)
    why = []
    for cand in candidates:
        exe = shutil.which(cand)
        if exe is None:
            why.append(f"{cand}: not found")
            continue
        try:
            res = subprocess.run([exe, "-c", _PROBE], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            why.append(f"{exe}: {exc}")
            continue
        out = res.stdout.strip()
        if res.returncode == 0 and out == "OK":
            return exe, None
        if out.startswith("MISSING "):
            names = out.split()[1:]
            pkgs = sorted({_ELEMENT_PACKAGE[n] for n in names})
            why.append(f"{exe}: GStreamer elements {', '.join(names)} missing (apt-get install {' '.join(pkgs)})")
        else:
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            why.append(f"{exe}: cannot import gi / GstRtspServer 1.0 ({last})")
    return None, ("GStreamer's RTSP server is not available: " + "; ".join(why)
                  + f" — on Debian/Ubuntu: apt-get install {' '.join(APT_PACKAGES)}")


def missing_rtsp_reason() -> str | None:
    """Why :class:`RtspServer` cannot run here (for a pytest skip), or None when it can."""
    return _probe()[1]


def _pdeathsig() -> None:  # in the child, before exec: die with the test process, never outlive it
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class RtspServer:
    """A real GStreamer RTSP server on loopback, in a child process.

    ``mounts``: ``PATH=WxH@FPS[,stall=SECONDS]`` strings (default: /live 640x360@30, /fast 320x180@120, /stall
    640x360@30 that stops after 1 s); every mount is shared by its clients. ``port`` 0 lets the server pick a free
    port at the first start; :meth:`restart` reuses it, so a client can reconnect to the same URL. A port that is
    taken is retried for ``bind_retry`` s, then start() raises RuntimeError.

    >>> with RtspServer() as srv:                     # doctest: +SKIP
    ...     cap = cv2.VideoCapture(srv.url("/live"), cv2.CAP_FFMPEG)
    ...     srv.kill()                                # SIGKILL: the server vanishes mid-stream
    ...     srv.restart()                             # same port, fresh pipelines
    """

    def __init__(self, mounts: Sequence[str] | None = None, *, port: int = 0, host: str = "127.0.0.1",
                 ready_timeout: float = READY_TIMEOUT_S, bind_retry: float = 5.0):
        self.mounts = list(mounts) if mounts else []
        self.host, self.port, self.ready_timeout, self.bind_retry = host, port, ready_timeout, bind_retry
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> RtspServer:
        """Start the server and wait for its READY line; raises :class:`RtspUnavailable` where GStreamer is
        missing, RuntimeError (with the server's log) when it does not come up in ``ready_timeout`` s."""
        if self.running:
            return self
        exe, why = _probe()
        if exe is None:
            raise RtspUnavailable(why)
        now = time.monotonic()
        deadline, bind_deadline = now + self.ready_timeout, now + min(self.bind_retry, self.ready_timeout)
        while True:  # a port just freed by kill() can be refused for a moment: retry for bind_retry s
            line = self._spawn(exe, deadline)
            m = re.fullmatch(r"READY rtsp://[\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.starts += 1
                return self
            self.kill()
            if not line.startswith("ERROR") or time.monotonic() > bind_deadline:
                why = line or f"no READY line in {self.ready_timeout:.0f} s"
                log = self.log()
                self.log_path.unlink(missing_ok=True)
                self.log_path = None
                raise RuntimeError(f"RTSP server did not start ({why}); its log:\n{log}")
            time.sleep(0.2)

    def _spawn(self, exe: str, deadline: float) -> str:
        if self.log_path is None:  # one log for all starts of this server, removed by __exit__
            fd, log = tempfile.mkstemp(prefix="rtsp-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(log)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)
        cmd = [exe, "-u", str(SERVER_SCRIPT), "--host", self.host, "--port", str(self.port)]
        for m in self.mounts:
            cmd += ["--mount", m]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=fd, stdin=subprocess.DEVNULL,
                                     preexec_fn=_pdeathsig, env={**os.environ, "GST_DEBUG": "0"})
        os.close(fd)
        return self._read_line(deadline)

    def _read_line(self, deadline: float) -> str:
        import selectors

        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    break
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:  # exited
                    break
                buf += chunk
        return buf.decode(errors="replace").split("\n")[0].strip()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-stream (sockets closed by the kernel, no RTSP TEARDOWN, no BYE)."""
        if self.running:
            self.proc.kill()
        self._reap()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after ``timeout`` s); the exit status, None if not started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self._reap()

    def restart(self) -> RtspServer:
        """kill() if still running, then start again on the same port."""
        self.kill()
        return self.start()

    def ensure_running(self) -> RtspServer:
        return self if self.running else self.start()

    def _reap(self) -> int | None:
        if self.proc is None:
            return None
        rc = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return rc

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.log_path:
            self.log_path.unlink(missing_ok=True)

    # -- use ---------------------------------------------------------------------------------------------------
    def url(self, mount: str = "/live") -> str:
        if not self.port:
            raise RuntimeError("RtspServer.url(): start() the server first (the port is picked at the first start)")
        return f"rtsp://{self.host}:{self.port}/{mount.lstrip('/')}"

    def first_frame_time(self, mount: str = "/live") -> float | None:
        """``time.monotonic()`` at which the current stream of ``mount`` sent its frame 0 (frame n follows at
        ``+ n / fps``), from the server's log; None before a client started it. Linux's CLOCK_MONOTONIC is one
        clock for all processes, so ``time.monotonic() - (first_frame_time + n / fps)`` is frame n's latency."""
        path = "/" + mount.lstrip("/")
        times = re.findall(rf"^rtsp_server: {re.escape(path)}: frame 0 at monotonic ([\d.]+)\b", self.log(), re.M)
        return float(times[-1]) if times else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


# -- HTTP --------------------------------------------------------------------------------------------------------
class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD of files with ``Range: bytes=a-b`` (206), as a real web server does; no directory listings."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def list_directory(self, path):
        self.send_error(404)
        return None

    def send_head(self):
        self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "File not found")
            return None
        size = path.stat().st_size
        start, end = 0, size - 1
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if rng and (rng.group(1) or rng.group(2)):
            if rng.group(1):
                start = int(rng.group(1))
                end = min(int(rng.group(2)), size - 1) if rng.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(rng.group(2)))
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f = open(path, "rb")
        f.seek(start)
        self._left = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        left = self._left
        while left > 0:
            chunk = source.read(min(65536, left))
            if not chunk:
                break
            try:
                outputfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):  # the client closed after what it needed
                break
            left -= len(chunk)


class HttpFileServer:
    """Serves ``root`` on ``http://127.0.0.1:PORT/`` (a free port) from a thread, with byte ranges."""

    def __init__(self, root: Path | str, host: str = "127.0.0.1"):
        self.root, self.host = Path(root), host
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> HttpFileServer:
        handler = functools.partial(_RangeHandler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer((self.host, 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []  # (method, path, Range header or None) of every request, in order
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http-video", daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name.lstrip('/')}"

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        """(method, path, Range header or None) of every request so far."""
        return list(self.httpd.requests) if self.httpd else []

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self) -> HttpFileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- ports -------------------------------------------------------------------------------------------------------
def closed_port(host: str = "127.0.0.1") -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def silent_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake) and never sends a byte: a camera
    that hangs, or a firewall that swallows requests. Connections are reset when the context exits."""
    with socket.socket() as s:
        s.bind((host, 0))
        s.listen(16)
        yield s.getsockname()[1]


# -- video files -------------------------------------------------------------------------------------------------
def draw_frame_code(image, number: int) -> None:
    """Draw frame ``number`` into the top-left row of a BGR ``image`` (in place), as the RTSP server does."""
    b = framecode.block(image.shape[1])
    for i, level in enumerate(framecode.levels(number)):
        image[:b, i * b:(i + 1) * b] = level


def video_frames(n: int, size: tuple[int, int] = (640, 360), seed: int = 0):
    """``n`` BGR frames of ``size`` (w, h): a pan across two synthetic-shapes pictures
    (``trtbuild.data.synth.render_image``), frame number drawn in."""
    import cv2
    import numpy as np

    from trtbuild.data.synth import render_image

    w, h = size
    strip = np.hstack([cv2.resize(render_image(seed, "val", i)[0], (w, h)) for i in range(2)])
    step = w / max(1, n - 1)
    for k in range(n):
        x = int(round(k * step))
        frame = np.ascontiguousarray(strip[:, x:x + w])
        draw_frame_code(frame, k)
        yield frame


def write_video(path: Path | str, frames: int = 60, fps: float = 30.0, size: tuple[int, int] = (640, 360),
                fourcc: str = "mp4v", seed: int = 0) -> Path:
    """A real video file of ``frames`` frames written by cv2.VideoWriter (``mp4v`` in .mp4, ``MJPG`` in .avi)."""
    import cv2

    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} with fourcc {fourcc!r}")
    try:
        for frame in video_frames(frames, size, seed):
            writer.write(frame)
    finally:
        writer.release()
    return path


def truncated_copy(src: Path | str, dst: Path | str, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``src``'s bytes in ``dst`` (a download or a recording cut short)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:int(len(data) * fraction)])
    return Path(dst)


@dataclass
class VideoSet:
    """Real video files in ``root`` (see :func:`make_video_set`), served by ``http``."""

    root: Path
    http: HttpFileServer
    frames: int
    fps: float
    size: tuple[int, int]

    def path(self, name: str) -> Path:
        return self.root / name

    def url(self, name: str) -> str:
        return self.http.url(name)


def make_video_set(root: Path | str, frames: int = 60, fps: float = 30.0,
                   size: tuple[int, int] = (640, 360)) -> list[Path]:
    """Writes into ``root``: ``clip.mp4`` (mp4v) and ``clip.avi`` (MJPG) of ``frames`` frames, and ``cut.mp4`` /
    ``cut.avi``, their first halves (the mp4's index, its moov atom, is at the end: cut.mp4 does not open;
    cut.avi opens and reads its first half)."""
    root = Path(root)
    mp4 = write_video(root / "clip.mp4", frames, fps, size, "mp4v")
    avi = write_video(root / "clip.avi", frames, fps, size, "MJPG")
    return [mp4, avi, truncated_copy(mp4, root / "cut.mp4"), truncated_copy(avi, root / "cut.avi")]


def read_all(cap, limit: int = 100000) -> list:
    """Every frame ``cap.read()`` gives until it fails (at most ``limit``)."""
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    return frames

