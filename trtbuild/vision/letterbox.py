"""Letterbox preprocessing that matches ultralytics' predictor for static-shape models, bit for bit.

One frame costs three OpenCV passes over the resized pixels only, each releasing the GIL: ``cv2.resize`` into a
per-thread uint8 scratch, ``cv2.split`` into three uint8 planes in R, G, B order, and ``cv2.divide`` by 255 of each
plane straight into its float32 rectangle of the caller's (e.g. pinned) batch slot; then a constant fill of the
padding only. ``letterbox_into`` is that path for one slot; ``letterbox`` and ``letterbox_batch`` call it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..errors import InputError

PAD_VALUE = 114
# x / 255 rounded to float32 for every uint8 x: the exact values of torch's ``uint8.float().div_(255)``.
_TO_UNIT = (np.arange(256, dtype=np.float32) / np.float32(255.0)).reshape(1, 256)
_PAD_UNIT = _TO_UNIT[0, PAD_VALUE]

_scratch = threading.local()


def _divide_is_exact() -> bool:
    """Whether ``cv2.divide(uint8, 255.0, dtype=CV_32F)`` gives exactly ``_TO_UNIT`` on this OpenCV build.

    Checked once, on every uint8 value both in its vector loop (rows of 261 values, shifted row to row) and in
    its scalar path (a column of rows one value wide), written into strided float32 rectangles as the letterbox
    does; where it is not exact the letterbox uses ``cv2.LUT`` with ``_TO_UNIT`` (exact by construction, about
    three times slower).
    """
    wide = ((np.arange(67)[:, None] * 7 + np.arange(261)) % 256).astype(np.uint8)
    narrow = np.arange(256, dtype=np.uint8).reshape(256, 1)
    for src in (wide, narrow):
        dst = np.full((src.shape[0] + 2, src.shape[1] + 2), np.nan, np.float32)
        roi = dst[1:-1, 1:-1]
        got = cv2.divide(src, 255.0, dst=roi, dtype=cv2.CV_32F)
        if not (
            got is roi
            and np.array_equal(roi, _TO_UNIT[0, src])
            and np.isnan(dst[[0, -1]]).all()
            and np.isnan(dst[:, [0, -1]]).all()
        ):
            return False
    return True


_EXACT_DIVIDE = _divide_is_exact()


@dataclass(frozen=True)
class LetterboxInfo:
    """Geometry of one letterboxed image, enough to map boxes back to the original pixels."""

    ratio: float  # resize ratio (new / old), the same for both axes before rounding
    pad: tuple[float, float]  # (left, top) padding in input pixels
    orig_shape: tuple[int, int]  # (h, w) of the original image
    new_shape: tuple[int, int]  # (h, w) of the network input
    unpad_shape: tuple[int, int]  # (h, w) of the resized image inside the padding

    @property
    def gain(self) -> tuple[float, float]:
        """Per-axis (x, y) scale after rounding the resized size, as ultralytics' ``scale_boxes`` uses it."""
        return self.unpad_shape[1] / self.orig_shape[1], self.unpad_shape[0] / self.orig_shape[0]


def _as_hw(new_shape: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(new_shape, (int, np.integer)):
        return int(new_shape), int(new_shape)
    h, w = new_shape
    return int(h), int(w)


def rect_hw(orig_shape: Sequence[int], new_shape: int | Sequence[int], stride: int) -> tuple[int, int]:
    """The smallest (H, W), multiples of ``stride``, that hold an image of ``orig_shape`` letterboxed into
    ``new_shape``: ultralytics' rectangular inference (``LetterBox(auto=True)``), for models with a dynamic H and W:
    a 1280x720 frame at 640 runs at 384x640 instead of 640x640, 40 % fewer pixels."""
    h0, w0 = int(orig_shape[0]), int(orig_shape[1])
    nh_t, nw_t = _as_hw(new_shape)
    r = min(nh_t / h0, nw_t / w0)
    nh, nw = max(round(h0 * r), 1), max(round(w0 * r), 1)
    return -(-nh // stride) * stride, -(-nw // stride) * stride


def letterbox_info(orig_shape: Sequence[int], new_shape: int | Sequence[int]) -> LetterboxInfo:
    """Compute the letterbox geometry for an image of ``orig_shape`` (h, w[, c]) into ``new_shape``.

    Same rule as ultralytics ``LetterBox(auto=False, scaleup=True, center=True)``: scale by the smaller ratio,
    round each side (at least 1 px), split the padding in two with ``round(d - 0.1)`` on the top/left side.
    """
    h0, w0 = int(orig_shape[0]), int(orig_shape[1])
    if h0 <= 0 or w0 <= 0:
        raise InputError(f"cannot letterbox an empty image of shape {tuple(orig_shape)}")
    return _info(h0, w0, _as_hw(new_shape))


@lru_cache(maxsize=256)
def _info(h0: int, w0: int, new_hw: tuple[int, int]) -> LetterboxInfo:
    """``letterbox_info`` of one (h, w) > 0 → new_hw, cached: a stream's frames all share one (frozen) info."""
    nh_t, nw_t = new_hw
    r = min(nh_t / h0, nw_t / w0)
    nw, nh = max(round(w0 * r), 1), max(round(h0 * r), 1)
    left = round((nw_t - nw) / 2 - 0.1)
    top = round((nh_t - nh) / 2 - 0.1)
    return LetterboxInfo(
        ratio=r, pad=(float(left), float(top)), orig_shape=(h0, w0), new_shape=(nh_t, nw_t), unpad_shape=(nh, nw)
    )


def _scratch_u8(size: int) -> np.ndarray:
    """This thread's uint8 scratch, two rows of at least ``size`` bytes: the resized image and its planes."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.shape[1] < size:
        buf = _scratch.buf = np.empty((2, size), np.uint8)
    return buf


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous BGR uint8 (H, W, 3) array; InputError for anything else."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(f"expected a BGR uint8 image of shape (H, W, 3), got a {desc}")
    return image if image.flags.c_contiguous else np.ascontiguousarray(image)


def _check_slot(out_slot: np.ndarray, hw: tuple[int, int]) -> None:
    if (
        not isinstance(out_slot, np.ndarray)
        or out_slot.dtype != np.float32
        or out_slot.shape != (3, *hw)
        or not out_slot.flags.c_contiguous
    ):
        desc = f"{out_slot.dtype} {out_slot.shape}" if isinstance(out_slot, np.ndarray) else type(out_slot).__name__
        raise ValueError(f"out_slot must be a C-contiguous float32 array of shape (3, {hw[0]}, {hw[1]}), got {desc}")


def _write(image: np.ndarray, info: LetterboxInfo, dst: np.ndarray) -> None:
    """Letterbox ``image`` and write RGB CHW float32 0..1 into ``dst`` (3, H, W), C-contiguous.

    Every value of ``dst`` is written exactly once: the resized image's rectangle by ``cv2.divide`` (or
    ``cv2.LUT``) from the uint8 planes, the padding around it by a constant fill. OpenCV returns the very array
    it was given as ``dst`` when it wrote into it; anything else is copied where it belongs.
    """
    nh, nw = info.unpad_shape
    h, w = info.new_shape
    left, top = int(info.pad[0]), int(info.pad[1])
    n = nh * nw * 3
    scratch = _scratch_u8(n)
    if image.shape[0] == nh and image.shape[1] == nw:
        resized = image
    else:
        resized = scratch[0, :n].reshape(nh, nw, 3)
        out = cv2.resize(image, (nw, nh), dst=resized, interpolation=cv2.INTER_LINEAR)
        if out is not resized:  # OpenCV chose not to write in place
            resized = out
    planes = scratch[1, :n].reshape(3, nh, nw)
    rgb = (planes[2], planes[1], planes[0])  # cv2.split writes B, G, R into these: planes become R, G, B
    for got, want in zip(cv2.split(resized, rgb), rgb):
        if got is not want:  # OpenCV allocated instead of writing in place
            want[...] = got
    if nw == w:  # full-width rows: the three channels' rectangles are one strided (3, nh * w) matrix
        pairs = [(planes.reshape(3, n // 3), dst.reshape(3, h * w)[:, top * w : (top + nh) * w])]
    else:
        pairs = [(planes[c], dst[c, top : top + nh, left : left + nw]) for c in range(3)]
    for src, roi in pairs:
        if _EXACT_DIVIDE:
            out = cv2.divide(src, 255.0, dst=roi, dtype=cv2.CV_32F)
        else:
            out = cv2.LUT(src, _TO_UNIT, dst=roi)
        if out is not roi:
            roi[...] = out
    # Padding: the exact value of 114 / 255 on every side of the resized image, and nowhere else.
    if top:
        dst[:, :top] = _PAD_UNIT
    if top + nh < h:
        dst[:, top + nh :] = _PAD_UNIT
    if left:
        dst[:, top : top + nh, :left] = _PAD_UNIT
    if left + nw < w:
        dst[:, top : top + nh, left + nw :] = _PAD_UNIT


def letterbox_into(image_bgr: np.ndarray, new_shape: int | tuple[int, int], out_slot: np.ndarray) -> LetterboxInfo:
    """Letterbox one BGR uint8 image straight into ``out_slot`` and return its geometry.

    ``out_slot`` is a C-contiguous float32 (3, H, W) array, e.g. ``batch[i]`` of a (pinned) (N, 3, H, W) batch
    buffer; every one of its values is overwritten with the RGB image in 0..1 (padding 114/255), bit for bit
    what ``letterbox`` returns. Thread-safe: each thread has its own scratch, so several threads may fill
    different slots of one buffer at once; the OpenCV calls and the padding fills release the GIL.
    """
    image = check_image(image_bgr)
    hw = _as_hw(new_shape)
    _check_slot(out_slot, hw)
    info = letterbox_info(image.shape, hw)
    _write(image, info, out_slot)
    return info


def letterbox(image_bgr: np.ndarray, new_shape: int | tuple[int, int]) -> tuple[np.ndarray, LetterboxInfo]:
    """Letterbox one BGR uint8 image to ``new_shape``; returns a (3, H, W) float32 RGB array in 0..1 and its info."""
    out = np.empty((3, *_as_hw(new_shape)), np.float32)
    return out, letterbox_into(image_bgr, new_shape, out)


def letterbox_batch(
    images: Sequence[np.ndarray], new_shape: int | tuple[int, int], out: np.ndarray | None = None
) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Letterbox several images into one (N, 3, H, W) float32 batch.

    ``out``, if given, must be a C-contiguous float32 array of shape (M, 3, H, W) with M >= N; the images are
    written into its first N slots and ``out[:N]`` (a view) is returned. Slots beyond N are left untouched.
    """
    hw = _as_hw(new_shape)
    n = len(images)
    if out is None:
        out = np.empty((n, 3, *hw), np.float32)
    elif (
        not isinstance(out, np.ndarray)
        or out.dtype != np.float32
        or out.ndim != 4
        or out.shape[1:] != (3, *hw)
        or out.shape[0] < n
        or not out.flags.c_contiguous
    ):
        desc = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out must be a C-contiguous float32 array of shape (>={n}, 3, {hw[0]}, {hw[1]}), got {desc}")
    infos = [letterbox_into(img, hw, out[i]) for i, img in enumerate(images)]
    return out[:n], infos


@lru_cache(maxsize=256)
def _scale_params(info: LetterboxInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pad, gain, clip) as read-only float32 (4,) rows for x1, y1, x2, y2: what ``scale_boxes`` applies."""
    (pad_x, pad_y), (gain_x, gain_y), (h, w) = info.pad, info.gain, info.orig_shape
    rows = (
        np.array([pad_x, pad_y, pad_x, pad_y], np.float32),
        np.array([gain_x, gain_y, gain_x, gain_y], np.float32),
        np.array([w, h, w, h], np.float32),
    )
    for r in rows:
        r.flags.writeable = False
    return rows


def scale_boxes(boxes_xyxy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map (N, 4) xyxy boxes from network-input pixels back to original pixels, clipped to the image.

    Same arithmetic as ultralytics ``scale_boxes(..., padding=True)`` called by its predictor (which recomputes
    the per-axis gain from the rounded resized size): subtract the float32 padding, divide by the float32 gain,
    clip to [0, w] / [0, h], NaN kept as NaN. Returns a new C-contiguous float32 array; the input is not modified.
    """
    boxes = np.array(boxes_xyxy, dtype=np.float32, order="C").reshape(-1, 4)  # always a copy
    pad, gain, clip = _scale_params(info)
    boxes -= pad
    boxes /= gain
    np.maximum(boxes, 0, out=boxes)  # == clip(0, w), NaN kept as NaN
    np.minimum(boxes, clip, out=boxes)
    return boxes
