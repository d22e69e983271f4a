"""The pycuda layer (trtbuild.cuda: context, buffers, executor, CUDA graphs).

Without pycuda: the modules import and every GPU entry point raises DependencyMissingError (exit 3) with the
install hint. With a GPU (``gpu`` marker): a real CUDA kernel (y = x*2+1, with an optional clock64 busy loop)
stands in for the engine behind Executor. Timing assertions compare medians with generous margins; the figures
themselves are in bench/gpu_runtime.py. The GPU letterbox is tested in test_gpu_letterbox.py.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from trtbuild.cuda.letterbox import make_letterboxer
from trtbuild.cuda.plan import plan_buffers
from trtbuild.errors import DependencyMissingError, InputError
from trtbuild.iospec import IOSpec

AFFINE = r"""
extern "C" __global__ void affine(const float *x, float *y, int n, float a, float b, long long spin)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (spin > 0) {
        const long long t0 = clock64();
        while (clock64() - t0 < spin) { }
    }
    y[i] = x[i] * a + b;
}
"""


def vec_plan(n: int):
    """A model with one dynamic float32 vector in (x) and out (y)."""
    return plan_buffers([IOSpec("x", ("n",), "float32")], [IOSpec("y", ("n",), "float32")], {"x": (n,), "y": (n,)})


def expected(x: np.ndarray) -> np.ndarray:
    return x * np.float32(2) + np.float32(1)


# ---------------------------------------------------------------- CPU: runs everywhere
def test_modules_import_without_pycuda():
    code = (
        "import sys; sys.modules['pycuda'] = None\n"  # any `import pycuda...` now fails, as on a CPU-only host
        "import trtbuild.cuda.executor, trtbuild.cuda.letterbox, trtbuild.tasks.pipeline\n"
        "print('imported')"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    assert "imported" in out.stdout


def test_missing_pycuda_raises_dependency_error(monkeypatch):
    from trtbuild.cuda.context import CudaContext, require_pycuda
    from trtbuild.cuda.executor import Executor
    from trtbuild.cuda.letterbox import GpuLetterbox

    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    calls = {
        "require_pycuda": require_pycuda,
        "CudaContext": CudaContext,
        "Executor": lambda: Executor(vec_plan(4), lambda stream, buffers: None),
        "GpuLetterbox": lambda: GpuLetterbox(640),
    }
    for name, call in calls.items():
        with pytest.raises(DependencyMissingError) as info:
            call()
        assert info.value.exit_code == 3, name
        msg = str(info.value)
        assert "pycuda" in msg and "trtbuild[gpu]" in msg and "\n" not in msg, (name, msg)
    lb = make_letterboxer(640)
    assert lb.backend == "cpu" and "pycuda" in lb.reason


# ---------------------------------------------------------------- GPU
@pytest.fixture(scope="module")
def affine(ctx):
    from trtbuild.cuda.kernels import compile_module

    return compile_module(AFFINE, ctx, name="the test kernel").get_function("affine").prepare("PPiffq")


def make_enqueue(kernel, launches: int = 1, spin: dict | None = None):
    """The engine's stand-in: y = x*2+1 (+ a busy loop of spin["cycles"]), then launches-1 more y = y*1+0."""

    def enqueue(stream, buffers):
        n = buffers.plan["x"].size
        x, y = buffers.device_ptr("x"), buffers.device_ptr("y")
        grid, block = ((n + 255) // 256, 1), (256, 1, 1)
        kernel.prepared_async_call(grid, block, stream, x, y, n, 2.0, 1.0, int((spin or {}).get("cycles", 0)))
        for _ in range(launches - 1):
            kernel.prepared_async_call(grid, block, stream, y, y, n, 1.0, 0.0, 0)

    return enqueue


def median_call_s(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.mark.gpu
def test_cuda_context_properties_and_close(ctx, affine):
    from trtbuild.cuda.context import CudaContext, require_pycuda
    from trtbuild.cuda.executor import Executor
    from trtbuild.errors import TrtbuildError

    cuda = require_pycuda()
    c = CudaContext(0)
    assert c.name and len(c.compute_capability) == 2 and c.compute_capability >= (5, 0)
    assert isinstance(c.integrated, bool) and c.total_memory > 0
    assert c.handle == ctx.handle  # the one primary context of the device
    with c:
        cuda.mem_alloc(1 << 20).free()
    c.close()
    c.close()
    with pytest.raises(TrtbuildError, match="closed"):
        with c:
            pass
    with pytest.raises(InputError, match="does not exist"):
        CudaContext(cuda.Device.count())
    x = np.arange(64, dtype=np.float32)  # the shared default context still works after the release
    with Executor(vec_plan(x.size), make_enqueue(affine)) as ex:
        np.testing.assert_array_equal(ex.run({"x": x})["y"], expected(x))


@pytest.mark.gpu
def test_executor_runs_a_real_kernel(affine):
    from trtbuild.cuda.executor import Executor

    x = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    with Executor(vec_plan(x.size), make_enqueue(affine)) as ex:
        out = ex.run({"x": x})
        np.testing.assert_array_equal(out["y"], expected(x))
        kept = ex.run({"x": x}, copy=True)["y"]
        ex.run({"x": (-x).astype(np.float64)})  # same_kind cast into the float32 input buffer
        np.testing.assert_array_equal(kept, expected(x))  # a copy survives the next call
        np.testing.assert_array_equal(out["y"], expected(-x))  # a view shows the latest call
        ex.host("x")[:] = x  # write the pinned input directly, then run on it
        np.testing.assert_array_equal(ex.run()["y"], expected(x))
        with pytest.raises(InputError, match="set_plan"):
            ex.run({"x": x[:10]})
        with pytest.raises(InputError, match="missing"):
            ex.run({"z": x})
        assert ex.device_memory >= 2 * x.nbytes


@pytest.mark.gpu
def test_stage_events_positive_and_ordered(affine):
    from trtbuild.cuda.executor import Executor

    x = np.ones(16 << 20, np.float32)  # 64 MiB each way
    with Executor(vec_plan(x.size), make_enqueue(affine, spin={"cycles": 20_000})) as ex:
        ex.run({"x": x})
        t0 = time.perf_counter()
        ex.run({"x": x})
        wall_ms = (time.perf_counter() - t0) * 1e3
        times = ex.last_times()
    assert set(times) == {"h2d", "compute", "d2h", "total"}
    assert all(times[k] > 0 for k in ("h2d", "compute", "d2h")), times
    stages = times["h2d"] + times["compute"] + times["d2h"]
    assert abs(stages - times["total"]) <= 0.02 * times["total"] + 0.05, times
    assert times["total"] <= wall_ms * 1.05 + 0.1, (times, wall_ms)


@pytest.mark.gpu
def test_dynamic_shapes_grow_and_shrink_reuse(affine):
    from trtbuild.cuda.executor import Executor

    rng = np.random.default_rng(1)
    with Executor(vec_plan(1000), make_enqueue(affine)) as ex:
        caps, ptr = dict(ex.buffers.pool.capacities), ex.device_ptr("x")
        for n, grows in [(600, False), (5000, True), (3000, False), (5000, False), (20_000, True)]:
            grown = ex.set_plan(vec_plan(n))
            assert grown == ({"x", "y"} if grows else set()), n
            if not grows:
                assert ex.buffers.pool.capacities == caps and ex.device_ptr("x") == ptr, n
            caps, ptr = dict(ex.buffers.pool.capacities), ex.device_ptr("x")
            assert caps["x"] >= n * 4
            x = rng.standard_normal(n).astype(np.float32)
            y = ex.run({"x": x})["y"]
            assert y.shape == (n,)
            np.testing.assert_array_equal(y, expected(x))


@pytest.mark.gpu
def test_pinned_copies_beat_pageable(ctx, affine):
    from trtbuild.cuda.context import require_pycuda
    from trtbuild.cuda.executor import Executor

    cuda = require_pycuda()
    nbytes = 64 << 20
    pageable = np.ones(nbytes, np.uint8)
    with ctx:
        dev = cuda.mem_alloc(nbytes)
        cuda.memcpy_htod(dev, pageable)
        pageable_s = median_call_s(lambda: cuda.memcpy_htod(dev, pageable), 7)
        dev.free()
    with Executor(vec_plan(nbytes // 4), lambda stream, buffers: None) as ex:
        ex.run()
        h2d = []
        for _ in range(7):
            ex.run()
            h2d.append(ex.last_times()["h2d"])
    pinned_gbs, pageable_gbs = nbytes / statistics.median(h2d) / 1e6, nbytes / pageable_s / 1e9
    assert pinned_gbs > 1.2 * pageable_gbs, (pinned_gbs, pageable_gbs)


@pytest.mark.gpu
def test_pipelined_streams_overlap_copies_and_compute(affine):
    from trtbuild.cuda.executor import Executor

    rng = np.random.default_rng(2)
    n, k = 2 << 20, 12  # 8 MiB each way per batch
    batches = [{"x": rng.standard_normal(n).astype(np.float32)} for _ in range(k)]
    spin = {"cycles": 0}
    with Executor(vec_plan(n), make_enqueue(affine, spin=spin), streams=2) as ex:
        ex.run(batches[0])
        # Calibrate the busy loop so the kernel takes about as long as a call without it (staging + copies).
        per_call = median_call_s(lambda: ex.run(batches[0]), 5)
        spin["cycles"] = probe = 50_000
        ex.run(batches[0])
        spin["cycles"] = max(1000, int(probe * per_call * 1e3 / ex.last_times()["compute"]))
        ex.run(batches[0])
        assert ex.last_times()["compute"] > 0.5 * per_call * 1e3

        results = list(ex.run_pipelined(batches[:5]))
        for batch, out in zip(batches, results):
            np.testing.assert_array_equal(out["y"], expected(batch["x"]))
        assert len(results) == 5

        def serial():
            for b in batches:
                ex.run(b)

        def pipelined():
            for _ in ex.run_pipelined(batches, copy=False):
                pass

        serial(), pipelined()
        serial_s = statistics.median([median_call_s(serial, 1) for _ in range(3)])
        pipelined_s = statistics.median([median_call_s(pipelined, 1) for _ in range(3)])
    assert pipelined_s < 0.8 * serial_s, (pipelined_s, serial_s)


@pytest.mark.gpu
def test_graph_replay_same_outputs_less_host_time(affine):
    from trtbuild.cuda.executor import Executor

    x = np.random.default_rng(3).standard_normal(4096).astype(np.float32)
    with Executor(vec_plan(x.size), make_enqueue(affine, launches=8), timing=False) as ex:
        eager = ex.run({"x": x}, copy=True)["y"]
        replay = ex.run({"x": x}, copy=True, use_graph=True)["y"]
        np.testing.assert_array_equal(eager, expected(x))
        np.testing.assert_array_equal(replay, eager)
        np.testing.assert_array_equal(ex.run({"x": -x}, use_graph=True)["y"], expected(-x))  # new inputs replayed
        eager_s, graph_s = [], []
        for _ in range(5):
            eager_s.append(median_call_s(lambda: ex.run({"x": x}), 100))
            graph_s.append(median_call_s(lambda: ex.run({"x": x}, use_graph=True), 100))
        # A new plan drops the graph; the next graph run captures again at the new size.
        ex.set_plan(vec_plan(1000))
        np.testing.assert_array_equal(ex.run({"x": x[:1000]}, use_graph=True)["y"], expected(x[:1000]))
    assert statistics.median(graph_s) < 0.9 * statistics.median(eager_s), (graph_s, eager_s)


@pytest.mark.gpu
def test_graph_timing_reports_the_replay(affine):
    from trtbuild.cuda.executor import Executor

    x = np.ones(1 << 20, np.float32)
    with Executor(vec_plan(x.size), make_enqueue(affine), use_graph=True) as ex:
        np.testing.assert_array_equal(ex.run({"x": x})["y"], expected(x))
        times = ex.last_times()
    assert set(times) == {"graph", "total"} and times["graph"] > 0


@pytest.mark.gpu
def test_mapped_buffers_need_no_copies(affine):
    from trtbuild.cuda.executor import Executor

    x = np.random.default_rng(4).standard_normal(10_000).astype(np.float32)
    with Executor(vec_plan(x.size), make_enqueue(affine), mapped=True) as ex:
        assert ex.device_memory == 0
        np.testing.assert_array_equal(ex.run({"x": x})["y"], expected(x))
        assert ex.last_times()["h2d"] < 0.05  # nothing copied: two back-to-back events


@pytest.mark.gpu
def test_executor_in_its_own_thread(affine):
    from trtbuild.cuda.context import default_context
    from trtbuild.cuda.executor import Executor
    from trtbuild.cuda.kernels import compile_module

    x = np.arange(1000, dtype=np.float32)
    result = {}

    def worker():
        try:
            kernel = compile_module(AFFINE, default_context(), name="test kernel").get_function("affine")
            with Executor(vec_plan(x.size), make_enqueue(kernel.prepare("PPiffq"))) as ex:
                result["y"] = ex.run({"x": x}, copy=True)["y"]
        except BaseException as exc:  # reported in the main thread
            result["error"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert "error" not in result, result.get("error")
    np.testing.assert_array_equal(result["y"], expected(x))
