"""The one place where TensorRT 10.x and 11.x differences are decided, from the installed version.

11.x networks are always strongly typed (precision lives in the ONNX: FP16 tensors, Q/DQ pairs); 10.x
still has the FP16/INT8 builder flags and calibrators (weak typing) and, from 10.12, solid strong typing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

INSTALL_HINT = (
    "install the 'gpu' extra on a CUDA host with NVIDIA's index: "
    "pip install --extra-index-url https://pypi.nvidia.com 'trtbuild[gpu]'"
)

# Every TensorRT name trtbuild's code uses (qualified as in tests/trt_api/*.txt) -> the TensorRT majors
# (or versions, "10.13") whose code path uses it. trtbuild/trt/apicheck.py, run by tests/test_trt_api.py,
# fails when a tensorrt attribute chain in trtbuild/ is missing here, or when a name is absent from
# the API list of a version it claims ("10": 10.3.0 and 10.13.3.9; "11": 11.4.0.106).
API_USES: dict[str, tuple[str, ...]] = {
    "__version__": ("10", "11"),  # tensorrt_info()
    # runtime, the same in 10.x and 11.x
    "Runtime.deserialize_cuda_engine": ("10", "11"),
    "ICudaEngine.num_io_tensors": ("10", "11"),
    "ICudaEngine.get_tensor_name": ("10", "11"),
    "ICudaEngine.get_tensor_mode": ("10", "11"),
    "ICudaEngine.get_tensor_shape": ("10", "11"),
    "ICudaEngine.get_tensor_dtype": ("10", "11"),
    "ICudaEngine.create_engine_inspector": ("10", "11"),
    "IExecutionContext.set_input_shape": ("10", "11"),
    "IExecutionContext.set_tensor_address": ("10", "11"),
    "IExecutionContext.execute_async_v3": ("10", "11"),
    # weak typing (precision flags, INT8 calibration): 10.x only, removed in 11.x
    "BuilderFlag.FP16": ("10",),
    "BuilderFlag.INT8": ("10",),
    "IInt8EntropyCalibrator2": ("10",),
    "IBuilderConfig.int8_calibrator": ("10",),
}


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
