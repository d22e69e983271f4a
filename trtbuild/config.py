"""Typed configs for each stage: one place for defaults, shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InputError

DEFAULT_MODEL = "yolov8n.yaml"
DEFAULT_OUT_DIR = Path("engines")
DEFAULT_OPSET = 17  # parsed by TensorRT 10.3 (JetPack 6) through 11.x, ONNX Runtime and onnxsim alike
PRECISIONS = ("fp32", "fp16", "int8")


def parse_imgsz(value: int | str | tuple | list) -> tuple[int, int]:
    """``640`` → (640, 640); ``"320,480"`` or ``(320, 480)`` → (H, W). Sizes must be positive multiples of 32."""
    if isinstance(value, int):
        hw = (value, value)
    elif isinstance(value, (tuple, list)):
        hw = tuple(int(v) for v in value)
    else:
        parts = [p for p in str(value).replace("x", ",").split(",") if p.strip()]
        try:
            hw = tuple(int(p) for p in parts)
        except ValueError:
            raise InputError(f"--imgsz {value!r}: expected an integer or H,W (e.g. 640 or 384,640)") from None
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or any(v <= 0 or v % 32 for v in hw):
        raise InputError(f"--imgsz {value!r}: expected one or two positive multiples of 32 (e.g. 640 or 384,640)")
    return hw  # type: ignore[return-value]


def parse_precisions(value: str) -> list[str]:
    """``"all"`` → every precision; ``"fp16,int8"`` → both; unknown names are an error."""
    names = list(PRECISIONS) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in PRECISIONS]
    if bad or not names:
        raise InputError(f"precision {value!r}: choose from {', '.join(PRECISIONS)} or 'all'")
    return names


@dataclass(frozen=True)
class ExportConfig:
    """ultralytics → ONNX. ``dynamic`` makes the batch axis dynamic; ``dynamic_hw`` also height and width."""

    imgsz: tuple[int, int] = (640, 640)
    batch: int = 1
    dynamic: bool = False
    dynamic_hw: bool = False
    opset: int = DEFAULT_OPSET
    seed: int = 0  # seeds the random init of a .yaml model so its export is reproducible

    def __post_init__(self):
        if self.batch < 1:
            raise InputError(f"--batch {self.batch}: must be ≥ 1")
        if self.dynamic_hw and not self.dynamic:
            object.__setattr__(self, "dynamic", True)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimplifyConfig:
    """onnxsim plus a parity check on random input against the unsimplified model."""

    rtol: float = 1e-4  # max |a-b| / max |a| allowed between the two models' outputs
    seed: int = 0
    check_batch: int = 2  # batch used for the parity run when the batch axis is dynamic

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PipelineConfig:
    """``make engine``: every stage from a model file to engines, as far as this host allows."""

    model: str = DEFAULT_MODEL
    export: ExportConfig = field(default_factory=ExportConfig)
    simplify: SimplifyConfig = field(default_factory=SimplifyConfig)
    precisions: tuple[str, ...] = ("fp16",)
    calib: Path = Path("calib_data")
    calib_num: int = 512
    calib_batch: int = 8
    calib_method: str = "entropy"
    data: Path | None = None  # YOLO data set for the accuracy budget and the precision report
    max_map_drop: float = 1.0  # points of mAP50-95 the INT8 model may lose against FP32
    out_dir: Path = DEFAULT_OUT_DIR
    name: str | None = None
    strict: bool = False
    force: bool = False
