"""What a model says about itself, read once: its image input, outputs, geometry (imgsz, dynamic axes, batch,
stride) and class names, from its I/O specs and the ``metadata_props`` ultralytics and trtbuild write.

Every stage and task takes the geometry from here (``ModelInfo.of_onnx``, ``Runner.info``) instead of re-deriving
it, so "what size does this model run at" has one answer: the static input size, else the ``imgsz`` written at
export (a ``--dynamic-hw`` model), else an explicit choice, else 640.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from ..config import DEFAULT_IMGSZ, DEFAULT_STRIDE
from ..errors import InputError, UnsupportedModelError
from ..iospec import IOSpec
from .graph import get_metadata, io_specs, load_onnx, parse_literal



def _static(d) -> bool:
    return isinstance(d, int) and d > 0


@dataclass(frozen=True)
class ModelInfo:
    input: IOSpec  # the image input [B, 3, H, W]
    outputs: tuple[IOSpec, ...]
    names: dict[int, str]
    imgsz: tuple[int, int] | None  # static (H, W), else the export's imgsz from the metadata, else None
    batch: int | None  # the static batch, None when the batch axis is dynamic
    dynamic_hw: bool
    stride: int
    task: str
    end2end: bool  # the output is detections [B, max_det, 6] (NMS in the graph)

    @property
    def dynamic_batch(self) -> bool:
        return self.batch is None

    @property
    def static_hw(self) -> tuple[int, int] | None:
        return None if self.dynamic_hw else self.imgsz

    def run_hw(self, imgsz: tuple[int, int] | None = None) -> tuple[int, int]:
        """(H, W) to run at: the static input size; for dynamic H/W ``imgsz``, else the export's, else 640."""
        return self.static_hw or (tuple(imgsz) if imgsz else None) or self.imgsz or DEFAULT_IMGSZ

    @classmethod
    def of(cls, metadata: dict, inputs: list[IOSpec], outputs: list[IOSpec], source: str = "model") -> ModelInfo:
        """From the specs and metadata of an ONNX graph, an ONNX Runtime session or an engine."""
        if not inputs or len(inputs[0].shape) != 4:
            got = ", ".join(f"{s.name}{list(s.shape)}" for s in inputs) or "none"
            raise UnsupportedModelError(f"{source}: expected one [B,3,H,W] image input, got {got}; "
                                        "trtbuild runs YOLOv8 detect models")
        inp = inputs[0]
        b, _, h, w = inp.shape
        out = outputs[0].shape if outputs else ()
        channels = out[1] if len(out) == 3 and isinstance(out[1], int) else None
        end2end = (len(out) == 3 and out[-1] == 6 and channels != 6) or \
            str(metadata.get("end2end", "")).lower() == "true"  # an --nms model, even with max_det 6
        names = parse_literal(metadata.get("names"), None)
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, dict):
            count = 0 if end2end or channels is None else channels - 4
            names = {i: str(i) for i in range(max(count, 0))}
        dynamic_hw = not (_static(h) and _static(w))
        if dynamic_hw:
            meta = parse_literal(metadata.get("imgsz"), None)
            imgsz = (meta, meta) if isinstance(meta, int) else (tuple(int(v) for v in meta) if meta else None)
        else:
            imgsz = (int(h), int(w))
        stride = parse_literal(metadata.get("stride"), DEFAULT_STRIDE)
        return cls(
            input=inp, outputs=tuple(outputs), names={int(k): str(v) for k, v in names.items()}, imgsz=imgsz,
            batch=int(b) if _static(b) else None, dynamic_hw=dynamic_hw,
            stride=int(max(stride) if isinstance(stride, (list, tuple)) else stride),
            task=str(metadata.get("task", "detect")), end2end=end2end,
        )

    @classmethod
    def of_onnx(cls, model: onnx.ModelProto | str | Path) -> ModelInfo:
        """Read once from an ONNX file (or a loaded model)."""
        source = str(model) if isinstance(model, (str, Path)) else "model"
        if isinstance(model, (str, Path)):
            model = load_onnx(model, check=False)
        inputs, outputs = io_specs(model)
        return cls.of(get_metadata(model), inputs, outputs, source)

    def require_detect(self, source: str | Path) -> None:
        """InputError unless the output is a raw YOLOv8 detect head ``[B, 4+nc, A]``."""
        out = self.outputs[0].shape if self.outputs else ()
        # ultralytics' dynamic export declares the channel axis symbolically: its class names then say 4 + nc
        channels_ok = len(out) == 3 and (out[1] >= 5 if isinstance(out[1], int) else bool(self.names))
        if self.end2end or not channels_ok:
            raise InputError(f"{source}: output {list(out)} is not a YOLOv8 detect head [B, 4+nc, A]; "
                             "pass the raw export, not one with NMS appended")
