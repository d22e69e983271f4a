"""Letterbox on the GPU: one CUDA kernel (``letterbox.cu``) from a uint8 BGR frame to the engine's input buffer.

The kernel writes float32 or float16 straight into a device pointer (the engine input at a batch index), so a frame
costs one small upload plus one kernel instead of the CPU letterbox and a float32 upload four times larger. Its
arithmetic, in NumPy, and the CPU stand-in are in :mod:`trtbuild.vision.reference`.

``make_letterboxer`` returns the GPU letterboxer where pycuda, a GPU and nvcc work, else a CPU one with the
same call signature writing into a host batch array.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..vision.letterbox import LetterboxInfo, check_image
from ..vision.reference import CpuLetterbox, as_hw, geometry, output_dtype
from .context import default_context, require_pycuda
from .kernels import compile_module

KERNEL_SOURCE = Path(__file__).with_name("letterbox.cu")
_BLOCK = (32, 8, 1)
_ARG_FORMAT = "PiiiPiiiiiiff"  # src, src_h, src_w, src_pitch, dst, dst_h, dst_w, top, left, nh, nw, sx, sy
_KERNELS = {"float32": "letterbox_f32", "float16": "letterbox_f16"}


class GpuLetterbox:
    """Letterbox frames on the GPU into a device buffer of shape (N, 3, H, W) at ``dst_hw`` and ``dtype``.

    Frames are staged through one reusable pinned buffer and one device buffer, grown when a bigger frame
    arrives. Calls are asynchronous on ``stream``: the next call waits for the previous one's kernel before it
    reuses the staging buffers. Use it in the thread that created it (see trtbuild.cuda.context).
    """

    backend = "gpu"

    def __init__(self, dst_hw: int | Sequence[int], dtype="float32", context=None):
        self._cuda = cuda = require_pycuda()
        self.dst_hw = as_hw(dst_hw)
        self.dtype = output_dtype(dtype)
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
        frame = check_image(frame)
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
