"""One probe of this host — TensorRT (``compat.tensorrt_info``), the CUDA driver and GPUs, pycuda (``cuda.probe``) —
into a ``Host`` value that is computed once and passed to the build, the engine loader, doctor and the pipeline.
Tests pass a ``Host`` of their own instead of patching probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cuda.probe import GPU, CudaProbe, PycudaStatus, probe_cuda, probe_pycuda
from ..errors import INSTALL_HINT, DependencyMissingError
from .compat import TensorRTInfo, tensorrt_info


@dataclass(frozen=True)
class Target:
    """The host a build is for: TensorRT version and the GPU (as the CUDA probe reports it)."""

    trt_version: str
    gpu_name: str
    compute_capability: str
    integrated: bool = False


@dataclass(frozen=True)
class Host:
    tensorrt: TensorRTInfo
    cuda: CudaProbe = field(default_factory=CudaProbe)
    pycuda: PycudaStatus = PycudaStatus(False, "not probed")

    @property
    def gpu(self) -> GPU | None:
        """The first GPU (the one builds and runners use by default), None without one."""
        return self.cuda.gpus[0] if self.cuda.gpus else None

    def build_blocker(self) -> str | None:
        """Why no engine can be built here, or None when TensorRT and a GPU are both present."""
        if not self.tensorrt.installed:
            return f"TensorRT is {self.tensorrt.error} on this host ({INSTALL_HINT})"
        if self.gpu is None:
            return f"TensorRT {self.tensorrt.version} is installed but {self.cuda.error}"
        return None

    def require_tensorrt(self) -> None:
        """DependencyMissingError with the install command when ``tensorrt`` does not import here."""
        if not self.tensorrt.installed:
            raise DependencyMissingError(f"TensorRT is {self.tensorrt.error}: {INSTALL_HINT}")

    def target(self) -> Target:
        """This host's TensorRT version and first GPU; DependencyMissingError when either is missing."""
        self.require_tensorrt()
        gpu = self.gpu
        if gpu is None:
            raise DependencyMissingError(f"TensorRT {self.tensorrt.version} is installed but no GPU is usable here: "
                                         f"{self.cuda.error}; build engines on the machine (or the same GPU model) "
                                         "that will run them")
        return Target(self.tensorrt.version, gpu.name, gpu.compute_capability, gpu.integrated)

    def engine_facts(self) -> tuple[str | None, str | None, str | None]:
        """(TensorRT version, GPU name, compute capability) of this host; None for what is missing."""
        gpu = self.gpu
        return self.tensorrt.version, (gpu.name if gpu else None), (gpu.compute_capability if gpu else None)


def probe_host(pycuda: bool = False) -> Host:
    """Probe this host once (never raises). ``pycuda=True`` also initialises pycuda (doctor)."""
    return Host(tensorrt_info(), probe_cuda(), probe_pycuda() if pycuda else PycudaStatus(False, "not probed"))
