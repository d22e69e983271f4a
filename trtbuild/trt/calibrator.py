"""TensorRT 10.x implicit-INT8 calibrators (weak typing; TensorRT 11 has no calibrators).

Two modes, one class: ``table`` hands TensorRT the calibration table trtbuild already computed with ONNX
Runtime (header retargeted to the installed version), so no image is read on the device; ``calibrate``
feeds TensorRT's own entropy calibration with the same letterboxed batches (``CalibrationData``) through a
pycuda device buffer, and saves TensorRT's table as ``<name>.trt-calib.cache`` for the next build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import write_bytes_atomic
from ..errors import InputError
from ..precision.table import retarget_table


def trt_table_path(plan) -> Path:
    """Where TensorRT's own table from live calibration goes (never mixed with trtbuild's ORT table)."""
    return plan.calib_table.with_name(plan.calib_table.name.replace(".calib.cache", ".trt-calib.cache"))


def calibration_batches(images_dir: Path, imgsz: tuple[int, int], batch: int, num: int = 512):
    """The calibration images of ``images_dir`` as letterboxed float32 batches of exactly ``batch`` images."""
    from ..precision.calibrate import CalibrationData, select_images

    images, _ = select_images(images_dir, num, 0)
    images = images[: len(images) - len(images) % batch] or images[:batch]
    if len(images) < batch:
        raise InputError(f"{images_dir}: {len(images)} calibration image(s), fewer than the engine batch {batch}")
    return CalibrationData(images, imgsz, batch=batch, progress=True)


def make_calibrator(plan, trt_version: str, images_dir: Path = Path("calib_data")):
    """An ``IInt8EntropyCalibrator2`` for ``plan`` (mode ``plan.int8_source``: "table" or "calibrate")."""
    import tensorrt as trt

    shape = next(iter(plan.profiles.values()))[1]  # TensorRT calibrates at the profile's opt shape
    batch, hw = shape[0], tuple(shape[2:4])
    table = retarget_table(plan.calib_table, trt_version) if plan.int8_source == "table" else None
    cache_path = trt_table_path(plan) if plan.int8_source == "calibrate" else None
    if plan.int8_source == "calibrate":
        from ..runtime.cuda import require_pycuda

        # now, not in get_batch: TensorRT's bindings only print a callback's exception, and the build then fails
        # with "Calibration failure ... no scaling factors" instead of the install command
        require_pycuda()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = None
            self.device = None

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if table is not None:
                return None  # the table covers every tensor; TensorRT never asks when it reads it
            if self.batches is None:
                from ..runtime.cuda import CudaContext, require_pycuda

                self.cuda = require_pycuda()
                # pycuda allocates only with a context of its own current (TensorRT's is not pycuda's): device 0's
                # primary context, the one TensorRT builds on, pushed for each call
                self.ctx = CudaContext(0)
                self.batches = iter(calibration_batches(images_dir, hw, batch))
                with self.ctx:
                    self.device = self.cuda.mem_alloc(int(np.prod(shape)) * 4)
            data = next(self.batches, None) if self.device is not None else None
            if data is None:
                if self.device is not None:
                    with self.ctx:
                        self.device.free()
                    self.device = None
                    self.ctx.close()
                return None
            with self.ctx:
                self.cuda.memcpy_htod(self.device, np.ascontiguousarray(data, np.float32))
            return [int(self.device)]

        def read_calibration_cache(self):
            if table is not None:
                return table
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            if cache_path is not None:
                write_bytes_atomic(cache_path, bytes(cache))

    return Calibrator()
