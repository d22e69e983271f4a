"""Device memory for the executor: ``DeviceBuffers`` (pinned host + device buffers sized by a ``BufferPool``),
``StageEvents`` (CUDA events between the stages of a call) and ``DeviceUpload`` (one device buffer refilled from
host arrays, for TensorRT's INT8 calibrator). On integrated GPUs (Jetson) ``mapped=True`` allocates host memory
the GPU reads directly. Construct, use and free them with their context current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import TrtbuildError
from .context import CudaContext, require_pycuda
from .plan import BufferPlan, BufferPool

STAGES = ("h2d", "compute", "d2h")


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


class DeviceUpload:
    """One device buffer of ``nbytes`` in ``context``, refilled from host arrays (``upload``) and freed once."""

    def __init__(self, context: CudaContext, nbytes: int):
        self._cuda = require_pycuda()
        self.context = context
        with context:
            self._mem = self._cuda.mem_alloc(int(nbytes))
        self.nbytes = int(nbytes)

    def upload(self, array: np.ndarray) -> int:
        """Copy ``array`` (at most ``nbytes``) to the buffer, synchronously; its device address."""
        array = np.ascontiguousarray(array)
        if array.nbytes > self.nbytes:
            raise TrtbuildError(f"{array.nbytes} bytes do not fit a device buffer of {self.nbytes}")
        with self.context:
            self._cuda.memcpy_htod(self._mem, array)
        return int(self._mem)

    def free(self) -> None:
        if self._mem is not None:
            with self.context:
                self._mem.free()
            self._mem = None
