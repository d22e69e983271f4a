"""Find the CUDA driver and GPUs through ``libcuda`` with ctypes (so ``doctor`` works without pycuda), and whether
pycuda is usable. pycuda is optional and compiled; the driver library is what any GPU host has. Never raises.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
from dataclasses import dataclass, field
from importlib.util import find_spec

from ..artifacts import package_version

_ATTR_CC_MAJOR, _ATTR_CC_MINOR, _ATTR_INTEGRATED = 75, 76, 18


@dataclass
class GPU:
    index: int
    name: str
    compute_capability: str
    total_memory: int
    integrated: bool


@dataclass
class CudaProbe:
    driver_version: str | None = None
    gpus: list[GPU] = field(default_factory=list)
    error: str | None = None


def load_libcuda():
    """The CUDA driver library through ctypes, or None where no NVIDIA driver is installed."""
    for name in ("libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def probe_cuda() -> CudaProbe:
    lib = load_libcuda()
    if lib is None:
        return CudaProbe(error="no CUDA driver (libcuda.so.1 not found): no NVIDIA GPU driver on this host")
    rc = lib.cuInit(0)
    if rc != 0:
        return CudaProbe(error=f"CUDA driver present but cuInit failed (CUresult {rc}): no usable GPU")
    version = ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(version))
    driver = f"{version.value // 1000}.{version.value % 1000 // 10}"
    count = ctypes.c_int()
    lib.cuDeviceGetCount(ctypes.byref(count))
    gpus = []
    for i in range(count.value):
        dev = ctypes.c_int()
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        attrs = {}
        for attr in (_ATTR_CC_MAJOR, _ATTR_CC_MINOR, _ATTR_INTEGRATED):
            value = ctypes.c_int()
            lib.cuDeviceGetAttribute(ctypes.byref(value), attr, dev)
            attrs[attr] = value.value
        mem = ctypes.c_size_t()
        lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        gpus.append(
            GPU(
                index=i,
                name=name.value.decode(errors="replace"),
                compute_capability=f"{attrs[_ATTR_CC_MAJOR]}.{attrs[_ATTR_CC_MINOR]}",
                total_memory=mem.value,
                integrated=bool(attrs[_ATTR_INTEGRATED]),
            )
        )
    return CudaProbe(driver_version=driver, gpus=gpus, error=None if gpus else "CUDA driver found but no GPU")


@dataclass(frozen=True)
class PycudaStatus:
    usable: bool
    text: str  # its version, or why it cannot be used


def probe_pycuda() -> PycudaStatus:
    """Whether pycuda imports and its driver initialises here."""
    if find_spec("pycuda") is None:
        return PycudaStatus(False, "not installed (part of the 'gpu' extra; needs the CUDA toolkit to build)")
    try:
        mod = importlib.import_module("pycuda")
        driver = importlib.import_module("pycuda.driver")
        driver.init()
        return PycudaStatus(True, f"{getattr(mod, 'VERSION_TEXT', package_version('pycuda'))}")
    except Exception as exc:
        return PycudaStatus(False, f"installed but unusable: {type(exc).__name__}: {exc}")
