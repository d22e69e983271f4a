"""Letterbox on the GPU: one CUDA kernel (``letterbox.cu``) from a uint8 BGR frame to the engine's input buffer.

The kernel resizes with cv2.resize's INTER_LINEAR geometry (half-pixel centres, edge clamp), rounds to the
uint8 value the CPU path would hold, pads with 114, swaps BGR→RGB, transposes HWC→CHW and divides by 255,
writing float32 or float16 straight into a device pointer (the engine input at a batch index), so a frame
costs one small upload plus one kernel instead of the CPU letterbox and a float32 upload four times larger.
The geometry comes from :func:`trtbuild.vision.letterbox.letterbox_info`, so boxes scale back identically.

``reference_letterbox`` is the same arithmetic in NumPy (float32, one rounding per operation; the kernel is
built with ``--fmad=false`` so nvcc does not fuse them), which lets the algorithm be checked against the CPU
letterbox on any host. OpenCV's own fixed-point bilinear can differ from it by one uint8 level (1/255).

``make_letterboxer`` returns the GPU letterboxer where pycuda, a GPU and nvcc work, else a CPU one with the
same call signature writing into a host batch array.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .letterbox import PAD_VALUE, LetterboxInfo, letterbox, letterbox_batch, letterbox_info

KERNEL_SOURCE = Path(__file__).with_name("letterbox.cu")
_BLOCK = (32, 8, 1)
_ARG_FORMAT = "PiiiPiiiiiiff"  # src, src_h, src_w, src_pitch, dst, dst_h, dst_w, top, left, nh, nw, sx, sy
_KERNELS = {"float32": "letterbox_f32", "float16": "letterbox_f16"}


def _hw(dst_hw: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(dst_hw, (int, np.integer)):
        return int(dst_hw), int(dst_hw)
    h, w = dst_hw
    return int(h), int(w)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"expected a BGR uint8 frame of shape (H, W, 3), got a {desc}")
    return frame


def _dtype(dtype) -> str:
    name = np.dtype(dtype).name
    if name not in _KERNELS:
        raise InputError(f"GPU letterbox writes float32 or float16, not {name}; build the engine with such an input")
    return name


def geometry(frame_hw: Sequence[int], dst_hw: int | Sequence[int]) -> tuple[LetterboxInfo, np.float32, np.float32]:
    """Letterbox info plus the float32 source-per-destination scales the kernel samples with (x, y)."""
    info = letterbox_info(frame_hw, _hw(dst_hw))
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
    src = _check_frame(frame)
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


class GpuLetterbox:
    """Letterbox frames on the GPU into a device buffer of shape (N, 3, H, W) at ``dst_hw`` and ``dtype``.

    Frames are staged through one reusable pinned buffer and one device buffer, grown when a bigger frame
    arrives. Calls are asynchronous on ``stream``: the next call waits for the previous one's kernel before it
    reuses the staging buffers. Use it in the thread that created it (see trtbuild.runtime.cuda).
    """

    backend = "gpu"

    def __init__(self, dst_hw: int | Sequence[int], dtype="float32", context=None):
        from ..runtime.cuda import compile_module, default_context, require_pycuda

        self._cuda = cuda = require_pycuda()
        self.dst_hw = _hw(dst_hw)
        self.dtype = _dtype(dtype)
        self._ctx = context or default_context()
        with self._ctx:
            module = compile_module(KERNEL_SOURCE.read_text(), self._ctx, options=["--fmad=false"])
            self._kernel = module.get_function(_KERNELS[self.dtype]).prepare(_ARG_FORMAT)
            self._busy = cuda.Event()
        self._host = self._dev = None
        self._capacity = 0
        self._pending = False

    @property
    def item_bytes(self) -> int:
        """Bytes of one (3, H, W) slot of the destination batch."""
        return 3 * self.dst_hw[0] * self.dst_hw[1] * np.dtype(self.dtype).itemsize

    def _stage(self, nbytes: int) -> None:
        if nbytes > self._capacity:
            self.wait()
            self._free_staging()
            cap = max(nbytes, 1920 * 1080 * 3)
            self._host = self._cuda.pagelocked_empty(cap, np.uint8)
            self._dev = self._cuda.mem_alloc(cap)
            self._capacity = cap

    def __call__(self, frame: np.ndarray, dst_ptr: int, batch_index: int = 0, stream=None) -> LetterboxInfo:
        """Upload ``frame`` (uint8 BGR, H×W×3) and letterbox it into slot ``batch_index`` of ``dst_ptr``."""
        frame = _check_frame(frame)
        h, w = frame.shape[:2]
        with self._ctx:
            self.wait()  # the previous upload/kernel may still read the staging buffers
            self._stage(h * w * 3)
            staged = self._host[: h * w * 3].reshape(h, w, 3)
            np.copyto(staged, frame)
            self._cuda.memcpy_htod_async(self._dev, staged, stream)
            return self._launch(int(self._dev), (h, w), w * 3, dst_ptr, batch_index, stream)

    def launch(self, src_ptr: int, src_hw: Sequence[int], src_pitch: int, dst_ptr: int, batch_index: int = 0,
               stream=None) -> LetterboxInfo:
        """Letterbox a frame already on the device (uint8 BGR rows of ``src_pitch`` bytes) into ``dst_ptr``."""
        with self._ctx:
            return self._launch(int(src_ptr), src_hw, int(src_pitch), dst_ptr, batch_index, stream)

    def _launch(self, src_ptr, src_hw, pitch, dst_ptr, batch_index, stream) -> LetterboxInfo:
        h, w = int(src_hw[0]), int(src_hw[1])
        if pitch < w * 3:
            raise InputError(f"row pitch {pitch} is smaller than a {w}-pixel BGR row ({w * 3} bytes)")
        info, scale_x, scale_y = geometry((h, w), self.dst_hw)
        (dh, dw), (nh, nw) = self.dst_hw, info.unpad_shape
        dst = int(dst_ptr) + int(batch_index) * self.item_bytes
        grid = ((dw + _BLOCK[0] - 1) // _BLOCK[0], (dh + _BLOCK[1] - 1) // _BLOCK[1])
        self._kernel.prepared_async_call(grid, _BLOCK, stream, src_ptr, h, w, pitch, dst, dh, dw,
                                         int(info.pad[1]), int(info.pad[0]), nh, nw, float(scale_x), float(scale_y))
        self._busy.record(stream)
        self._pending = True
        return info

    def wait(self) -> None:
        """Block until the last launched letterbox has finished."""
        if self._pending:
            self._busy.synchronize()
            self._pending = False

    def _free_staging(self) -> None:
        if self._dev is not None:
            self._dev.free()
            self._host.base.free()
        self._host = self._dev = None
        self._capacity = 0

    def close(self) -> None:
        with self._ctx:
            self.wait()
            self._free_staging()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CpuLetterbox:
    """The CPU fallback with GpuLetterbox's call signature: ``dst`` is a host (N, 3, H, W) array, not a pointer."""

    backend = "cpu"

    def __init__(self, dst_hw: int | Sequence[int], dtype="float32", reason: str | None = None):
        self.dst_hw = _hw(dst_hw)
        self.dtype = _dtype(dtype)
        self.reason = reason  # why the GPU one is not used, None when the CPU was asked for

    def __call__(self, frame: np.ndarray, dst: np.ndarray, batch_index: int = 0, stream=None) -> LetterboxInfo:
        frame = _check_frame(frame)
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


def make_letterboxer(dst_hw: int | Sequence[int], prefer_gpu: bool = True, dtype="float32", context=None):
    """A GpuLetterbox when pycuda, a GPU and kernel compilation work (and ``prefer_gpu``), else a CpuLetterbox.

    ``.backend`` says which ("gpu" / "cpu"); the CPU one's ``.reason`` says why the GPU one was not used.
    """
    if not prefer_gpu:
        return CpuLetterbox(dst_hw, dtype)
    try:
        return GpuLetterbox(dst_hw, dtype, context=context)
    except InputError:
        raise
    except Exception as exc:  # pycuda's errors derive from Exception only; any failure means "no GPU path"
        return CpuLetterbox(dst_hw, dtype, reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
