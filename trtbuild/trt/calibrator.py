"""TensorRT 10.x implicit-INT8 calibrators (weak typing; TensorRT 11 has no calibrators).

Two modes, one class: ``table`` hands TensorRT the calibration table trtbuild already computed with ONNX
Runtime (header retargeted to the installed version), so no image is read on the device; ``calibrate``
feeds TensorRT's own entropy calibration with the same letterboxed batches (``CalibrationData``) through one
device buffer (``cuda.buffers.DeviceUpload``), and saves TensorRT's table as ``<name>.trt-calib.cache``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import write_bytes_atomic
from ..config import DEFAULT_CALIB
from ..cuda.buffers import DeviceUpload
from ..cuda.context import CudaContext, require_pycuda
from ..errors import InputError
from ..layout import Layout
from ..data.images import select_images
from ..stages.precision.ranges import CalibrationData
from ..stages.precision.table import retarget_table
from ..vision.batch import full_batches
from .buildspec import BuildPlan


def trt_table_path(plan: BuildPlan) -> Path:
    """Where TensorRT's own table from live calibration goes (never mixed with trtbuild's ORT table)."""
    return Layout.of(plan.build_input or plan.source).trt_calib_table


def calibration_batches(images_dir: Path, imgsz: tuple[int, int], batch: int, num: int = 512) -> CalibrationData:
    """The calibration images of ``images_dir`` as letterboxed float32 batches of exactly ``batch`` images
    (TensorRT's calibrator takes exactly the engine batch per call: the remainder is dropped)."""
    images, _ = select_images(images_dir, num, 0)
    try:
        images = full_batches(images, batch)
    except InputError:
        raise InputError(f"{images_dir}: {len(images)} calibration image(s), fewer than the engine batch {batch}",
                         param="calib_images") from None
    return CalibrationData(images, imgsz, batch=batch, progress=True)


def make_calibrator(plan: BuildPlan, trt_version: str, images_dir: Path = DEFAULT_CALIB):
    """An ``IInt8EntropyCalibrator2`` for ``plan`` (mode ``plan.int8_source``: "table" or "calibrate")."""
    import tensorrt as trt

    shape = next(iter(plan.profiles.values()))[1]  # TensorRT calibrates at the profile's opt shape
    batch, hw = shape[0], tuple(shape[2:4])
    table = retarget_table(plan.calib_table, trt_version) if plan.int8_source == "table" else None
    cache_path = trt_table_path(plan) if plan.int8_source == "calibrate" else None
    if plan.int8_source == "calibrate":
        # now, not in get_batch: TensorRT's bindings only print a callback's exception, and the build then fails
        # with "Calibration failure ... no scaling factors" instead of the install command
        require_pycuda()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = None
            self.device: DeviceUpload | None = None

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if table is not None:
                return None  # the table covers every tensor; TensorRT never asks when it reads it
            if self.batches is None:
                # pycuda allocates only with a context of its own current (TensorRT's is not pycuda's): device 0's
                # primary context, the one TensorRT builds on, pushed for each call
                self.ctx = CudaContext(0)
                self.batches = iter(calibration_batches(images_dir, hw, batch))
                self.device = DeviceUpload(self.ctx, int(np.prod(shape)) * 4)
            data = next(self.batches, None) if self.device is not None else None
            if data is None:
                if self.device is not None:
                    self.device.free()
                    self.device = None
                    self.ctx.close()
                return None
            return [self.device.upload(np.asarray(data, np.float32))]

        def read_calibration_cache(self):
            if table is not None:
                return table
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            if cache_path is not None:
                write_bytes_atomic(cache_path, bytes(cache))

    return Calibrator()
