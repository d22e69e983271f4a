"""The batcher: frames of every stream into the model's batches, letterboxed straight into reused batch buffers.

A reader *reserves* a row of the open batch buffer, letterboxes its frame into that row (no copy after), and
*commits* it with the frame's metadata. A batch closes when all its rows are reserved, or ``max_wait`` after its
first frame (so no frame waits longer for company), or when every source has ended; it is handed to the model once
every reserved row is committed. The buffers are a fixed ring (``buffers`` of them): when all are full or in use,
``reserve`` waits (a file: nothing is dropped) or returns None at once (a live source: the caller drops this frame
and will offer its next, newer one). So memory is bounded by the ring, however long the streams run. No stream
may hold more than its share of the ring's rows (``streams``): a file that decodes fast cannot crowd out a camera.

Hand-written: the reserve/commit protocol is what lets several decode threads write into one batch buffer in place;
``queue.Queue`` can hand over finished frames, not rows of a shared buffer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Batch:
    """One buffer of the ring and the frames in it. ``array`` is [capacity, 3, H, W] float32 (None when the runner
    letterboxes raw frames itself); ``items[i]`` is what the reader committed for row i (None: row abandoned)."""

    index: int
    array: np.ndarray | None
    capacity: int
    seq: int = -1  # order in which batches were closed (results leave in this order)
    reserved: int = 0
    committed: int = 0
    items: list = field(default_factory=list)
    streams: list = field(default_factory=list)  # the stream that reserved each row
    open: bool = True
    first_commit: float | None = None
    closed_at: float | None = None

    def reset(self, seq: int) -> None:
        self.seq, self.reserved, self.committed, self.open = seq, 0, 0, True
        self.items = [None] * self.capacity
        self.streams = [None] * self.capacity
        self.first_commit = self.closed_at = None

    @property
    def size(self) -> int:
        return self.reserved


@dataclass(frozen=True)
class Slot:
    """A reserved row: write the letterboxed frame into ``view`` (None for raw frames), then commit."""

    batch: Batch
    row: int

    @property
    def view(self) -> np.ndarray | None:
        return None if self.batch.array is None else self.batch.array[self.row]


class Batcher:
    """A ring of ``buffers`` batch buffers of ``capacity`` rows of ``shape`` (3, H, W); see the module docstring.

    ``allocate(shape)`` makes each buffer (e.g. page-locked memory of a TensorRT runner); ``shape`` None: rows hold
    raw frames for a runner that letterboxes itself."""

    def __init__(self, capacity: int, shape: tuple[int, int, int] | None, buffers: int = 3, max_wait: float = 0.02,
                 allocate: Callable[[tuple], np.ndarray] | None = None, streams: int = 1):
        allocate = allocate or (lambda s: np.empty(s, np.float32))
        self.capacity, self.max_wait = int(capacity), float(max_wait)
        self._ring = [Batch(i, None if shape is None else allocate((capacity, *shape)), capacity)
                      for i in range(buffers)]
        self._free: deque[Batch] = deque(self._ring)
        self._open: Batch | None = None
        self._closing: list[Batch] = []  # closed, waiting for reserved rows to be committed
        self._ready: deque[Batch] = deque()  # complete, waiting for the model
        self._seq = 0
        self._done = False  # every source ended: the open batch goes as it is
        self._stopped = False
        self._cond = threading.Condition()
        self.share = max(1, -(-capacity * buffers // max(streams, 1)))  # rows one stream may hold at once
        self._held: dict[int, int] = {}

    # -- readers
    def reserve(self, stream: int = 0, block: bool = True) -> Slot | None:
        """A row of the open batch for ``stream``; None when stopped, or (``block`` False) when no row is free for it
        right now (the ring is full, or the stream holds its share)."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                if self._held.get(stream, 0) >= self.share:
                    if not block:
                        return None
                    self._cond.wait()
                    continue
                if self._open is None and self._free:
                    self._open = self._free.popleft()
                    self._open.reset(-1)
                if self._open is not None:
                    batch = self._open
                    row = batch.reserved
                    batch.reserved += 1
                    batch.streams[row] = stream
                    self._held[stream] = self._held.get(stream, 0) + 1
                    if batch.reserved == batch.capacity:
                        self._close(batch)
                    return Slot(batch, row)
                if not block:
                    return None
                self._cond.wait()

    def commit(self, slot: Slot, item) -> None:
        """``item`` (the frame's metadata; None: abandon the row) is in ``slot``'s row."""
        with self._cond:
            batch = slot.batch
            batch.items[slot.row] = item
            batch.committed += 1
            if batch.first_commit is None:
                batch.first_commit = time.monotonic()
            if not batch.open and batch.committed == batch.reserved and batch in self._closing:
                self._closing.remove(batch)
                self._ready.append(batch)
            self._cond.notify_all()

    def sources_done(self) -> None:
        """Every reader has finished: what the open batch holds goes to the model without waiting."""
        with self._cond:
            self._done = True
            self._cond.notify_all()

    # -- the model side
    def _close(self, batch: Batch) -> None:
        batch.open, batch.seq, batch.closed_at = False, self._seq, time.monotonic()
        self._seq += 1
        if self._open is batch:
            self._open = None
        if batch.committed == batch.reserved:
            self._ready.append(batch)
        else:
            self._closing.append(batch)

    def next_batch(self, stop: threading.Event | None = None) -> Batch | None:
        """The next complete batch, in closing order; None when stopped, or when the sources are done and nothing
        is left. Closes the open batch ``max_wait`` after its first frame."""
        with self._cond:
            while True:
                if self._ready:
                    return self._ready.popleft()
                if self._stopped or (stop is not None and stop.is_set()):
                    return None
                batch = self._open
                if batch is not None and batch.committed and batch.committed == batch.reserved:
                    waited = time.monotonic() - batch.first_commit
                    if self._done or waited >= self.max_wait:
                        self._close(batch)
                        continue
                    self._cond.wait(self.max_wait - waited)
                    continue
                if self._done and batch is None and not self._closing:
                    return None
                if self._done and batch is not None and batch.reserved == 0:
                    self._open = None
                    self._free.append(batch)
                    continue
                self._cond.wait(0.05 if stop is not None else None)

    def release(self, batch: Batch) -> None:
        """The model is done with ``batch``'s buffer: back into the ring."""
        with self._cond:
            for stream in batch.streams[: batch.reserved]:
                self._held[stream] -= 1
            batch.items = []
            self._free.append(batch)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # -- figures for the status line
    def occupancy(self) -> dict[str, int]:
        """Rows reserved in the open batch, batches waiting for the model, free buffers (a snapshot)."""
        with self._cond:
            return {"filling": self._open.reserved if self._open is not None else 0,
                    "waiting": len(self._ready) + len(self._closing), "free": len(self._free),
                    "buffers": len(self._ring)}
