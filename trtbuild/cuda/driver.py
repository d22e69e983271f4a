"""Direct CUDA driver calls through ctypes, for the pycuda layer (context, executor).

pycuda (2026.1) has no stream-capture or graph API, so ``CudaGraph`` calls the driver's
``cuStreamBeginCapture_v2`` / ``cuStreamEndCapture`` / ``cuGraphInstantiateWithFlags`` / ``cuGraphLaunch`` through
ctypes on pycuda's stream handle.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from ..errors import DependencyMissingError, TrtbuildError
from .probe import load_libcuda

_CAPTURE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
_driver: dict[str, object] = {}  # the ctypes libcuda handle, and whether the graph functions are declared


def libcuda():
    """The ctypes handle of libcuda (DependencyMissingError without an NVIDIA driver)."""
    if "lib" not in _driver:
        lib = load_libcuda()
        if lib is None:
            raise DependencyMissingError("libcuda.so.1 (the NVIDIA driver) was not found")
        _driver["lib"] = lib
    return _driver["lib"]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        name = ctypes.c_char_p()
        libcuda().cuGetErrorName(rc, ctypes.byref(name))
        raise TrtbuildError(f"{what} failed: {(name.value or b'CUresult %d' % rc).decode()}")


def _graph_api():
    lib = libcuda()
    if _driver.get("graphs"):
        return lib
    vp, ref = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
    try:
        for fn, args in (("cuStreamBeginCapture_v2", [vp, ctypes.c_int]), ("cuStreamEndCapture", [vp, ref]),
                         ("cuGraphInstantiateWithFlags", [ref, vp, ctypes.c_ulonglong]),
                         ("cuGraphLaunch", [vp, vp]), ("cuGraphExecDestroy", [vp]), ("cuGraphDestroy", [vp])):
            getattr(lib, fn).argtypes, getattr(lib, fn).restype = args, ctypes.c_int
    except AttributeError as exc:
        raise TrtbuildError(f"this CUDA driver has no CUDA graph API ({exc}); update the NVIDIA driver (>= 470) "
                            "or run without CUDA graphs (use_graph=False)") from None
    _driver["graphs"] = True
    return lib


class CudaGraph:
    """The work ``body()`` enqueues on ``stream``, captured once and replayed with one ``launch(stream)``.

    Replays use the same device/host addresses and sizes as the capture: re-capture after any reallocation.
    Create, launch and close it with its context current.
    """

    def __init__(self, stream, body: Callable[[], None]):
        self._lib = lib = _graph_api()
        handle = ctypes.c_void_p(stream.handle)
        graph = ctypes.c_void_p()
        _check(lib.cuStreamBeginCapture_v2(handle, _CAPTURE_THREAD_LOCAL), "cuStreamBeginCapture")
        try:
            body()
        except BaseException:
            if lib.cuStreamEndCapture(handle, ctypes.byref(graph)) == 0 and graph.value:
                lib.cuGraphDestroy(graph)
            raise
        _check(lib.cuStreamEndCapture(handle, ctypes.byref(graph)),
               "CUDA graph capture (the enqueued work used an operation a graph cannot record)")
        self._graph, self._exec = graph, ctypes.c_void_p()
        try:
            _check(lib.cuGraphInstantiateWithFlags(ctypes.byref(self._exec), graph, 0), "cuGraphInstantiate")
        except TrtbuildError:
            lib.cuGraphDestroy(graph)
            raise

    def launch(self, stream) -> None:
        rc = self._lib.cuGraphLaunch(self._exec, ctypes.c_void_p(stream.handle))
        if rc:
            _check(rc, "cuGraphLaunch")

    def close(self) -> None:
        if self._exec is not None:
            self._lib.cuGraphExecDestroy(self._exec)
            self._lib.cuGraphDestroy(self._graph)
            self._exec = self._graph = None
