"""Direct CUDA driver calls (ctypes) and runtime-compiled kernels, for the pycuda layer in cuda.py.

pycuda (2026.1) has no stream-capture or graph API, so ``CudaGraph`` calls the driver's
``cuStreamBeginCapture_v2`` / ``cuStreamEndCapture`` / ``cuGraphInstantiateWithFlags`` / ``cuGraphLaunch`` through
ctypes on pycuda's stream handle. ``compile_module`` compiles a kernel source once per context with pycuda's
SourceModule (nvcc found on PATH, $CUDA_HOME or /usr/local/cuda) and caches the cubin on disk.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DependencyMissingError, TrtbuildError

if TYPE_CHECKING:
    from .cuda import CudaContext

_CAPTURE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
_driver: dict[str, object] = {}  # the ctypes libcuda handle, and whether the graph functions are declared


def _libcuda():
    if "lib" not in _driver:
        from ..cuda_probe import _load_libcuda

        lib = _load_libcuda()
        if lib is None:
            raise DependencyMissingError("libcuda.so.1 (the NVIDIA driver) was not found")
        _driver["lib"] = lib
    return _driver["lib"]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        name = ctypes.c_char_p()
        _libcuda().cuGetErrorName(rc, ctypes.byref(name))
        raise TrtbuildError(f"{what} failed: {(name.value or b'CUresult %d' % rc).decode()}")


# ---------------------------------------------------------------- kernels compiled at runtime, cached per context
_MODULES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def find_nvcc() -> str:
    """Path of nvcc: PATH, then $CUDA_HOME / $CUDA_PATH, then /usr/local/cuda; DependencyMissingError if none."""
    candidates = [shutil.which("nvcc")]
    candidates += [os.path.join(os.environ[v], "bin", "nvcc") for v in ("CUDA_HOME", "CUDA_PATH") if v in os.environ]
    candidates.append("/usr/local/cuda/bin/nvcc")
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise DependencyMissingError("nvcc (CUDA toolkit) not found on PATH, $CUDA_HOME or /usr/local/cuda: trtbuild "
                                 "compiles its GPU kernels at runtime; install the toolkit or use the CPU path")


def _cache_dir() -> str | bool:
    root = os.environ.get("TRTBUILD_CUDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "trtbuild", "cuda-kernels")
    try:
        os.makedirs(root, exist_ok=True)
        return root
    except OSError:
        return False  # pycuda: no disk cache


def compile_module(source: str, context: CudaContext, options: Iterable[str] = (), name: str = "kernel"):
    """A pycuda SourceModule of ``source`` (which declares its own ``extern "C"`` kernels), compiled once per
    context and source/options; nvcc's cubin is also cached on disk by pycuda (``$TRTBUILD_CUDA_CACHE``)."""
    key = (source, tuple(options))
    per_ctx = _MODULES.setdefault(context, {})
    if key not in per_ctx:
        from pycuda.compiler import SourceModule
        from pycuda.driver import CompileError

        nvcc = find_nvcc()
        with context:
            try:
                per_ctx[key] = SourceModule(source, nvcc=nvcc, options=list(options), no_extern_c=True,
                                            cache_dir=_cache_dir())
            except CompileError as exc:
                log = (exc.stderr or exc.stdout or str(exc)).strip().splitlines()
                raise TrtbuildError(f"nvcc could not compile {name}: {log[0] if log else exc}") from exc
    return per_ctx[key]


def _graph_api():
    lib = _libcuda()
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
