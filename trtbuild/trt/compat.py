"""The one place where TensorRT 10.x and 11.x differences are decided, from the installed version.

11.x networks are always strongly typed (precision lives in the ONNX: FP16 tensors, Q/DQ pairs); 10.x
still has the FP16/INT8 builder flags and calibrators (weak typing) and, from 10.12, solid strong typing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import InputError
from ..version import version_tuple

# --hardware-compat choice -> HardwareCompatibilityLevel member, and the first version whose API list has it
_HW_LEVELS = {"none": ("NONE", (10, 0)), "ampere+": ("AMPERE_PLUS", (10, 0)),
              "same-cc": ("SAME_COMPUTE_CAPABILITY", (10, 13))}


def hardware_compat_level(trt_version: str, choice: str) -> str:
    """The ``HardwareCompatibilityLevel`` member for ``choice`` on ``trt_version`` (InputError if it lacks it)."""
    member, first = _HW_LEVELS[choice]
    if version_tuple(trt_version) < first:
        raise InputError(f"hardware_compat={choice} needs TensorRT ≥ {'.'.join(map(str, first))} "
                         f"(HardwareCompatibilityLevel.{member} is absent from {trt_version}); use ampere+ or none",
                         param="hardware_compat")
    return member


@dataclass(frozen=True)
class TensorRTInfo:
    installed: bool
    version: str | None = None
    error: str | None = None

    @property
    def major(self) -> int | None:
        return int(self.version.split(".")[0]) if self.version else None

    @property
    def minor(self) -> int | None:
        return int(self.version.split(".")[1]) if self.version and "." in self.version else None

    @property
    def weak_typing(self) -> bool:
        """Builder precision flags and INT8 calibrators exist (10.x only)."""
        return self.major == 10

    @property
    def strong_typing_solid(self) -> bool:
        """Strongly typed builds are the only path (11.x) or reliable (10.12+)."""
        return bool(self.major and (self.major >= 11 or (self.major == 10 and (self.minor or 0) >= 12)))

    def typing_summary(self) -> str:
        if not self.installed:
            return "n/a"
        if self.major and self.major >= 11:
            return "strongly typed only (precision from the ONNX: FP16 tensors, INT8 Q/DQ)"
        if self.major == 10:
            strong = "solid" if self.strong_typing_solid else "available, prefer weak typing before 10.12"
            return f"weak typing (FP16/INT8 flags, calibrators) and strong typing ({strong})"
        return f"unsupported major version {self.major}; trtbuild targets 10.x and 11.x"


def tensorrt_info() -> TensorRTInfo:
    """Whether ``tensorrt`` imports here, and its version (never raises)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        return TensorRTInfo(False, error="not installed")
    except Exception as exc:  # a broken install (missing libnvinfer, wrong CUDA) fails in other ways
        return TensorRTInfo(False, error=f"import failed: {type(exc).__name__}: {exc}")
    version = getattr(trt, "__version__", None)
    return TensorRTInfo(True, version=version)
