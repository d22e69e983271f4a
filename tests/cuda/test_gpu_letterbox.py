"""The GPU letterbox: its NumPy twin (trtbuild.vision.reference) against the CPU letterbox on real photos, the CPU
fallback of make_letterboxer, and, with a GPU (``gpu`` marker), the CUDA kernel (trtbuild.cuda.letterbox) against
both on the same photos.
"""

from __future__ import annotations

import numpy as np
import pytest

from trtbuild.cuda.letterbox import make_letterboxer
from trtbuild.errors import DependencyMissingError
from trtbuild.vision import reference
from trtbuild.vision.letterbox import letterbox
from trtbuild.vision.reference import reference_letterbox

LEVEL = 1 / 255 + 1e-6  # one uint8 level: OpenCV's fixed-point bilinear vs float math
SHAPES = [640, (320, 480), (480, 320), (317, 641), 1280]


def any_photo(images: dict[str, np.ndarray], preferred: str) -> np.ndarray:
    return images.get(preferred, next(iter(images.values())))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_letterbox_matches_cpu_letterbox(images, shape):
    for name, img in images.items():
        ref, info = reference_letterbox(img, shape)
        cpu, cpu_info = letterbox(img, shape)
        assert info == cpu_info, name
        assert ref.shape == cpu.shape and ref.dtype == np.float32
        diff = np.abs(ref - cpu)
        assert diff.max() <= LEVEL, (name, diff.max() * 255)
        assert (diff == 0).mean() > 0.8, name  # off by one level only where OpenCV's fixed point rounds the other way


def test_reference_letterbox_odd_sizes():
    rng = np.random.default_rng(0)
    for h, w, shape in [(333, 517, 640), (7, 13, (320, 480)), (1, 1, 64), (1, 300, 96), (2000, 3, (256, 128))]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref, info = reference_letterbox(img, shape)
        cpu, cpu_info = letterbox(img, shape)
        assert info == cpu_info
        assert np.abs(ref - cpu).max() <= LEVEL, (h, w, shape)


def test_reference_tolerance_catches_wrong_sampling(images, monkeypatch):
    """The 1/255 bound is tight enough to reject corner-aligned sampling (no half-pixel centres)."""

    def corner_aligned(n_out, n_src, scale):
        f = np.arange(n_out, dtype=np.float32) * np.float32((n_src - 1) / max(n_out - 1, 1))
        s = np.minimum(np.floor(f).astype(np.int64), n_src - 1)
        return s, np.minimum(s + 1, n_src - 1), (f - s).astype(np.float32)

    monkeypatch.setattr(reference, "_taps", corner_aligned)
    img = any_photo(images, "bus.jpg")
    wrong, _ = reference_letterbox(img, 640)
    assert np.abs(wrong - letterbox(img, 640)[0]).max() > 3 * LEVEL


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cpu_letterboxer_writes_the_batch_slot(images, dtype):
    lb = make_letterboxer((320, 480), prefer_gpu=False, dtype=dtype)
    assert lb.backend == "cpu" and lb.reason is None
    dst = np.full((3, 3, 320, 480), -1, dtype)
    img = any_photo(images, "zidane.jpg")
    info = lb(img, dst, batch_index=1)
    cpu, cpu_info = letterbox(img, (320, 480))
    assert info == cpu_info
    np.testing.assert_array_equal(dst[1], cpu.astype(dtype))
    assert (dst[0] == -1).all() and (dst[2] == -1).all()


def test_make_letterboxer_falls_back_without_gpu():
    from trtbuild.cuda.context import require_pycuda

    try:
        require_pycuda()
    except DependencyMissingError as exc:
        lb = make_letterboxer(640)
        assert lb.backend == "cpu" and lb.reason == str(exc)
    else:
        pytest.skip("pycuda and a GPU are available here: the GPU letterboxer is tested below")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gpu_letterbox_matches_cpu_letterbox(ctx, images, dtype):
    from trtbuild.cuda.context import require_pycuda
    from trtbuild.cuda.letterbox import GpuLetterbox

    cuda = require_pycuda()
    slack = LEVEL if dtype == "float32" else LEVEL + 2.0**-11  # float16 rounding near 1.0
    for hw in [(640, 640), (320, 480), (317, 641)]:
        lb = GpuLetterbox(hw, dtype)
        host = np.empty((3, 3, *hw), dtype)
        with ctx:
            dst = cuda.mem_alloc(host.nbytes)
            stream = cuda.Stream()
            for i, (name, img) in enumerate(images.items()):
                cuda.memset_d8(dst, 0xAB, host.nbytes)
                info = lb(img, int(dst), batch_index=1, stream=stream if i % 2 else None)
                lb.wait()
                cuda.memcpy_dtoh(host, dst)
                cpu, cpu_info = letterbox(img, hw)
                ref, _ = reference_letterbox(img, hw)
                assert info == cpu_info, name
                raw = host.view(np.uint8).reshape(3, -1)
                assert (raw[0] == 0xAB).all() and (raw[2] == 0xAB).all(), f"{name}: wrote outside slot 1"
                got = host[1].astype(np.float32)
                assert np.abs(got - cpu).max() <= slack, (name, hw, np.abs(got - cpu).max() * 255)
                assert (host[1] == ref.astype(dtype)).mean() > 0.999, (name, hw)  # the same float math
            dst.free()
        lb.close()


@pytest.mark.gpu
def test_gpu_letterbox_from_a_pitched_device_frame(ctx, images):
    from trtbuild.cuda.context import require_pycuda
    from trtbuild.cuda.letterbox import GpuLetterbox

    cuda = require_pycuda()
    img = any_photo(images, "zidane.jpg")
    h, w = img.shape[:2]
    pitch = w * 3 + 128
    padded = np.zeros((h, pitch), np.uint8)
    padded[:, : w * 3] = img.reshape(h, -1)
    padded[:, w * 3 :] = 255  # garbage past each row that must not be read
    with GpuLetterbox(640) as lb, ctx:
        src, dst = cuda.mem_alloc(padded.nbytes), cuda.mem_alloc(2 * lb.item_bytes)
        cuda.memcpy_htod(src, padded)
        info = lb.launch(int(src), (h, w), pitch, int(dst), batch_index=1)
        lb.wait()
        host = np.empty((2, 3, 640, 640), np.float32)
        cuda.memcpy_dtoh(host, dst)
        src.free()
        dst.free()
    cpu, cpu_info = letterbox(img, 640)
    assert info == cpu_info
    assert np.abs(host[1] - cpu).max() <= LEVEL


@pytest.mark.gpu
def test_make_letterboxer_picks_the_gpu():
    lb = make_letterboxer(640)
    assert lb.backend == "gpu", getattr(lb, "reason", None)
    lb.close()
