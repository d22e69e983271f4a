"""Kernels compiled at run time: ``compile_module`` compiles a kernel source once per context with pycuda's
SourceModule (nvcc found on PATH, $CUDA_HOME or /usr/local/cuda) and caches the cubin on disk.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Iterable
from pathlib import Path

from ..errors import DependencyMissingError, TrtbuildError
from .context import CudaContext

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
