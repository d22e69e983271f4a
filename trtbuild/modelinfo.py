"""What a model artifact says about itself (class names, input size, stride, task), from its metadata."""

from __future__ import annotations

from dataclasses import dataclass

from .graph import parse_literal


@dataclass(frozen=True)
class ModelInfo:
    names: dict[int, str]
    imgsz: tuple[int, int] | None
    stride: int
    task: str
    end2end: bool

    @classmethod
    def from_metadata(cls, meta: dict, num_classes: int | None = None) -> "ModelInfo":
        names = parse_literal(meta.get("names"), None)
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, dict):
            names = {i: str(i) for i in range(num_classes or 0)}
        imgsz = parse_literal(meta.get("imgsz"), None)
        if isinstance(imgsz, int):
            imgsz = (imgsz, imgsz)
        stride = parse_literal(meta.get("stride"), 32)
        end2end = str(meta.get("end2end", "False")).lower() == "true"
        return cls(
            names={int(k): str(v) for k, v in names.items()},
            imgsz=tuple(imgsz) if imgsz else None,
            stride=int(max(stride) if isinstance(stride, (list, tuple)) else stride),
            task=str(meta.get("task", "detect")),
            end2end=end2end,
        )
