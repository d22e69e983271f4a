"""Versions: trtbuild's own (written into every exported ONNX, printed by ``trtbuild --version``) and how any
dotted version string (TensorRT's, a table header's) is compared."""

from __future__ import annotations

import re

__version__ = "0.1.0"


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"10.13.3.9"`` → ``(10, 13, 3)``: the first three numbers, for comparisons; ``()`` when there are none."""
    return tuple(int(x) for x in re.findall(r"\d+", version or "")[:3])
