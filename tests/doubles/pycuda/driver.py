"""``pycuda.driver`` double — NOT pycuda: "device" memory is host memory, copies are ``memmove``, no GPU runs.

Only what trtbuild's runtime (trtbuild/runtime/cuda.py, trt/calibrator.py) calls, with pycuda's names, signatures
and refusals: a current context is needed to allocate or make streams/events (pycuda's "explicit_context_dependent
failed"), ``Context.pop`` of an empty stack fails, freeing twice fails, ``get_device_pointer`` needs DEVICEMAP
memory, ``pagelocked_empty`` returns an ndarray whose ``.base`` is the ``PagelockedHostAllocation``. Every public
name is checked against tests/pycuda_api/pycuda-2026.1.txt (tests/doubles/pycuda_api.py). Streams execute each
operation at once (a valid order for an in-order stream); events time with ``perf_counter``. ``_LIVE`` holds the
allocations not yet freed, for leak checks. Install with tests/doubles/pycuda/__init__.py:install.
"""

from __future__ import annotations

import ctypes
import threading
import time

import numpy as np

from ..pycuda_api import Checked, checked_module

_DEVICE = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0), "total_memory": 80 << 30, "integrated": 0}
_LIVE: dict[int, object] = {}  # address → allocation not freed yet
_state = threading.local()
_initialized = [False]


class Error(Exception):
    pass


class LogicError(Error):
    pass


class MemoryError(Error):  # noqa: A001 - pycuda's name
    pass


class RuntimeError(Error):  # noqa: A001 - pycuda's name
    pass


class CompileError(Error):
    def __init__(self, msg, command_line, stdout=None, stderr=None):
        super().__init__(msg)
        self.command_line, self.stdout, self.stderr = command_line, stdout, stderr


def _stack() -> list:
    return _state.__dict__.setdefault("stack", [])


def _current(what: str):
    if not _stack():
        raise LogicError(f"{what} failed: explicit_context_dependent failed: invalid device context - no currently "
                         "active context?")
    return _stack()[-1]


def init(flags=0):
    _initialized[0] = True


class device_attribute(Checked):  # noqa: N801 - pycuda's name (an enum)
    _pq = "driver.device_attribute"
    INTEGRATED = "INTEGRATED"


class host_alloc_flags(Checked):  # noqa: N801
    _pq = "driver.host_alloc_flags"
    PORTABLE, DEVICEMAP, WRITECOMBINED = 1, 2, 4


class Device(Checked):
    _pq = "driver.Device"

    def __init__(self, number):
        if not _initialized[0]:
            raise LogicError("cuDeviceGet failed: initialization error (call pycuda.driver.init() first)")
        if number != 0:
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")
        self._number = number

    @staticmethod
    def count():
        if not _initialized[0]:
            raise LogicError("cuDeviceGetCount failed: initialization error")
        return 1

    def name(self):
        return _DEVICE["name"]

    def compute_capability(self):
        return _DEVICE["compute_capability"]

    def total_memory(self):
        return _DEVICE["total_memory"]

    def get_attribute(self, attr):
        if attr != device_attribute.INTEGRATED:
            raise NotImplementedError(f"the pycuda double knows only device_attribute.INTEGRATED, not {attr}")
        return _DEVICE["integrated"]

    def retain_primary_context(self):
        return Context(self)


class Context(Checked):
    _pq = "driver.Context"

    def __init__(self, device):
        self._device, self._valid = device, True

    @property
    def handle(self):
        return 0x7000  # the primary context: one handle for every retain

    def push(self):
        if not self._valid:
            raise LogicError("cuCtxPushCurrent failed: invalid context (detached)")
        _stack().append(self)

    @staticmethod
    def pop():
        if not _stack():
            raise LogicError("context::pop failed: cannot pop non-current context")
        _stack().pop()

    @staticmethod
    def synchronize():
        _current("cuCtxSynchronize")

    @staticmethod
    def get_device():
        return _current("cuCtxGetDevice")._device

    def detach(self):
        if not self._valid:
            raise LogicError("context::detach failed: invalid context")
        self._valid = False


class HostPointer(Checked):
    _pq = "driver.HostPointer"


class PagelockedHostAllocation(bytearray, HostPointer):
    """The ``.base`` of a ``pagelocked_empty`` array (a bytearray so NumPy can view it: Python 3.11 has no
    ``__buffer__``; the bytearray methods are refused by the name check)."""

    _pq = "driver.PagelockedHostAllocation"
    __getattribute__, __setattr__ = Checked.__getattribute__, Checked.__setattr__

    def _address(self) -> int:
        return ctypes.addressof((ctypes.c_char * bytearray.__len__(self)).from_buffer(self))

    def _refuse(self, *args):
        raise TypeError("pycuda.PagelockedHostAllocation is not a sequence (view it through the numpy array)")

    __len__ = __getitem__ = __setitem__ = __iter__ = __contains__ = __add__ = __iadd__ = __mul__ = _refuse
    __eq__, __ne__, __hash__ = object.__eq__, object.__ne__, object.__hash__

    def free(self):
        if _LIVE.pop(self.__dict__.get("_addr"), None) is None:
            raise LogicError("pagelocked_host_allocation::free failed: already freed")

    def get_flags(self):
        return self._flags

    def get_device_pointer(self):
        if not self._flags & host_alloc_flags.DEVICEMAP:
            raise LogicError("cuMemHostGetDevicePointer failed: invalid value (memory not allocated with DEVICEMAP)")
        return self._addr


HostAllocation = PagelockedHostAllocation


def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
    _current("cuMemHostAlloc")
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    alloc = PagelockedHostAllocation(max(int(np.prod(shape)) * dtype.itemsize, 1))
    alloc._flags = mem_flags
    alloc._addr = alloc._address()
    _LIVE[alloc._addr] = alloc
    return np.ndarray(shape, dtype, buffer=alloc, order=order)


class DeviceAllocation(Checked):
    _pq = "driver.DeviceAllocation"

    def __init__(self, nbytes):
        self._buf = np.zeros(nbytes, np.uint8)
        self._addr = self._buf.ctypes.data
        _LIVE[self._addr] = self

    def __int__(self):
        if self._buf is None:
            raise LogicError("device_allocation: use after free")
        return self._addr

    __index__ = __int__

    def free(self):
        if self._buf is None:
            raise LogicError("device_allocation::free failed: invalid handle (already freed)")
        _LIVE.pop(self._addr, None)
        self._buf = None


def mem_alloc(nbytes):
    _current("cuMemAlloc")
    if int(nbytes) <= 0:
        raise LogicError("cuMemAlloc failed: invalid value (0 bytes)")
    return DeviceAllocation(int(nbytes))


def _device_address(ptr, nbytes: int) -> int:
    addr = int(ptr)
    owner = next((a for base, a in _LIVE.items() if isinstance(a, DeviceAllocation) and
                  base <= addr and addr + nbytes <= base + a._buf.nbytes), None)
    if owner is None:
        raise LogicError(f"cuMemcpy failed: invalid argument ({nbytes} bytes at {addr:#x} is not in an allocation)")
    return addr


def _host(array, writable: bool = False) -> np.ndarray:
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise TypeError("expected a contiguous numpy array (pycuda needs the buffer interface)")
    if writable and not array.flags.writeable:
        raise TypeError("expected a writable buffer")
    return array


class Stream(Checked):
    _pq = "driver.Stream"
    _count = 0

    def __init__(self, flags=0):
        _current("cuStreamCreate")
        Stream._count += 1
        self._handle = 0x5000 + Stream._count

    @property
    def handle(self):
        return self._handle

    def synchronize(self):
        _current("cuStreamSynchronize")

    def is_done(self):
        return True


def memcpy_htod(dest, src):
    src = _host(src)
    ctypes.memmove(_device_address(dest, src.nbytes), src.ctypes.data, src.nbytes)


def memcpy_htod_async(dest, src, stream=None):
    _current("cuMemcpyHtoDAsync")
    memcpy_htod(dest, src)


def memcpy_dtoh(dest, src):
    dest = _host(dest, writable=True)
    ctypes.memmove(dest.ctypes.data, _device_address(src, dest.nbytes), dest.nbytes)


def memcpy_dtoh_async(dest, src, stream=None):
    _current("cuMemcpyDtoHAsync")
    memcpy_dtoh(dest, src)


class Event(Checked):
    _pq = "driver.Event"

    def __init__(self, flags=0):
        _current("cuEventCreate")
        self._t = None

    def record(self, stream=None):
        self._t = time.perf_counter()
        return self

    def synchronize(self):
        return self

    def query(self):
        return True

    def time_since(self, start):
        if self._t is None or start._t is None:
            raise LogicError("cuEventElapsedTime failed: invalid resource handle (event not recorded)")
        return (self._t - start._t) * 1e3


checked_module(__name__)
