"""The pycuda layer under the TensorRT runner: context, pinned/device buffers, streams, stage events, CUDA graphs.

``Executor`` runs one model call as H2D copies → ``enqueue`` (TensorRT's ``execute_async_v3``, or any kernel) →
D2H copies on one stream with a single synchronize, from page-locked host buffers allocated once (a
``BufferPool`` decides what to grow when shapes change); ``run_pipelined`` spreads batches over several streams
and buffer sets so that one batch's copies overlap another's compute. On integrated GPUs (Jetson) ``mapped=True``
allocates host memory the GPU reads directly and skips the copies.

Thread model: a CUDA context is current per thread, and pycuda ties every allocation to the thread that made
it. Use one Executor (and one GpuLetterbox) per thread: create, call and close it in that thread. Every public
method pushes the context for its duration and pops it after, so nothing is left current between calls.
``default_context()`` gives each thread one retained *primary* context per device, the one the CUDA runtime
and TensorRT use, so pointers are shared with them.

CUDA graphs: pycuda (2026.1) has no stream-capture or graph API, so ``CudaGraph`` calls the driver's
``cuStreamBeginCapture_v2`` / ``cuStreamEndCapture`` / ``cuGraphInstantiateWithFlags`` / ``cuGraphLaunch``
through ctypes on pycuda's stream handle. pycuda is imported lazily, so importing this module never fails.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DependencyMissingError, InputError, TrtbuildError
from .cuda_driver import CudaGraph, _libcuda, compile_module, find_nvcc

if TYPE_CHECKING:
    from .plan import BufferPlan

__all__ = ["CudaContext", "CudaGraph", "DeviceBuffers", "Executor", "StageEvents", "compile_module",
           "default_context", "find_nvcc", "require_pycuda"]

STAGES = ("h2d", "compute", "d2h")
_STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING: no implicit sync with the legacy default stream


def require_pycuda():
    """``pycuda.driver`` after ``cuda.init()``; DependencyMissingError (exit 3) when pycuda or a GPU is missing."""
    from ..trt.compat import INSTALL_HINT

    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        if importlib.util.find_spec("pycuda") is None:
            raise DependencyMissingError(f"pycuda is not installed; {INSTALL_HINT}") from None
        raise DependencyMissingError(f"pycuda failed to load ({exc}); is the NVIDIA driver installed? "
                                     f"{INSTALL_HINT}") from None
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda's errors do not derive from a builtin error class
        raise DependencyMissingError(f"the CUDA driver failed to initialise ({exc}): no usable NVIDIA GPU") from None
    if count == 0:
        raise DependencyMissingError("the CUDA driver found no GPU on this host")
    return cuda


class CudaContext:
    """A retained primary context of ``device``; ``with ctx:`` makes it current (push) and pops it after."""

    def __init__(self, device: int = 0):
        self._cuda = cuda = require_pycuda()
        count = cuda.Device.count()
        if not 0 <= device < count:
            raise InputError(f"CUDA device {device} does not exist; this host has {count} (use 0..{count - 1})")
        self.device = device
        dev = cuda.Device(device)
        self._ctx = dev.retain_primary_context()
        self.name: str = dev.name()
        self.compute_capability: tuple[int, int] = tuple(dev.compute_capability())
        self.integrated = bool(dev.get_attribute(cuda.device_attribute.INTEGRATED))
        self.total_memory: int = dev.total_memory()
        self._depth = 0
        self._thread = threading.get_ident()

    def __enter__(self) -> CudaContext:
        if self._ctx is None:
            raise TrtbuildError(f"the CUDA context of device {self.device} was closed")
        self._ctx.push()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        self._cuda.Context.pop()

    @property
    def handle(self) -> int:
        return self._ctx.handle

    def synchronize(self) -> None:
        with self:
            self._cuda.Context.synchronize()

    def close(self) -> None:
        """Release the primary context (it lives on while TensorRT or another holder retains it)."""
        if self._ctx is None:
            return
        if self._depth:
            raise TrtbuildError("CudaContext.close() called while the context is pushed (inside `with`)")
        handle = self._ctx.handle
        self._ctx.detach()  # from another thread pycuda only marks it released
        self._ctx = None
        if threading.get_ident() != self._thread:
            return
        # In its own thread pycuda pushes the context to release it and, for a primary one, never pops it again.
        try:
            lib = _libcuda()
            current = ctypes.c_void_p()
            if lib.cuCtxGetCurrent(ctypes.byref(current)) == 0 and current.value == handle:
                lib.cuCtxPopCurrent_v2(ctypes.byref(current))
        except TrtbuildError:
            pass

    def __del__(self):
        # Released explicitly: pycuda's own destructor would call cuCtxDetach on the primary context.
        try:
            self.close()
        except Exception:
            pass


_local = threading.local()


def default_context(device: int = 0) -> CudaContext:
    """This thread's shared CudaContext for ``device`` (created on first use, kept for the thread's life)."""
    cache = _local.__dict__.setdefault("contexts", {})
    if device not in cache:
        if not _local_cleanup:
            atexit.register(_close_default_contexts)
            _local_cleanup.append(True)
        cache[device] = CudaContext(device)
    return cache[device]


_local_cleanup: list[bool] = []


def _close_default_contexts() -> None:
    """At exit (main thread): release the main thread's default contexts while pycuda is still intact."""
    for ctx in _local.__dict__.pop("contexts", {}).values():
        try:
            ctx.close()
        except Exception:
            pass


# ---------------------------------------------------------------- buffers, events (driver calls: cuda_driver.py)
class DeviceBuffers:
    """Page-locked host + device memory for every tensor of a plan, sized by a BufferPool.

    ``ensure(plan)`` reallocates only what the pool says grew (a smaller shape reuses its buffers; contents are
    not kept across a reallocation). ``host(name)`` is a NumPy view of the pinned memory at the plan's shape,
    ``device_ptr(name)`` the device address. ``mapped=True`` (integrated GPUs): host memory allocated with
    DEVICEMAP, the device pointer is the mapped host pointer and no copies are needed. Construct, ensure and
    free it with its context current (Executor does).
    """

    def __init__(self, plan: BufferPlan, mapped: bool = False, max_bytes: Mapping[str, int] | None = None,
                 growth: float = 1.5, preallocate: bool = False):
        from .plan import BufferPool

        self._cuda = require_pycuda()
        self.mapped = mapped
        self.pool = BufferPool(growth=growth, max_bytes=max_bytes)
        self._host: dict[str, np.ndarray] = {}
        self._dev: dict[str, object] = {}
        self._ptr: dict[str, int] = {}
        self._views: dict[str, np.ndarray] = {}
        self.plan = None
        if preallocate:
            self._allocate(self.pool.preallocate_max())
        self.ensure(plan)

    def _allocate(self, sizes: Mapping[str, int]) -> None:
        cuda = self._cuda
        for name, nbytes in sizes.items():
            self._free(name)
            if self.mapped:
                host = cuda.pagelocked_empty(int(nbytes), np.uint8, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
                self._ptr[name] = int(host.base.get_device_pointer())
            else:
                host = cuda.pagelocked_empty(int(nbytes), np.uint8)
                self._dev[name] = dev = cuda.mem_alloc(int(nbytes))
                self._ptr[name] = int(dev)
            self._host[name] = host

    def ensure(self, plan: BufferPlan) -> set[str]:
        """Make the buffers fit ``plan``; returns the names that were (re)allocated."""
        grown = self.pool.request(plan)
        self._allocate(grown)
        self.plan = plan
        self._views = {t.name: self._host[t.name][: t.nbytes].view(t.dtype).reshape(t.shape) for t in plan.tensors}
        return set(grown)

    def host(self, name: str) -> np.ndarray:
        return self._views[name]

    def device_ptr(self, name: str) -> int:
        return self._ptr[name]

    @property
    def allocated_bytes(self) -> int:
        """Bytes of device memory held (0 in mapped mode, where the GPU reads host memory)."""
        return 0 if self.mapped else sum(self.pool.capacities.values())

    def _free(self, name: str) -> None:
        dev, host = self._dev.pop(name, None), self._host.pop(name, None)
        self._ptr.pop(name, None)
        if dev is not None:
            dev.free()
        if host is not None:
            host.base.free()

    def free(self) -> None:
        """Free all memory; views from ``host()`` must not be used afterwards."""
        for name in list(self._host):
            self._free(name)
        self._views = {}


class StageEvents:
    """CUDA events between stages on a stream: ``begin(stream)``, ``mark(name, stream)`` per stage in order,
    then, once the stream has synchronized, ``elapsed_ms()`` → {stage: ms, ..., "total": ms}."""

    def __init__(self, names: Iterable[str] = STAGES):
        cuda = require_pycuda()
        self.names = tuple(names)
        self._events = [cuda.Event() for _ in range(len(self.names) + 1)]
        self._next = 0

    def begin(self, stream=None) -> None:
        self._events[0].record(stream)
        self._next = 1

    def mark(self, name: str, stream=None) -> None:
        if self._next == 0 or self._next > len(self.names) or self.names[self._next - 1] != name:
            raise TrtbuildError(f"stage {name!r} marked out of order (stages: {', '.join(self.names)})")
        self._events[self._next].record(stream)
        self._next += 1

    def elapsed_ms(self) -> dict[str, float] | None:
        """Milliseconds per stage of the last complete recording, None if it is incomplete."""
        if self._next != len(self._events):
            return None
        ev = self._events
        out = {n: ev[i + 1].time_since(ev[i]) for i, n in enumerate(self.names)}
        out["total"] = ev[-1].time_since(ev[0])
        return out


# ---------------------------------------------------------------- the executor
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
            raise ValueError(f"streams must be >= 1, got {streams}")
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
