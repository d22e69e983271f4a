"""The GPU letterbox's arithmetic in NumPy, and its CPU stand-in with the same call signature.

The kernel (``trtbuild/cuda/letterbox.cu``) resizes with cv2.resize's INTER_LINEAR geometry (half-pixel centres,
edge clamp), rounds to the uint8 value the CPU path would hold, pads with 114, swaps BGR→RGB, transposes HWC→CHW
and divides by 255. ``reference_letterbox`` is the same arithmetic in NumPy (float32, one rounding per operation;
the kernel is built with ``--fmad=false`` so nvcc does not fuse them), which lets the algorithm be checked against
the CPU letterbox on any host; OpenCV's own fixed-point bilinear can differ from it by one uint8 level (1/255).
The geometry comes from :func:`trtbuild.vision.letterbox.letterbox_info`, so boxes scale back identically.
``CpuLetterbox`` is what ``cuda.letterbox.make_letterboxer`` returns where there is no GPU path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from .letterbox import PAD_VALUE, LetterboxInfo, check_image, letterbox, letterbox_batch, letterbox_info

OUTPUT_DTYPES = ("float32", "float16")


def as_hw(dst_hw: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(dst_hw, (int, np.integer)):
        return int(dst_hw), int(dst_hw)
    h, w = dst_hw
    return int(h), int(w)


def output_dtype(dtype) -> str:
    """``float32`` or ``float16``: the input types the letterbox (CPU twin and GPU kernel) writes."""
    name = np.dtype(dtype).name
    if name not in OUTPUT_DTYPES:
        raise InputError(f"GPU letterbox writes float32 or float16, not {name}; build the engine with such an input")
    return name


def geometry(frame_hw: Sequence[int], dst_hw: int | Sequence[int]) -> tuple[LetterboxInfo, np.float32, np.float32]:
    """Letterbox info plus the float32 source-per-destination scales the kernel samples with (x, y)."""
    info = letterbox_info(frame_hw, as_hw(dst_hw))
    (h0, w0), (nh, nw) = info.orig_shape, info.unpad_shape
    return info, np.float32(w0 / nw), np.float32(h0 / nh)


def _taps(n_out: int, n_src: int, scale: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along one axis: first tap, second tap, weight of the second (the kernel's float math)."""
    f = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    s = np.floor(f)
    f = f - s
    s = s.astype(np.int64)
    low, high = s < 0, s >= n_src - 1
    f[low | high] = 0
    s = np.clip(s, 0, n_src - 1)
    return s, np.minimum(s + 1, n_src - 1), f


def reference_letterbox(frame: np.ndarray, dst_hw: int | Sequence[int]) -> tuple[np.ndarray, LetterboxInfo]:
    """What the kernel computes, in NumPy: (3, H, W) float32 RGB in 0..1 and the letterbox info."""
    src = check_image(frame)
    info, scale_x, scale_y = geometry(src.shape, dst_hw)
    (h0, w0), (nh, nw), (dh, dw) = info.orig_shape, info.unpad_shape, info.new_shape
    left, top = int(info.pad[0]), int(info.pad[1])
    sx0, sx1, fx = _taps(nw, w0, scale_x)
    sy0, sy1, fy = _taps(nh, h0, scale_y)
    wx0, wy0 = np.float32(1) - fx, np.float32(1) - fy
    rgb = src[..., ::-1].astype(np.float32)
    r0, r1 = rgb[sy0], rgb[sy1]  # (nh, w0, 3)
    wx0, fx = wx0[None, :, None], fx[None, :, None]
    top_row = wx0 * r0[:, sx0] + fx * r0[:, sx1]
    bottom_row = wx0 * r1[:, sx0] + fx * r1[:, sx1]
    v = wy0[:, None, None] * top_row + fy[:, None, None] * bottom_row
    v = np.clip(np.floor(v + np.float32(0.5)), 0, 255).astype(np.float32)
    out = np.full((3, dh, dw), np.float32(PAD_VALUE) / np.float32(255), np.float32)
    out[:, top : top + nh, left : left + nw] = (v / np.float32(255)).transpose(2, 0, 1)
    return out, info


class CpuLetterbox:
    """The CPU fallback with GpuLetterbox's call signature: ``dst`` is a host (N, 3, H, W) array, not a pointer."""

    backend = "cpu"

    def __init__(self, dst_hw: int | Sequence[int], dtype="float32", reason: str | None = None):
        self.dst_hw = as_hw(dst_hw)
        self.dtype = output_dtype(dtype)
        self.reason = reason  # why the GPU one is not used, None when the CPU was asked for

    def __call__(self, frame: np.ndarray, dst: np.ndarray, batch_index: int = 0, stream=None) -> LetterboxInfo:
        frame = check_image(frame)
        if not isinstance(dst, np.ndarray) or dst.ndim != 4 or dst.shape[1:] != (3, *self.dst_hw):
            raise InputError(f"dst must be a host array of shape (N, 3, {self.dst_hw[0]}, {self.dst_hw[1]})")
        if dst.dtype == np.float32 and dst.flags.c_contiguous:
            return letterbox_batch([frame], self.dst_hw, out=dst[batch_index : batch_index + 1])[1][0]
        out, info = letterbox(frame, self.dst_hw)
        dst[batch_index] = out
        return info

    def wait(self) -> None:
        """Nothing to wait for: the CPU letterbox is synchronous."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
