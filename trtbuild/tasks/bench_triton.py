"""``trtbuild bench --triton URL MODEL``: a served ensemble under load, reported like a local benchmark.

For each concurrency level, that many client threads (each with its own connection) send ``requests`` requests of
``batch`` images each, as fast as the answers come, cycling through the images' own encoded bytes (what a camera
or an app sends). Latency is the client's round trip per request; throughput is images over the wall-clock time
of the level. The server's statistics, read before and after each level, give the stage split (mean ms per
request in the preprocess, detector and postprocess models; *other* is the rest of the round trip: network,
queueing, the ensemble) and the histogram of the batch sizes Triton's dynamic batcher formed for the detector.
The first level is the baseline the others' throughput is compared with.

A request the server refuses counts as an error and the run goes on; a server that stops answering ends the run
with one ``ServerGoneError`` saying how far it got.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..console import progress_bar
from ..errors import InputError, ServerError, ServerGoneError, TrtbuildError
from ..serve.triton_client import TritonClient
from ..serve.triton_config import POST, PRE
from .bench import STAGES, host_facts, latency_stats, load_frames


def _delta(after: dict, before: dict) -> dict:
    out = {k: after[k] - before[k] for k in ("requests", "failures", "executions", "compute_ns", "queue_ns")}
    out["batches"] = {b: n - before["batches"].get(b, 0) for b, n in after["batches"].items()
                      if n - before["batches"].get(b, 0) > 0}
    return out


def _server_stats(client: TritonClient) -> dict:
    return {key: client.statistics(name) for key, name in
            (("preprocess", client.detector + PRE), ("detector", client.detector),
             ("postprocess", client.detector + POST), ("ensemble", client.model))}


def _level(url: str, model: str, concurrency: int, requests: int, warmup: int, batch: int,
           blobs: list[bytes], probe: TritonClient, progress: bool) -> dict:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    fatal: list[TrtbuildError] = []
    stop = threading.Event()
    ready, go = threading.Barrier(concurrency + 1), threading.Barrier(concurrency + 1)
    lock = threading.Lock()
    bar = progress_bar(total=concurrency * requests, desc=f"triton c={concurrency}", unit="req", leave=False,
               disable=not progress)

    def fail(exc: TrtbuildError) -> None:
        with lock:
            fatal.append(exc)
        stop.set()
        ready.abort()
        go.abort()

    def worker(i: int) -> None:
        client = None
        try:
            client = TritonClient(url, model)  # made in its thread: an HTTP client is bound to the thread's event loop
            for j in range(warmup):  # untimed, before the statistics window opens
                client.detect([blobs[(i + j + k) % len(blobs)] for k in range(batch)])
            ready.wait()
            go.wait()
            for j in range(requests):
                if stop.is_set():
                    return
                payload = [blobs[(i * requests + j * batch + k) % len(blobs)] for k in range(batch)]
                t0 = time.perf_counter()
                try:
                    client.detect(payload)
                except ServerGoneError:
                    raise
                except ServerError as exc:  # refused: counted, the load goes on
                    with lock:
                        errors.append(str(exc))
                else:
                    latencies[i].append((time.perf_counter() - t0) * 1000)
                with lock:
                    bar.update()
        except threading.BrokenBarrierError:
            pass
        except TrtbuildError as exc:
            fail(exc)
        except Exception as exc:  # noqa: BLE001 - a client library failure must end the run with a message
            fail(ServerError(f"{url}: the client failed ({type(exc).__name__}: {exc})"))
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        ready.wait()
        before = _server_stats(probe)
        go.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    bar.close()
    done = sum(len(x) for x in latencies) + len(errors)
    if fatal:
        exc = fatal[0]
        if isinstance(exc, ServerGoneError) and done:
            raise ServerGoneError(f"{exc}; the server stopped answering after {done} of {concurrency * requests} "
                                  f"requests at concurrency {concurrency}") from None
        raise exc
    server = {k: _delta(v, before[k]) for k, v in _server_stats(probe).items()}
    lat = [x for per in latencies for x in per]
    if not lat:
        raise ServerError(f"{url}: every request failed at concurrency {concurrency}: {errors[0] if errors else '?'}")
    served = max(server["ensemble"]["requests"], 1)
    per_request = {k: server[k]["compute_ns"] / 1e6 / served for k in ("preprocess", "detector", "postprocess")}
    mean = float(np.mean(lat))
    stages = {s: [0.0] for s in STAGES}
    stages["preprocess"], stages["compute"] = [per_request["preprocess"]], [per_request["detector"]]
    stages["postprocess"] = [per_request["postprocess"]]
    stages["other"] = [max(0.0, mean - sum(per_request.values()))]
    res = {"batch": batch, "status": "ok", **latency_stats(lat, stages, batch), "stage_source": "server",
           "device_memory_bytes": None, "device_memory": "n/a"}
    res.update(throughput_ips=round(batch * len(lat) / wall, 3) if wall > 0 else None,
               throughput_rps=round(len(lat) / wall, 3) if wall > 0 else None, wall_seconds=round(wall, 3),
               concurrency=concurrency, requests=done, errors=len(errors), error_examples=errors[:3],
               batch_histogram={str(b): n for b, n in server["detector"]["batches"].items()},
               server=server)
    return res


def run_bench_triton(url: str, model: str, concurrency: Sequence[int] = (1, 8), requests: int = 50,
                     warmup: int = 2, batch: int = 1, images: str | Path | None = None,
                     progress: bool = False) -> dict:
    """Load-test the ensemble of ``model`` at ``url`` at each ``concurrency``; returns the bench report dict."""
    if requests < 1 or warmup < 0 or batch < 1:
        raise InputError(f"requests={requests} / warmup={warmup} / batch={batch}: need requests ≥ 1, warmup ≥ 0 "
                         "and batch ≥ 1", param="requests")
    if not concurrency or min(concurrency) < 1:
        raise InputError(f"concurrency={list(concurrency)}: give positive client counts, e.g. 1,8",
                         param="concurrency")
    paths, _ = load_frames(Path(images) if images is not None else None)  # only the images that decode
    blobs = [p.read_bytes() for p in paths]
    with TritonClient(url, model) as probe:
        if batch > probe.max_batch:
            raise InputError(f"batch={batch}: the server takes at most {probe.max_batch} images per request",
                             param="batch")
        entries = []
        for c in concurrency:
            res = _level(url, model, c, requests, warmup, batch, blobs, probe, progress)
            entries.append({"label": f"{probe.model} c={c}", "path": probe.url, "bytes": None,
                            "backend": f"triton {probe.endpoint.protocol}", "input": {"name": "image",
                            "shape": [batch, 1], "dtype": "bytes"}, "static_batch": None,
                            "imgsz": list(probe.imgsz), "end2end": True, "notes": [], "results": [res]})
        settings = {"batches": [batch], "warmup": warmup, "iters": requests, "conf": probe.conf, "iou": probe.iou,
                    "imgsz": list(probe.imgsz), "images": [str(p) for p in paths], "url": probe.url,
                    "model": probe.model, "concurrency": list(concurrency)}
    base = entries[0]["results"][0]
    ratios = []
    for e in entries[1:]:
        r = e["results"][0]
        x = r["throughput_ips"] / base["throughput_ips"]
        ratios.append({"model": e["label"], "baseline": entries[0]["label"], "batch": batch, "speedup": round(x, 4),
                       "text": f"{e['label']}: {x:.2f}× the throughput of {entries[0]['label']} "
                               f"(p50 {r['latency_ms']['p50']:.1f} ms vs {base['latency_ms']['p50']:.1f} ms)"})
    return {"stage": "bench", "version": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": host_facts(), "settings": settings, "models": entries, "ratios": ratios, "triton": True}


def batch_histogram_text(result: dict) -> list[str]:
    """One line per level: requests, errors, wall-clock throughput and the detector's batch-size histogram."""
    lines = []
    for e in result["models"]:
        r = e["results"][0]
        hist = Counter({int(b): n for b, n in r["batch_histogram"].items()})
        shown = ", ".join(f"{b}×{hist[b]}" for b in sorted(hist)) or "none"
        lines.append(f"{e['label']}: {r['requests']} requests, {r['errors']} errors, {r['throughput_rps']:.1f} req/s "
                     f"({r['throughput_ips']:.1f} img/s) in {r['wall_seconds']:.1f} s; detector batches "
                     f"(size×executions): {shown}")
    return lines
