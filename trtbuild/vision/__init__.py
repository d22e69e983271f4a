"""Pre/post-processing for YOLOv8 detectors in NumPy + OpenCV: letterbox, decode + NMS, drawing, input reading.

Matches ultralytics' predictor numerically, without torch, so every runtime backend shares one result type.
The ``letterbox`` and ``nms`` functions live in the modules of the same name (not re-exported here, so that
``trtbuild.vision.letterbox`` / ``trtbuild.vision.nms`` stay the modules).
"""

from __future__ import annotations

from .decode import Detections, postprocess, postprocess_end2end
from .draw import draw_detections
from .io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, iter_sources
from .letterbox import LetterboxInfo, letterbox_batch, letterbox_info, letterbox_into, scale_boxes

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Detections",
    "LetterboxInfo",
    "draw_detections",
    "iter_sources",
    "letterbox_batch",
    "letterbox_info",
    "letterbox_into",
    "postprocess",
    "postprocess_end2end",
    "scale_boxes",
]
