"""A real RTSP server on loopback for the live-video tests (GStreamer's GstRtspServer, H.264 over RTP).

Run with the system ``python3`` (python3-gi and the GStreamer packages are Debian packages, not in the venv)::

    /usr/bin/python3 tests/live/rtsp_server.py --port 8554
    /usr/bin/python3 tests/live/rtsp_server.py --port 0 --mount /cam1=640x360@25 --mount /dead=640x360@30,stall=0.5

It prints ``READY rtsp://127.0.0.1:PORT`` (the bound port; ``--port 0`` picks a free one) once it accepts
connections, ``ERROR ...`` and exit status 3 when it cannot bind, and exits 0 on SIGTERM or SIGINT.

Every mount is shared (``set_shared(True)``): all clients of one mount get the same stream from one pipeline, which
starts with the first client and stops after the last one leaves. A mount is ``PATH=WxH@FPS`` with an optional
``,stall=SECONDS``: after that many seconds of frames it sends nothing more but keeps the RTSP session and its
RTP/RTCP ports open (a stalled camera). The default mounts are /live (640x360 at 30 fps), /fast (320x180 at 120
fps) and /stall (640x360 at 30 fps for 1 s, then nothing).

The frames are made here (appsrc, I420): a grey gradient, a red square that moves, and the frame number in the
top-left row as black and white blocks (tests/live/framecode.py reads it back after decoding), so a client can
tell which frames it got, which it missed and whether two clients see the same stream. They are encoded with
``x264enc tune=zerolatency speed-preset=ultrafast`` (a keyframe every 0.5 s) and sent by ``rtph264pay`` with
SPS/PPS before every keyframe, so a client that joins a running stream decodes from its next keyframe.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import framecode  # noqa: E402  (beside this file; pure Python)

DEFAULT_MOUNTS = ["/live=640x360@30", "/fast=320x180@120", "/stall=640x360@30,stall=1"]
MOUNT_RE = re.compile(r"^(/[\w/-]*)=(\d+)x(\d+)@(\d+)(?:,stall=([\d.]+))?$")


class Mount:
    def __init__(self, spec: str):
        m = MOUNT_RE.match(spec)
        if not m:
            raise ValueError(f"--mount {spec!r}: expected PATH=WxH@FPS[,stall=SECONDS], e.g. /live=640x360@30")
        self.path = m.group(1)
        self.width, self.height, self.fps = int(m.group(2)), int(m.group(3)), int(m.group(4))
        self.stall = float(m.group(5)) if m.group(5) else None
        if self.width % 2 or self.height % 2 or self.fps < 1:
            raise ValueError(f"--mount {spec!r}: width and height must be even and FPS at least 1")
        framecode.block(self.width)  # raises for a frame too narrow for the frame code

    def launch(self) -> str:
        caps = f"video/x-raw,format=I420,width={self.width},height={self.height},framerate={self.fps}/1"
        return (f"( appsrc name=src is-live=true do-timestamp=true format=time caps={caps} "
                f"! x264enc tune=zerolatency speed-preset=ultrafast threads=1 key-int-max={max(1, self.fps // 2)} "
                f"! rtph264pay name=pay0 pt=96 config-interval=-1 )")


class Frames:
    """I420 frames of one mount: gradient, moving square, frame code. Pure Python byte slicing."""

    def __init__(self, mount: Mount):
        w, h = self.w, self.h = mount.width, mount.height
        self.base_y = bytearray(b"".join(bytes([40 + (y * 150) // h]) * w for y in range(h)))
        self.base_c = bytearray(b"\x80" * ((w // 2) * (h // 2)))  # neutral chroma
        self.b = framecode.block(w)
        self.side = max(16, (h // 4) & ~1)
        self.top = (2 * self.b) & ~1  # below the frame code row

    def make(self, n: int) -> bytes:
        w, h, s, b = self.w, self.h, self.side, self.b
        y, u, v = bytearray(self.base_y), bytearray(self.base_c), bytearray(self.base_c)
        span = w - s
        x = (n * 4) % (2 * span)
        x = (x if x < span else 2 * span - x) & ~1  # bounces between the edges
        top = self.top + ((n * 2) % max(2, h - s - self.top)) & ~1
        square = b"\x52" * s
        for r in range(top, top + s):
            y[r * w + x:r * w + x + s] = square
        cw, cs = w // 2, s // 2
        for r in range(top // 2, top // 2 + cs):  # red: U 90, V 240
            u[r * cw + x // 2:r * cw + x // 2 + cs] = b"\x5a" * cs
            v[r * cw + x // 2:r * cw + x // 2 + cs] = b"\xf0" * cs
        row = b"".join(bytes([level]) * b for level in framecode.levels(n))
        for r in range(b):
            y[r * w:r * w + len(row)] = row
        return bytes(y + u + v)


class Feeder:
    """Pushes one media's frames into its appsrc at the mount's frame rate, from the first need-data on."""

    def __init__(self, mount: Mount, appsrc, Gst):
        self.mount, self.appsrc, self.Gst = mount, appsrc, Gst
        self.frames = Frames(mount)
        self.started, self.stopped = threading.Event(), threading.Event()
        appsrc.connect("need-data", lambda *_: self.started.set())
        self.thread = threading.Thread(target=self.run, name=f"feed{mount.path}", daemon=True)
        self.thread.start()

    def stop(self, *_):
        self.stopped.set()
        self.started.set()

    def run(self):
        Gst, fps = self.Gst, self.mount.fps
        while not self.started.wait(0.1):
            pass
        limit = None if self.mount.stall is None else max(1, round(self.mount.stall * fps))
        t0, n = time.monotonic(), 0
        log(f"{self.mount.path}: frame 0 at monotonic {t0:.6f}")  # CLOCK_MONOTONIC: comparable across processes
        while not self.stopped.is_set():
            if limit is not None and n >= limit:
                log(f"{self.mount.path}: stalled after {n} frames (session kept open, nothing more sent)")
                self.stopped.wait()
                return
            late = time.monotonic() - (t0 + n / fps)
            if late < 0:
                if self.stopped.wait(-late):
                    return
            elif late > 0.25:  # fell behind (a busy host): skip ahead in time, never burst old frames
                t0 += late
                log(f"{self.mount.path}: frame 0 at monotonic {t0:.6f} (fell {late:.3f} s behind at frame {n})")
            buf = Gst.Buffer.new_wrapped(self.frames.make(n))
            buf.duration = Gst.SECOND // fps
            if self.appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:  # media torn down (last client left)
                return
            n += 1


def log(msg: str) -> None:
    print(f"rtsp_server: {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="TCP port of the RTSP server; 0 picks a free one")
    ap.add_argument("--mount", action="append", metavar="PATH=WxH@FPS[,stall=S]",
                    help=f"a mount (repeatable); default: {' '.join(DEFAULT_MOUNTS)}")
    args = ap.parse_args(argv)
    try:
        mounts = [Mount(s) for s in (args.mount or DEFAULT_MOUNTS)]
    except ValueError as exc:
        ap.error(str(exc))

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    points = server.get_mount_points()
    for mount in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(mount.launch())
        factory.set_shared(True)

        def configure(_factory, media, mount=mount):
            feeder = Feeder(mount, media.get_element().get_by_name("src"), Gst)
            media.connect("unprepared", feeder.stop)
            log(f"{mount.path}: new media {mount.width}x{mount.height}@{mount.fps}")

        factory.connect("media-configure", configure)
        points.add_factory(mount.path, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.host}:{args.port} (port in use?)", flush=True)
        return 3
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, lambda: (loop.quit(), False)[1])
    print(f"READY rtsp://{args.host}:{server.get_bound_port()}", flush=True)
    loop.run()
    log("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
