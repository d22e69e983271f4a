"""One probe of this host — both TensorRT flavors (``compat.tensorrt_info``), the CUDA driver and GPUs, pycuda
(``cuda.probe``) — into a ``Host`` value that is computed once and passed to the build, the engine loader, doctor,
check and the pipeline. Tests pass a ``Host`` of their own instead of patching probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cuda.probe import GPU, CudaProbe, PycudaStatus, probe_cuda, probe_pycuda
from ..errors import INSTALL_HINT, DependencyMissingError
from .compat import RTX_INSTALL_HINT, TensorRTInfo, choose_flavor, rtx_targets, tensorrt_info

NO_RTX = TensorRTInfo(False, error="not probed", flavor="rtx")


@dataclass(frozen=True)
class Target:
    """What a build is for: the TensorRT flavor and version, and either the GPU of this host (standard TensorRT:
    name, compute capability) or, for TensorRT-RTX, the compute capabilities it targets (no GPU needed)."""

    trt_version: str
    gpu_name: str | None
    compute_capability: str | None
    integrated: bool = False
    flavor: str = "tensorrt"
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Host:
    tensorrt: TensorRTInfo
    cuda: CudaProbe = field(default_factory=CudaProbe)
    pycuda: PycudaStatus = PycudaStatus(False, "not probed")
    rtx: TensorRTInfo = NO_RTX

    def info(self, flavor: str) -> TensorRTInfo:
        """The ``TensorRTInfo`` of ``flavor`` ("tensorrt" or "rtx")."""
        return self.rtx if flavor == "rtx" else self.tensorrt

    def flavor(self, requested: str = "auto") -> str:
        """The flavor a build uses: ``auto`` is standard TensorRT where it imports, else TensorRT-RTX."""
        return choose_flavor(requested, self.tensorrt, self.rtx)

    @property
    def gpu(self) -> GPU | None:
        """The first GPU (the one builds and runners use by default), None without one."""
        return self.cuda.gpus[0] if self.cuda.gpus else None

    def build_blocker(self, requested: str = "auto") -> str | None:
        """Why no engine of the ``requested`` flavor can be built here, or None when it can."""
        info = self.info(self.flavor(requested))
        if not info.installed:
            if requested == "auto":
                return (f"neither TensorRT nor TensorRT-RTX is installed on this host ({INSTALL_HINT}; or, "
                        f"to build RTX engines without a GPU: {RTX_INSTALL_HINT})")
            return f"{info.label} is {info.error} on this host ({self.install_hint(info.flavor)})"
        if info.needs_gpu_to_build and self.gpu is None:
            return f"{info.label} is installed but {self.cuda.error}"
        return None

    @staticmethod
    def install_hint(flavor: str) -> str:
        return RTX_INSTALL_HINT if flavor == "rtx" else INSTALL_HINT

    def require_tensorrt(self, flavor: str = "tensorrt") -> None:
        """DependencyMissingError with the install command when the flavor's module does not import here."""
        info = self.info(flavor)
        if not info.installed:
            raise DependencyMissingError(f"{info.label} is {info.error}: {self.install_hint(flavor)}")

    def target(self, requested: str = "auto", target_cc: tuple[str, ...] | None = None) -> Target:
        """What a build of the ``requested`` flavor is for; DependencyMissingError when it cannot run here
        (the flavor is missing, or standard TensorRT has no GPU)."""
        flavor = self.flavor(requested)
        self.require_tensorrt(flavor)
        info, gpu = self.info(flavor), self.gpu
        if info.rtx:
            targets = rtx_targets(target_cc, gpu.compute_capability if gpu else None)
            return Target(info.version, None, None, False, "rtx", targets)
        if gpu is None:
            raise DependencyMissingError(f"{info.label} is installed but no GPU is usable here: {self.cuda.error}; "
                                         "build engines on the machine (or the same GPU model) that will run them, "
                                         f"or build TensorRT-RTX engines without a GPU ({RTX_INSTALL_HINT})")
        return Target(info.version, gpu.name, gpu.compute_capability, gpu.integrated)

    def engine_facts(self, flavor: str = "tensorrt") -> tuple[str | None, str | None, str | None]:
        """(the flavor's version, GPU name, compute capability) of this host; None for what is missing."""
        gpu = self.gpu
        return self.info(flavor).version, (gpu.name if gpu else None), (gpu.compute_capability if gpu else None)


def probe_host(pycuda: bool = False) -> Host:
    """Probe this host once (never raises). ``pycuda=True`` also initialises pycuda (doctor)."""
    status = probe_pycuda() if pycuda else PycudaStatus(False, "not probed")
    return Host(tensorrt_info("tensorrt"), probe_cuda(), status, tensorrt_info("rtx"))
