"""Runtime buffer planning (pure Python): concrete shapes, profile errors and the grow-only buffer pool.

The I/O specs are those of real exports (read from the ONNX files with ONNX Runtime) where a model is involved;
the pool's growth sequence is checked number by number against its documented rule.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtbuild.cuda.plan import ALIGN, BufferPlan, BufferPool, TensorPlan, check_profile, plan_buffers
from trtbuild.errors import InputError
from trtbuild.iospec import IOSpec

IMAGES_DYN_B = IOSpec("images", (None, 3, 640, 640), "float32")
OUT_DYN_B = IOSpec("output0", ("batch", 84, 8400), "float32")
IMAGES_DYN_HW = IOSpec("images", (-1, 3, -1, -1), "float16")
OUT_DYN_HW = IOSpec("output0", (-1, 84, -1), "float16")
PROFILE_B = ((1, 3, 640, 640), (4, 3, 640, 640), (8, 3, 640, 640))
PROFILE_HW = ((1, 3, 320, 320), (2, 3, 640, 640), (4, 3, 960, 960))


def _anchors(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in (8, 16, 32))


def test_static_engine_from_real_export(exported_yolov8n):
    from trtbuild.runtime.onnx import OnnxRunner

    runner = OnnxRunner(exported_yolov8n)
    plan = plan_buffers(runner.input_specs, runner.output_specs, {})
    out = runner.infer(np.zeros((1, 3, 320, 320), np.float32))[0]
    assert [t.name for t in plan.tensors] == ["images", "output0"]
    assert plan["images"].shape == (1, 3, 320, 320) and plan["images"].is_input
    assert plan["output0"].shape == out.shape and not plan["output0"].is_input
    assert plan["output0"].nbytes == out.nbytes
    assert plan.total_bytes == 1 * 3 * 320 * 320 * 4 + out.nbytes
    assert [t.name for t in plan.inputs] == ["images"] and [t.name for t in plan.outputs] == ["output0"]
    # a static tensor may be listed in ``shapes`` when it agrees
    assert plan_buffers(runner.input_specs, runner.output_specs, {"images": (1, 3, 320, 320)}) == plan


def test_dynamic_batch():
    plan = plan_buffers([IMAGES_DYN_B], [OUT_DYN_B], {"images": (4, 3, 640, 640), "output0": (4, 84, 8400)},
                        {"images": PROFILE_B})
    assert plan["images"].shape == (4, 3, 640, 640)
    assert plan["images"].size == 4 * 3 * 640 * 640
    assert plan["output0"].nbytes == 4 * 84 * 8400 * 4
    assert isinstance(plan, BufferPlan) and isinstance(plan["output0"], TensorPlan)


def test_dynamic_hw():
    shapes = {"images": (2, 3, 384, 640), "output0": (2, 84, _anchors(384, 640))}
    plan = plan_buffers([IMAGES_DYN_HW], [OUT_DYN_HW], shapes, {"images": PROFILE_HW})
    assert plan["images"].shape == (2, 3, 384, 640) and plan["images"].dtype == "float16"
    assert plan["output0"].shape == (2, 84, 5040)
    assert plan["output0"].nbytes == 2 * 84 * 5040 * 2


@pytest.mark.parametrize(
    "shape, fix",
    [((16, 3, 640, 640), "rebuild with --max-batch 16"),
     ((1, 3, 1280, 640), "rebuild with --max-hw 1280,640"),
     ((1, 3, 256, 320), "rebuild with --min-hw 256,320")],
)
def test_out_of_profile_names_tensor_and_fix(shape, fix):
    profile = PROFILE_B if shape[0] == 16 else PROFILE_HW
    spec = IMAGES_DYN_B if shape[0] == 16 else IMAGES_DYN_HW
    with pytest.raises(InputError) as err:
        plan_buffers([spec], [], {"images": shape}, {"images": profile})
    msg = str(err.value)
    assert "'images'" in msg and fix in msg
    assert str(shape) in msg and str(profile[0]) in msg and str(profile[2]) in msg
    assert "\n" not in msg


def test_check_profile_bounds_inclusive_and_rank():
    check_profile("images", (1, 3, 640, 640), PROFILE_B)
    check_profile("images", (8, 3, 640, 640), PROFILE_B)
    with pytest.raises(InputError, match="--max-batch 9"):
        check_profile("images", (9, 3, 640, 640), PROFILE_B)
    with pytest.raises(InputError, match="--min-batch 2"):
        check_profile("images", (2, 3, 640, 640), ((4, 3, 640, 640),) * 3)
    with pytest.raises(InputError, match="3 dims"):
        check_profile("images", (1, 640, 640), PROFILE_B)


def test_missing_dynamic_shape():
    with pytest.raises(InputError, match="'output0'.*dynamic"):
        plan_buffers([IMAGES_DYN_B], [OUT_DYN_B], {"images": (2, 3, 640, 640)})
    with pytest.raises(InputError, match="'images'.*dynamic"):
        plan_buffers([IMAGES_DYN_B], [OUT_DYN_B], {})


def test_mismatching_static_dim():
    with pytest.raises(InputError, match="'images'.*axis 2"):
        plan_buffers([IMAGES_DYN_B], [], {"images": (2, 3, 320, 640)})
    static = IOSpec("images", (1, 3, 320, 320), "float32")
    with pytest.raises(InputError, match="axis 0"):
        plan_buffers([static], [], {"images": (2, 3, 320, 320)})
    with pytest.raises(InputError, match="dims"):
        plan_buffers([IMAGES_DYN_B], [], {"images": (2, 3, 640)})
    with pytest.raises(InputError, match="non-negative"):
        plan_buffers([IMAGES_DYN_B], [], {"images": (-1, 3, 640, 640)})
    with pytest.raises(InputError, match="non-empty"):  # an empty batch is below every profile
        plan_buffers([IMAGES_DYN_B], [], {"images": (0, 3, 640, 640)}, {"images": PROFILE_B})


@pytest.mark.parametrize("dtype, itemsize", [("float32", 4), ("float16", 2), ("int32", 4), ("int8", 1),
                                             ("bool", 1), (np.float16, 2), ("uint8", 1)])
def test_dtype_sizes(dtype, itemsize):
    plan = plan_buffers([IOSpec("x", (2, 5, 7), dtype)], [], {})
    assert plan["x"].dtype == np.dtype(dtype).name
    assert plan["x"].nbytes == 70 * itemsize


def test_unknown_dtype_is_an_input_error():
    with pytest.raises(InputError, match="'x'"):
        plan_buffers([IOSpec("x", (1,), "not-a-dtype")], [], {})


def _plan(batch: int, hw: int = 640) -> BufferPlan:
    a = _anchors(hw, hw)
    return plan_buffers([IMAGES_DYN_HW], [OUT_DYN_HW], {"images": (batch, 3, hw, hw), "output0": (batch, 84, a)})


def _round(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def test_pool_growth_sequence():
    pool = BufferPool(growth=1.5)
    p1, p2, p3 = _plan(1), _plan(2), _plan(3)
    first = pool.request(p1)
    assert first == {t.name: _round(t.nbytes) for t in p1.tensors}  # exactly the need, rounded
    assert pool.capacities == first
    assert pool.request(p1) == {}  # same shape: reuse
    # batch 2 needs twice the bytes, more than 1.5×: the need wins
    grown = pool.request(p2)
    assert grown == {t.name: _round(t.nbytes) for t in p2.tensors}
    # batch 3 needs 1.5× batch 2: ceil(old * 1.5) rounded
    grown = pool.request(p3)
    assert grown == {n: _round(max(p3[n].nbytes, math.ceil(c * 1.5))) for n, c in
                     {t.name: _round(t.nbytes) for t in p2.tensors}.items()}
    # shrinking reuses every buffer
    assert pool.request(p1) == {} and pool.request(p2) == {}
    assert pool.capacities == grown


def test_pool_growth_factor_beats_small_steps():
    spec = IOSpec("x", (-1, 1000), "float32")
    pool = BufferPool(growth=2.0)
    assert pool.request(plan_buffers([spec], [], {"x": (10, 1000)})) == {"x": 40192}  # 40000 → 157 × 256
    # 11 rows need 44000 bytes; growth gives ceil(40192 × 2) = 80384 (a multiple of 256 already)
    assert pool.request(plan_buffers([spec], [], {"x": (11, 1000)})) == {"x": 80384}
    assert pool.request(plan_buffers([spec], [], {"x": (20, 1000)})) == {}  # 80000 fits
    assert pool.capacities == {"x": 80384}


def test_pool_cap_at_max_bytes_and_preallocate_max():
    max_plan = _plan(4, 960)
    caps = max_plan.bytes_by_name()
    pool = BufferPool(growth=10.0, max_bytes=caps)
    pool.request(_plan(1, 640))
    grown = pool.request(_plan(2, 640))  # 10× growth would exceed the profile max: capped there
    assert grown == caps
    assert pool.request(max_plan) == {}  # the largest call of the profile fits
    fresh = BufferPool(max_bytes=caps)
    assert fresh.preallocate_max() == caps and fresh.capacities == caps
    assert fresh.preallocate_max() == {}  # nothing more to allocate
    assert fresh.request(_plan(3, 800)) == {}


def test_pool_never_allocates_zero_bytes_and_rejects_shrinking_growth():
    empty = plan_buffers([], [IOSpec("dets", (-1, 0, 6), "float32")], {"dets": (1, 0, 6)})
    assert BufferPool().request(empty) == {"dets": ALIGN}
    with pytest.raises(ValueError):
        BufferPool(growth=0.5)
