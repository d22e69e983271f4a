"""``IOSpec``: one input or output tensor of a model (ONNX graph, ONNX Runtime session or TensorRT engine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IOSpec:
    """One input or output tensor: name, shape (``None`` or a string for a dynamic axis) and NumPy dtype."""

    name: str
    shape: tuple
    dtype: str

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) or d < 0 for d in self.shape)
