"""What a streaming run measures: per stream (frames read, done, dropped, reconnects, fps, capture → result latency)
and per stage (busy time, queue occupancy), the bottleneck they point to, the live status lines and the summary.

Pure Python over counters the pipeline's threads update; thread safety comes from each counter having one writer
(a reader thread owns its stream's read/drop counts, the result thread owns the done/latency figures) and the
snapshot being taken under one lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

STAGES = ("decode", "letterbox", "infer", "post", "sink")
FPS_WINDOW_S = 2.0


@dataclass
class StreamStats:
    """The figures of one stream."""

    id: int
    name: str
    live: bool
    status: str = "starting"  # starting, running, lost, ended, failed
    read: int = 0
    done: int = 0
    dropped: int = 0
    reconnects: int = 0
    skipped: int = 0
    events: list[str] = field(default_factory=list)
    _latency: deque = field(default_factory=lambda: deque(maxlen=512))
    _done_at: deque = field(default_factory=lambda: deque(maxlen=4096))
    latency_sum: float = 0.0

    def result(self, latency_s: float, now: float) -> None:
        self.done += 1
        self._latency.append(latency_s)
        self.latency_sum += latency_s
        self._done_at.append(now)

    def fps(self, now: float) -> float:
        recent = [t for t in self._done_at if now - t <= FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def latency_ms(self, q: float) -> float | None:
        return float(np.percentile(np.asarray(self._latency) * 1000, q)) if self._latency else None

    def to_dict(self, now: float) -> dict:
        return {"id": self.id, "name": self.name, "live": self.live, "status": self.status, "read": self.read,
                "done": self.done, "dropped": self.dropped, "reconnects": self.reconnects, "skipped": self.skipped,
                "fps": round(self.fps(now), 2),
                "latency_ms": {"p50": _r(self.latency_ms(50)), "p99": _r(self.latency_ms(99)),
                               "mean": _r(1000 * self.latency_sum / self.done) if self.done else None},
                "events": list(self.events[-20:])}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


class RunStats:
    """Every stream's figures, each stage's busy seconds and the queue occupancy samples of one run."""

    def __init__(self, streams: list[StreamStats], batch: int):
        self.streams = {s.id: s for s in streams}
        self.batch = batch
        self.busy = dict.fromkeys(STAGES, 0.0)
        self.counts = dict.fromkeys(STAGES, 0)
        self.batches = 0
        self.padded = 0  # rows of a static batch filled with nothing (no frame to put there)
        self.rows = 0
        self.samples: list[dict[str, int]] = []
        self.first_result: float | None = None  # monotonic times of the first and the last result of the run
        self.last_result: float | None = None
        self.started = time.monotonic()
        self.ended: float | None = None
        self._lock = threading.Lock()

    def delivered(self, stream: int, latency_s: float, now: float) -> None:
        """A result of ``stream`` left the pipeline ``latency_s`` after its frame was captured."""
        self.streams[stream].result(latency_s, now)
        if self.first_result is None:
            self.first_result = now
        self.last_result = now

    def steady_fps(self) -> float | None:
        """Results per second from the first result to the last: the throughput without the start (opening the
        sources, the first model call) and without waiting for more; None before two results."""
        done = sum(s.done for s in self.streams.values())
        if done < 2 or self.last_result == self.first_result:
            return None
        return (done - 1) / (self.last_result - self.first_result)

    def stage(self, name: str, seconds: float, items: int = 1) -> None:
        with self._lock:
            self.busy[name] += seconds
            self.counts[name] += items

    def event(self, stream: int, kind: str, text: str) -> None:
        s = self.streams[stream]
        with self._lock:
            s.events.append(f"{time.strftime('%H:%M:%S')} {kind}: {text}")
            if kind == "skip":
                s.skipped += 1
            elif kind == "lost":
                s.status = "lost"
            elif kind == "reconnected":
                s.status, s.reconnects = "running", s.reconnects + 1
            elif kind in ("ended", "failed"):
                s.status = kind if s.status != "failed" else s.status

    def sample(self, occupancy: dict[str, int]) -> None:
        with self._lock:
            self.samples.append(occupancy)
            if len(self.samples) > 20000:
                del self.samples[::2]  # long runs: keep every other sample, memory stays flat

    @property
    def wall(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def stage_table(self, readers: int, inferers: int = 1) -> list[dict]:
        """Per stage: busy share of its threads' time, ms per frame, and the share of time its input waited."""
        wall = max(self.wall, 1e-9)
        threads = {"decode": readers, "letterbox": readers, "infer": inferers, "post": 1, "sink": 1}
        frames = max(sum(s.done for s in self.streams.values()), 1)
        rows = []
        for name in STAGES:
            rows.append({"stage": name, "threads": threads[name], "busy_pct": round(100 * self.busy[name] /
                                                                                  (wall * threads[name]), 1),
                         "ms_per_frame": round(1000 * self.busy[name] / frames, 3)})
        return rows

    def bottleneck(self, readers: int, inferers: int = 1) -> str:
        """The stage whose threads were busiest (reading includes decoding and letterboxing); live sources that
        keep every stage below half busy are the limit themselves."""
        table = {r["stage"]: r["busy_pct"] for r in self.stage_table(readers, inferers)}
        reading = table["decode"] + table["letterbox"]
        busiest = max((("reading (decode + letterbox)", reading), ("model", table["infer"]),
                       ("postprocess", table["post"] + table["sink"])), key=lambda kv: kv[1])
        if busiest[1] < 50 and any(s.live for s in self.streams.values()):
            return "the sources' frame rate (every stage is less than half busy)"
        return f"{busiest[0]} ({busiest[1]:.0f} % busy)"

    def occupancy_summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        keys = self.samples[0].keys()
        return {k: round(float(np.mean([s[k] for s in self.samples])), 2) for k in keys}

    def snapshot(self, readers: int, inferers: int = 1) -> dict:
        now = time.monotonic()
        with self._lock:
            streams = [s.to_dict(now) for s in self.streams.values()]
        done = sum(s["done"] for s in streams)
        steady = self.steady_fps()
        return {"wall_s": round(self.wall, 3), "frames": done, "fps": round(done / max(self.wall, 1e-9), 2),
                "steady_fps": None if steady is None else round(steady, 2),
                "batch": self.batch, "batches": self.batches, "mean_batch": round(self.rows / max(self.batches, 1), 2),
                "padded_rows": self.padded, "streams": streams, "stages": self.stage_table(readers, inferers),
                "queues": self.occupancy_summary(), "bottleneck": self.bottleneck(readers, inferers)}


def status_lines(snapshot: dict) -> list[str]:
    """One line per stream and one for the pipeline, as the live display and the summary show them."""
    lines = []
    for s in snapshot["streams"]:
        lat = s["latency_ms"]
        lat_text = f"{lat['p50']:.0f}/{lat['p99']:.0f} ms" if lat["p50"] is not None else "- ms"
        extra = "".join([f", {s['dropped']} dropped" if s["dropped"] else "",
                         f", {s['reconnects']} reconnect(s)" if s["reconnects"] else "",
                         f", {s['skipped']} skipped" if s["skipped"] else ""])
        lines.append(f"  [{s['id']}] {s['name'][:24]:<24} {s['status']:<8} {s['done']:>7} frames "
                     f"{s['fps']:>6.1f} fps  latency p50/p99 {lat_text}{extra}")
    q = snapshot.get("queues") or {}
    queues = f"; batch filling {q.get('filling', 0):.1f}, waiting {q.get('waiting', 0):.1f}" if q else ""
    lines.append(f"  all: {snapshot['frames']} frames, {snapshot['fps']:.1f} fps, mean batch "
                 f"{snapshot['mean_batch']:.1f}/{snapshot['batch']}{queues}; bottleneck: {snapshot['bottleneck']}")
    return lines
