"""The executor under the TensorRT runner: one model call as H2D → enqueue → D2H on CUDA streams, CUDA graphs.

``Executor`` runs one model call as H2D copies → ``enqueue`` (TensorRT's ``execute_async_v3``, or any kernel) →
D2H copies on one stream with a single synchronize, from page-locked host buffers allocated once (a
``BufferPool`` decides what to grow when shapes change); ``run_pipelined`` spreads batches over several streams
and buffer sets so that one batch's copies overlap another's compute. On integrated GPUs (Jetson) ``mapped=True``
allocates host memory the GPU reads directly and skips the copies. Thread model: see ``context.py``.

CUDA graphs: pycuda (2026.1) has no stream-capture or graph API, so ``CudaGraph`` (driver.py) calls the driver's
stream capture through ctypes on pycuda's stream handle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import InputError
from .buffers import DeviceBuffers, StageEvents
from .context import CudaContext, default_context, require_pycuda
from .driver import CudaGraph
from .plan import BufferPlan

_STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING: no implicit sync with the legacy default stream


class Executor:
    """H2D → ``enqueue(stream, buffers)`` → D2H on CUDA streams over pinned buffers allocated once.

    ``run(inputs)`` returns the outputs as views of pinned memory, valid until the next call (``copy=True``
    for arrays of your own). ``inputs=None`` runs on what is already in the pinned input buffers (``host(name)``,
    e.g. filled by the CPU letterbox); names in ``on_device`` were written to the device buffer directly (e.g.
    by GpuLetterbox on ``stream``) and are not copied. ``use_graph=True`` captures H2D+enqueue+D2H into a CUDA
    graph on first use and replays it (static shapes; ``set_plan`` with a new plan drops the graph).
    """

    def __init__(self, plan: BufferPlan, enqueue: Callable, streams: int = 1, mapped: bool = False,
                 timing: bool = True, use_graph: bool = False, context: CudaContext | None = None,
                 max_bytes: Mapping[str, int] | None = None, preallocate: bool = False):
        self._cuda = cuda = require_pycuda()
        if streams < 1:
            raise InputError(f"streams={streams}: must be ≥ 1", param="streams")
        self.context = context or default_context()
        self._enqueue = enqueue
        self.mapped, self.timing, self.use_graph = mapped, timing, use_graph
        self._graph: CudaGraph | None = None
        self._graph_key: frozenset | None = None
        self._last: StageEvents | None = None
        with self.context:
            self._sets = [DeviceBuffers(plan, mapped, max_bytes, preallocate=preallocate) for _ in range(streams)]
            self._streams = [cuda.Stream(_STREAM_NON_BLOCKING) for _ in range(streams)]
            self._events = [StageEvents() if timing else None for _ in range(streams)]
            self._graph_events = StageEvents(("graph",)) if timing else None
        self._routes()

    # -- plan and buffers
    @property
    def plan(self) -> BufferPlan:
        return self._sets[0].plan

    @property
    def buffers(self) -> DeviceBuffers:
        return self._sets[0]

    @property
    def stream(self):
        """The stream ``run`` uses (launch GpuLetterbox on it so the copies and compute follow in order)."""
        return self._streams[0]

    def host(self, name: str) -> np.ndarray:
        return self._sets[0].host(name)

    def device_ptr(self, name: str) -> int:
        return self._sets[0].device_ptr(name)

    @property
    def device_memory(self) -> int:
        return sum(b.allocated_bytes for b in self._sets)

    def set_plan(self, plan: BufferPlan) -> set[str]:
        """Switch to ``plan`` (new shapes): grows only what must grow; returns the reallocated names."""
        if plan == self.plan:
            return set()
        with self.context:
            self._drop_graph()
            grown = set()
            for bufs in self._sets:
                grown |= bufs.ensure(plan)
        self._routes()
        return grown

    def _routes(self) -> None:
        """Per buffer set: the (device, host) pairs to copy each way, and the input/output views."""
        self._h2d, self._d2h, self._outs = [], [], []
        for b in self._sets:
            ins = [(t.name, b.device_ptr(t.name), b.host(t.name)) for t in b.plan.inputs if t.nbytes]
            self._h2d.append(ins)
            self._d2h.append([(b.host(t.name), b.device_ptr(t.name)) for t in b.plan.outputs if t.nbytes])
            self._outs.append([(t.name, b.host(t.name)) for t in b.plan.outputs])
        self._input_names = [t.name for t in self.plan.inputs]

    def _stage(self, slot: int, inputs: Mapping[str, np.ndarray] | None) -> None:
        if inputs is None:
            return
        bufs = self._sets[slot]
        missing = [n for n in self._input_names if n not in inputs]
        if missing or len(inputs) != len(self._input_names):
            extra = [n for n in inputs if n not in self._input_names]
            raise InputError(f"inputs {sorted(inputs)} do not match the model's {self._input_names} (missing "
                             f"{missing}, unknown {extra}); pass every input by name")
        for name, value in inputs.items():
            dst = bufs.host(name)
            src = value if isinstance(value, np.ndarray) else np.asarray(value)
            if src.shape != dst.shape:
                raise InputError(f"input {name!r} has shape {src.shape} but the executor is planned for "
                                 f"{dst.shape}; call set_plan() with a plan for this shape")
            if src is not dst:  # host(name) itself needs no copy
                try:
                    np.copyto(dst, src, casting="same_kind")
                except TypeError:
                    raise InputError(f"input {name!r} is {src.dtype}, which cannot be cast to the model's "
                                     f"{dst.dtype}; convert it first") from None

    def _submit(self, slot: int, events: StageEvents | None, on_device: Iterable[str] = ()) -> None:
        cuda, stream = self._cuda, self._streams[slot]
        if events is not None:
            events.begin(stream)
        if not self.mapped:
            for name, dptr, host in self._h2d[slot]:
                if name not in on_device:
                    cuda.memcpy_htod_async(dptr, host, stream)
        if events is not None:
            events.mark("h2d", stream)
        self._enqueue(stream, self._sets[slot])
        if events is not None:
            events.mark("compute", stream)
        if not self.mapped:
            for host, dptr in self._d2h[slot]:
                cuda.memcpy_dtoh_async(host, dptr, stream)
        if events is not None:
            events.mark("d2h", stream)

    def _collect(self, slot: int, copy: bool) -> dict[str, np.ndarray]:
        return {name: view.copy() if copy else view for name, view in self._outs[slot]}

    # -- running
    def run(self, inputs: Mapping[str, np.ndarray] | None = None, copy: bool = False,
            use_graph: bool | None = None, on_device: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """One call: stage ``inputs`` in pinned memory, H2D → enqueue → D2H, one synchronize; the outputs."""
        use_graph = self.use_graph if use_graph is None else use_graph
        stream = self._streams[0]
        with self.context:
            self._stage(0, inputs)
            if use_graph:
                if self._graph is None or self._graph_key != frozenset(on_device):
                    self.capture_graph(on_device)
                events = self._graph_events
                if events is not None:
                    events.begin(stream)
                self._graph.launch(stream)
                if events is not None:
                    events.mark("graph", stream)
            else:
                events = self._events[0]
                self._submit(0, events, on_device)
            stream.synchronize()
            self._last = events
        return self._collect(0, copy)

    def run_pipelined(self, batches: Iterable[Mapping[str, np.ndarray]], copy: bool = True
                      ) -> Iterator[dict[str, np.ndarray]]:
        """Run many batches over all streams, each with its own buffers: batch k+1's copies overlap batch k's
        compute. Results come in order. With ``copy=False`` a result is a view that the next batch overwrites
        as soon as the generator resumes."""
        n, pending, k = len(self._sets), deque(), 0
        for batch in batches:
            if len(pending) == n:
                yield self._finish(pending.popleft(), copy)
            slot = k % n
            with self.context:
                self._stage(slot, batch)
                self._submit(slot, self._events[slot])
            pending.append(slot)
            k += 1
        while pending:
            yield self._finish(pending.popleft(), copy)

    def _finish(self, slot: int, copy: bool) -> dict[str, np.ndarray]:
        with self.context:
            self._streams[slot].synchronize()
        self._last = self._events[slot]
        return self._collect(slot, copy)

    def last_times(self) -> dict[str, float] | None:
        """Milliseconds per stage of the last call ({h2d, compute, d2h, total}, or {graph, total} for a graph
        replay); None with ``timing=False``."""
        if self._last is None:
            return None
        with self.context:
            return self._last.elapsed_ms()

    # -- graphs
    def capture_graph(self, on_device: Iterable[str] = ()) -> None:
        """Capture H2D + enqueue + D2H of stream 0 into a CUDA graph that ``run(use_graph=True)`` replays.

        Runs the sequence once first (TensorRT must execute once before it can be captured).
        """
        on_device = frozenset(on_device)
        with self.context:
            self._drop_graph()
            stream = self._streams[0]
            self._submit(0, None, on_device)
            stream.synchronize()
            self._graph = CudaGraph(stream, lambda: self._submit(0, None, on_device))
            self._graph_key = on_device

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.close()
        self._graph = self._graph_key = None

    # -- lifetime
    def close(self) -> None:
        """Wait for the streams, then free the graph and every buffer. Idempotent."""
        if not self._sets:
            return
        with self.context:
            for s in self._streams:
                s.synchronize()
            self._drop_graph()
            for b in self._sets:
                b.free()
        self._sets, self._last = [], None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
