"""Figures for trtbuild's pycuda layer on a GPU, each as a ratio against a baseline measured in the same run.

    python bench/gpu_runtime.py [--out FILE.json] [--mib 64] [--runs 30] [--calls 300]

1. Copies. The target reads "pinned H2D/D2H >= 85 % of the copy bandwidth a plain device copy benchmark reaches
   on the same machine". Interpreted as CUDA's bandwidthTest does it: a synchronous cuMemcpyHtoD / cuMemcpyDtoH
   of one page-locked buffer, issued directly with pycuda and timed with CUDA events; Executor's asynchronous
   stage copies (same size, CUDA-event stage times) are compared with it. Also reported, without a target:
   pageable copies, a device-to-device copy (HBM, far above PCIe; bytes moved once) and the PCIe link's
   theoretical rate from sysfs (link speed x width, 128b/130b coding).
2. GPU letterbox of a 1920x1080 frame to 640x640 vs the CPU letterbox (trtbuild.vision.letterbox, OpenCV with
   its default threads): kernel only (frame already on the device, CUDA events) and with the upload (host
   staging copy + H2D + kernel, wall clock). Target >= 20x.
3. Host overhead per Executor.run (default timing=True, and timing=False) vs the bare pycuda sequence doing the
   same work (stage the input in pinned memory, H2D, one kernel, D2H, synchronize): target <= 50 us.
4. CUDA graph replay vs individual launches of the same sequence (H2D, 20 kernels, D2H): host launch overhead
   (time to submit the work) at least halved; end-to-end call times also reported.
"""

from __future__ import annotations

import argparse
import glob
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KERNEL = r"""
extern "C" __global__ void affine(const float *x, float *y, int n, float a, float b)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] * a + b;
}
"""
TARGET_COPY = 0.85
TARGET_LETTERBOX = 20.0
TARGET_OVERHEAD_US = 50.0
TARGET_GRAPH = 0.5
GRAPH_LAUNCHES = 20


def median_s(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def event_ms(cuda, fn, runs: int, stream=None, warmup: int = 2) -> float:
    """Median GPU milliseconds of ``fn()``'s work, between two events on ``stream``."""
    start, end = cuda.Event(), cuda.Event()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        times.append(end.time_since(start))
    return statistics.median(times)


def free(*buffers) -> None:
    """Free pycuda device allocations and page-locked arrays (context current)."""
    for b in buffers:
        (b.base if isinstance(b, np.ndarray) else b).free()


def pcie_theoretical_gbs(bus_id: str) -> tuple[float | None, str]:
    """Per-direction PCIe bandwidth from /sys (no nvidia-smi): GT/s x lanes x coding / 8."""
    for path in glob.glob(f"/sys/bus/pci/devices/{bus_id.lower()}") + glob.glob(
        f"/sys/bus/pci/devices/*{bus_id.lower()[-7:]}"
    ):
        try:
            speed = Path(path, "current_link_speed").read_text().split()[0]
            width = int(Path(path, "current_link_width").read_text().strip())
        except (OSError, ValueError, IndexError):
            continue
        gts = float(speed)
        coding = 128 / 130 if gts >= 8 else 0.8
        return gts * width * coding / 8, f"PCIe {gts:g} GT/s x{width}"
    return None, "PCIe link not readable from /sys"


def bench_copies(cuda, ctx, mib: int, runs: int) -> dict:
    from trtbuild.cuda.executor import Executor
    from trtbuild.cuda.plan import plan_buffers
    from trtbuild.iospec import IOSpec

    nbytes = mib << 20
    with ctx:
        pinned = cuda.pagelocked_empty(nbytes, np.uint8)
        pinned[:] = 7
        pageable = np.full(nbytes, 7, np.uint8)
        dev, dev2 = cuda.mem_alloc(nbytes), cuda.mem_alloc(nbytes)
        gbs = lambda ms: nbytes / ms / 1e6  # noqa: E731
        out = {
            "bytes": nbytes,
            "bare_pinned_h2d_gbs": gbs(event_ms(cuda, lambda: cuda.memcpy_htod(dev, pinned), runs)),
            "bare_pinned_d2h_gbs": gbs(event_ms(cuda, lambda: cuda.memcpy_dtoh(pinned, dev), runs)),
            "pageable_h2d_gbs": gbs(event_ms(cuda, lambda: cuda.memcpy_htod(dev, pageable), runs)),
            "pageable_d2h_gbs": gbs(event_ms(cuda, lambda: cuda.memcpy_dtoh(pageable, dev), runs)),
            "d2d_gbs": gbs(event_ms(cuda, lambda: cuda.memcpy_dtod(dev2, dev, nbytes), runs)),
        }
        free(pinned, dev, dev2)
        bus_id = cuda.Device(ctx.device).pci_bus_id()
    plan = plan_buffers([IOSpec("x", (nbytes,), "uint8")], [IOSpec("y", (nbytes,), "uint8")], {})
    with Executor(plan, lambda stream, buffers: None) as ex:
        h2d, d2h = [], []
        for i in range(runs + 2):
            ex.run()
            if i >= 2:
                times = ex.last_times()
                h2d.append(times["h2d"])
                d2h.append(times["d2h"])
    out["executor_h2d_gbs"] = gbs(statistics.median(h2d))
    out["executor_d2h_gbs"] = gbs(statistics.median(d2h))
    out["pcie_theoretical_gbs"], out["pcie_link"] = pcie_theoretical_gbs(bus_id)
    return out


def test_frame() -> np.ndarray:
    import cv2

    try:
        from skimage import data

        rgb = data.coffee()
        src = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except ImportError:
        src = np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    return cv2.resize(src, (1920, 1080), interpolation=cv2.INTER_LINEAR)


def bench_letterbox(cuda, ctx, runs: int) -> dict:
    import cv2

    from trtbuild.cuda.letterbox import GpuLetterbox
    from trtbuild.vision.letterbox import letterbox, letterbox_batch

    frame = test_frame()
    h, w = frame.shape[:2]
    cpu_out = np.empty((1, 3, 640, 640), np.float32)
    cpu_ms = median_s(lambda: letterbox_batch([frame], 640, out=cpu_out), runs) * 1e3
    with GpuLetterbox(640) as lb, ctx:
        dst, src = cuda.mem_alloc(lb.item_bytes), cuda.mem_alloc(frame.nbytes)
        cuda.memcpy_htod(src, frame)
        kernel_ms = event_ms(cuda, lambda: lb.launch(int(src), (h, w), w * 3, int(dst)), runs)

        def upload_and_kernel():
            lb(frame, int(dst))
            lb.wait()

        upload_ms = median_s(upload_and_kernel, runs) * 1e3
        got = np.empty((3, 640, 640), np.float32)
        cuda.memcpy_dtoh(got, dst)
        free(src, dst)
    max_diff = float(np.abs(got - letterbox(frame, 640)[0]).max() * 255)
    return {"frame": [h, w], "cv2_threads": cv2.getNumThreads(), "cpu_ms": cpu_ms, "gpu_kernel_ms": kernel_ms,
            "gpu_with_upload_ms": upload_ms, "speedup_kernel": cpu_ms / kernel_ms,
            "speedup_with_upload": cpu_ms / upload_ms, "max_diff_levels": max_diff}


def bench_overhead(cuda, ctx, kernel, calls: int, rounds: int = 7) -> dict:
    from trtbuild.cuda.executor import Executor
    from trtbuild.cuda.plan import plan_buffers
    from trtbuild.iospec import IOSpec

    n = 1024
    grid, block = ((n + 255) // 256, 1), (256, 1, 1)
    x = np.arange(n, dtype=np.float32)
    plan = plan_buffers([IOSpec("x", (n,), "float32")], [IOSpec("y", (n,), "float32")], {})

    def enqueue(stream, buffers):
        kernel.prepared_async_call(grid, block, stream, buffers.device_ptr("x"), buffers.device_ptr("y"), n, 2.0, 1.0)

    with ctx:
        hx, hy = cuda.pagelocked_empty(n, np.float32), cuda.pagelocked_empty(n, np.float32)
        dx, dy = cuda.mem_alloc(hx.nbytes), cuda.mem_alloc(hy.nbytes)
        px, py = int(dx), int(dy)
        stream = cuda.Stream(1)

    def bare():
        np.copyto(hx, x)
        cuda.memcpy_htod_async(dx, hx, stream)
        kernel.prepared_async_call(grid, block, stream, px, py, n, 2.0, 1.0)
        cuda.memcpy_dtoh_async(hy, dy, stream)
        stream.synchronize()

    out = {}
    with Executor(plan, enqueue) as timed, Executor(plan, enqueue, timing=False) as untimed:
        assert np.array_equal(timed.run({"x": x})["y"], x * 2 + 1)
        bare_s, timed_s, untimed_s = [], [], []
        for _ in range(rounds):  # interleaved rounds: machine noise hits all three alike
            with ctx:
                bare_s.append(median_s(bare, calls))
            timed_s.append(median_s(lambda: timed.run({"x": x}), calls))
            untimed_s.append(median_s(lambda: untimed.run({"x": x}), calls))
    with ctx:
        free(hx, hy, dx, dy)
    out["bare_us"] = statistics.median(bare_s) * 1e6
    out["executor_us"] = statistics.median(timed_s) * 1e6
    out["executor_no_timing_us"] = statistics.median(untimed_s) * 1e6
    out["overhead_us"] = out["executor_us"] - out["bare_us"]
    out["overhead_no_timing_us"] = out["executor_no_timing_us"] - out["bare_us"]
    return out


def bench_graph(cuda, ctx, kernel, calls: int, rounds: int = 7) -> dict:
    from trtbuild.cuda.driver import CudaGraph

    n = 1024
    grid, block = ((n + 255) // 256, 1), (256, 1, 1)
    with ctx:
        hx, hy = cuda.pagelocked_empty(n, np.float32), cuda.pagelocked_empty(n, np.float32)
        hx[:] = np.arange(n, dtype=np.float32)
        dx, dy = cuda.mem_alloc(hx.nbytes), cuda.mem_alloc(hy.nbytes)
        px, py = int(dx), int(dy)
        stream = cuda.Stream(1)

        def submit():
            cuda.memcpy_htod_async(dx, hx, stream)
            kernel.prepared_async_call(grid, block, stream, px, py, n, 2.0, 1.0)
            for _ in range(GRAPH_LAUNCHES - 1):
                kernel.prepared_async_call(grid, block, stream, py, py, n, 1.0, 0.0)
            cuda.memcpy_dtoh_async(hy, dy, stream)

        submit()
        stream.synchronize()
        eager = hy.copy()
        graph = CudaGraph(stream, submit)
        hy[:] = 0
        graph.launch(stream)
        stream.synchronize()
        assert np.array_equal(hy, eager) and np.array_equal(eager, hx * 2 + 1), "graph replay differs"

        def timed_submit(fn):
            def one():
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                stream.synchronize()
                return t1 - t0, time.perf_counter() - t0

            for _ in range(5):
                one()
            samples = [one() for _ in range(calls)]
            return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)

        eager_sub, eager_e2e, graph_sub, graph_e2e = [], [], [], []
        for _ in range(rounds):
            for fn, sub, e2e in ((submit, eager_sub, eager_e2e), (lambda: graph.launch(stream), graph_sub, graph_e2e)):
                s, e = timed_submit(fn)
                sub.append(s)
                e2e.append(e)
        graph.close()
        free(hx, hy, dx, dy)
    med = lambda v: statistics.median(v) * 1e6  # noqa: E731
    return {"launches": GRAPH_LAUNCHES, "eager_submit_us": med(eager_sub), "graph_submit_us": med(graph_sub),
            "eager_call_us": med(eager_e2e), "graph_call_us": med(graph_e2e),
            "submit_ratio": med(graph_sub) / med(eager_sub), "call_ratio": med(graph_e2e) / med(eager_e2e)}


def copy_rows(c: dict) -> list[tuple]:
    rows = []
    for way in ("h2d", "d2h"):
        ex, bare, pageable = c[f"executor_{way}_gbs"], c[f"bare_pinned_{way}_gbs"], c[f"pageable_{way}_gbs"]
        rows.append((f"pinned {way.upper()} (Executor)", ex, "GB/s", bare, ex / bare, f">= {TARGET_COPY:.0%} of bare",
                     ex >= TARGET_COPY * bare))
        rows.append((f"pageable {way.upper()} (info)", pageable, "GB/s", bare, pageable / bare, "-", None))
    rows.append(("device-to-device copy (info)", c["d2d_gbs"], "GB/s", None, None, "-", None))
    if c["pcie_theoretical_gbs"]:
        rows.append((f"pinned H2D vs {c['pcie_link']} (info)", c["executor_h2d_gbs"], "GB/s",
                     c["pcie_theoretical_gbs"], c["executor_h2d_gbs"] / c["pcie_theoretical_gbs"], "-", None))
    return rows


def letterbox_rows(lbx: dict) -> list[tuple]:
    return [
        ("GPU letterbox 1080p->640, kernel", lbx["gpu_kernel_ms"], "ms", lbx["cpu_ms"], lbx["speedup_kernel"],
         f">= {TARGET_LETTERBOX:g}x", lbx["speedup_kernel"] >= TARGET_LETTERBOX),
        ("GPU letterbox 1080p->640, with upload", lbx["gpu_with_upload_ms"], "ms", lbx["cpu_ms"],
         lbx["speedup_with_upload"], f">= {TARGET_LETTERBOX:g}x", lbx["speedup_with_upload"] >= TARGET_LETTERBOX),
    ]


def overhead_rows(ov: dict) -> list[tuple]:
    return [
        (f"Executor.run overhead (timing {mode})", ov[f"overhead{key}_us"], "us", ov["bare_us"],
         ov[f"executor{key}_us"] / ov["bare_us"], f"<= {TARGET_OVERHEAD_US:g} us",
         ov[f"overhead{key}_us"] <= TARGET_OVERHEAD_US)
        for mode, key in (("on", ""), ("off", "_no_timing"))
    ]


def graph_rows(g: dict) -> list[tuple]:
    return [
        (f"graph launch overhead ({g['launches']} kernels)", g["graph_submit_us"], "us", g["eager_submit_us"],
         g["submit_ratio"], f"<= {TARGET_GRAPH:g}x", g["submit_ratio"] <= TARGET_GRAPH),
        ("graph call end-to-end (info)", g["graph_call_us"], "us", g["eager_call_us"], g["call_ratio"], "-", None),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--mib", type=int, default=64, help="transfer size for the bandwidth figures (MiB)")
    ap.add_argument("--runs", type=int, default=30, help="timed repetitions per copy / letterbox figure")
    ap.add_argument("--calls", type=int, default=300, help="calls per round for the per-call overheads")
    args = ap.parse_args(argv)

    from trtbuild.cuda.context import default_context, require_pycuda
    from trtbuild.cuda.kernels import compile_module

    cuda = require_pycuda()
    ctx = default_context()
    kernel = compile_module(KERNEL, ctx, name="bench kernel").get_function("affine").prepare("PPiff")
    t0 = time.perf_counter()
    res = {"device": ctx.name, "compute_capability": list(ctx.compute_capability),
           "driver": cuda.get_driver_version(), "pycuda": _version("pycuda"), "python": sys.version.split()[0],
           "copy_baseline": "bandwidthTest-style synchronous cuMemcpyHtoD/DtoH of one page-locked buffer, issued "
                            "directly with pycuda and timed with CUDA events"}
    sections = [
        ("copies", lambda: bench_copies(cuda, ctx, args.mib, args.runs), copy_rows),
        ("letterbox", lambda: bench_letterbox(cuda, ctx, args.runs), letterbox_rows),
        ("overhead", lambda: bench_overhead(cuda, ctx, kernel, args.calls), overhead_rows),
        ("graph", lambda: bench_graph(cuda, ctx, kernel, args.calls), graph_rows),
    ]
    rows, failed = [], []  # rows: name, measured, unit, baseline, ratio, target text, passed
    for name, measure, to_rows in sections:
        try:
            res[name] = measure()
            rows += to_rows(res[name])
        except Exception as exc:  # keep the other figures; report this one as failed
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
    res["seconds"] = time.perf_counter() - t0

    print(f"{res['device']} (sm {ctx.compute_capability[0]}{ctx.compute_capability[1]}), driver {res['driver']}, "
          f"pycuda {res['pycuda']}; copies of {args.mib} MiB")
    print(f"copy baseline: {res['copy_baseline']}")
    lbx = res["letterbox"]
    if "error" not in lbx:
        print(f"letterbox: CPU with {lbx['cv2_threads']} OpenCV threads; GPU result within "
              f"{lbx['max_diff_levels']:.0f} uint8 level(s) of the CPU's")
    header = f"{'figure':44} {'measured':>14} {'baseline':>14} {'ratio':>7}  {'target':18} result"
    print(header + "\n" + "-" * len(header))
    for name, value, unit, base, ratio, target, ok in rows:
        base_s = f"{base:9.2f} {unit:>4}" if base is not None else f"{'-':>14}"
        ratio_s = f"{ratio:7.3f}" if ratio is not None else f"{'-':>7}"
        verdict = "-" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:44} {value:9.2f} {unit:>4} {base_s} {ratio_s}  {target:18} {verdict}")
    for name in failed:
        print(f"{name}: FAILED ({res[name]['error']})")
    res["table"] = [dict(zip(("figure", "measured", "unit", "baseline", "ratio", "target", "passed"), r))
                    for r in rows]
    print(f"({res['seconds']:.1f} s)")
    if args.out:
        from trtbuild.artifacts import write_json_atomic

        write_json_atomic(args.out, res)
        print(f"wrote {args.out}")
    return 1 if failed else 0


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
