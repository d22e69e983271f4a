"""Draw detections on a BGR image with OpenCV: one box and a "name score" label per detection, a colour per class."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from functools import lru_cache

import cv2
import numpy as np

from .decode import Detections, class_name


@lru_cache(maxsize=1024)
def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for ``class_id`` (golden-ratio hue steps)."""
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = bg
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_detections(
    image_bgr: np.ndarray,
    dets: Detections,
    names: Mapping[int, str] | Sequence[str] | None = None,
    line_width: int | None = None,
) -> np.ndarray:
    """Return an annotated copy of ``image_bgr``; the input is left unchanged."""
    canvas = np.ascontiguousarray(image_bgr).copy()
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    h, w = canvas.shape[:2]
    lw = line_width or max(round((h + w) / 2 * 0.003), 2)
    font_scale = lw / 3
    thickness = max(lw - 1, 1)
    for box, score, cid in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.class_ids.tolist()):
        color = class_color(cid)
        p1 = (int(round(box[0])), int(round(box[1])))
        p2 = (int(round(box[2])), int(round(box[3])))
        cv2.rectangle(canvas, p1, p2, color, lw, cv2.LINE_AA)
        label = f"{class_name(names, cid)} {score:.2f}"
        (tw, th), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        above = p1[1] - th - baseline - 3 >= 0  # label above the box if it fits, else inside it
        top = p1[1] - th - baseline - 3 if above else p1[1]
        x0 = min(max(p1[0], 0), max(w - tw - 2, 0))
        cv2.rectangle(canvas, (x0, top), (x0 + tw + 2, top + th + baseline + 3), color, -1, cv2.LINE_AA)
        cv2.putText(
            canvas, label, (x0 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, _text_color(color),
            thickness, cv2.LINE_AA,
        )
    return canvas
