"""pycuda contexts: ``require_pycuda`` (one-line errors when pycuda or a GPU is missing), ``CudaContext`` (a retained
primary context, pushed and popped around each use) and ``default_context`` (one per thread and device).

Thread model: a CUDA context is current per thread, and pycuda ties every allocation to the thread that made
it. Use one Executor (and one GpuLetterbox) per thread: create, call and close it in that thread. Every public
method pushes the context for its duration and pops it after, so nothing is left current between calls.
``default_context()`` gives each thread one retained *primary* context per device, the one the CUDA runtime
and TensorRT use, so pointers are shared with them. pycuda is imported lazily, so importing this never fails.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import threading

from ..errors import INSTALL_HINT, DependencyMissingError, InputError, TrtbuildError
from .driver import libcuda


def require_pycuda():
    """``pycuda.driver`` after ``cuda.init()``; DependencyMissingError (exit 3) when pycuda or a GPU is missing."""
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
            lib = libcuda()
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
