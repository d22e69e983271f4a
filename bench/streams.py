#!/usr/bin/env python3
"""Many streams into one model, measured in one run on this host (issue 19's targets), against ultralytics.

    python bench/streams.py [--streams 4] [--frames 150] [--size 1280x720] [--onnx model.onnx] [--work DIR]

Makes ``--streams`` real H.264 videos (GStreamer's x264enc where Debian's packages are installed, else OpenCV's mp4v)
of moving synthetic shapes, exports the reference model as ultralytics' dynamic export (batch, H and W: both
ultralytics' predictor and trtbuild letterbox 1280x720 frames into 384x640 rectangles for it), and measures with
``trtbuild bench --streams`` (model only, end to end, host capacity with recorded outputs, the serial host path)
and ultralytics' ``predict`` on the same ONNX and the same videos through its ``.streams`` file (its default
stream loader). Prints every figure and the verdicts:

* host capacity (pipelined, recorded outputs) ≥ 1.8× the serial host path;
* end to end ≥ 95 % of the model-only throughput at the same batch;
* end to end ≥ 2× ultralytics' predict (frames with results per second of wall time), against its stream loader
  with ``stream_buffer=True`` (every frame processed; its default drops all but each video's newest frame, so on
  files it processes a handful of frames: printed too, not used for the verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from trtbuild.config import ExportConfig, StreamConfig  # noqa: E402
from trtbuild.data.synth import render_image  # noqa: E402
from trtbuild.stages.export import export  # noqa: E402
from trtbuild.tasks.bench_streams import format_bench_streams, run_bench_streams  # noqa: E402

GST_SCRIPT = """
import sys, gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
src, out, w, h, n = sys.argv[1:6]
pipe = Gst.parse_launch(
    f"multifilesrc location={src} index=0 caps=image/png,framerate=30/1 stop-index={int(n) - 1} ! pngdec ! "
    f"videoconvert ! video/x-raw,format=I420,width={w},height={h} ! x264enc speed-preset=medium ! mp4mux ! "
    f"filesink location={out}")
pipe.set_state(Gst.State.PLAYING)
msg = pipe.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipe.set_state(Gst.State.NULL)
sys.exit(0 if msg.type == Gst.MessageType.EOS else 1)
"""


def frames_of(seed: int, n: int, w: int, h: int):
    base = cv2.resize(render_image(seed, "val", seed)[0], (w + 4 * n, h))
    for i in range(n):
        yield np.ascontiguousarray(base[:, 4 * i : 4 * i + w])


def make_video(path: Path, seed: int, n: int, w: int, h: int) -> str:
    """An H.264 mp4 through GStreamer (system python3 + gi) when it is there, else mp4v; returns the codec."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, frame in enumerate(frames_of(seed, n, w, h)):
            cv2.imwrite(f"{tmp}/{i:06d}.png", frame)
        system_python = shutil.which("python3", path="/usr/bin")
        if system_python:
            done = subprocess.run([system_python, "-c", GST_SCRIPT, f"{tmp}/%06d.png", str(path), str(w), str(h),
                                   str(n)], capture_output=True, text=True)
            if done.returncode == 0 and path.is_file():
                return "h264"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for frame in frames_of(seed, n, w, h):
        writer.write(frame)
    writer.release()
    return "mp4v"


def ultralytics_streams(onnx: Path, streams_file: Path, imgsz: int, buffer: bool) -> dict:
    """ultralytics' predict over the .streams file (its LoadStreams: one reader thread per video; ``buffer`` False, its
    default: each batch takes every video's newest frame and the rest are dropped; True: up to 30 frames a video are
    kept and the readers wait, so every frame is processed): frames with a result per second of wall time."""
    from ultralytics import YOLO

    model = YOLO(str(onnx), task="detect")
    t0 = time.perf_counter()
    frames = 0
    for result in model.predict(str(streams_file), stream=True, imgsz=imgsz, device="cpu", verbose=False, conf=0.25,
                                stream_buffer=buffer):
        frames += 1
    wall = time.perf_counter() - t0
    return {"frames": frames, "seconds": round(wall, 3), "fps": round(frames / wall, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--onnx", type=Path, default=None, help="a dynamic-batch detect ONNX [default: the reference "
                                                            "model exported here]")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    w, h = map(int, args.size.lower().split("x"))
    work = args.work or Path(tempfile.mkdtemp(prefix="trtbuild-streams-"))
    work.mkdir(parents=True, exist_ok=True)
    videos = []
    for k in range(args.streams):
        path = work / f"cam{k}.mp4"
        codec = make_video(path, k, args.frames, w, h) if not path.is_file() else "existing"
        videos.append(path)
    print(f"videos    {args.streams} × {w}x{h}, {args.frames} frames each ({codec}) in {work}")
    onnx = args.onnx or export(REPO / "models" / "shapes-yolov8n.pt",
                               ExportConfig(imgsz=(args.imgsz, args.imgsz), dynamic=True, dynamic_hw=True,
                                            out_dir=work)).output
    streams_file = work / "cams.streams"
    streams_file.write_text("".join(f"{v}\n" for v in videos))

    report = run_bench_streams(onnx, streams_file, StreamConfig(batch=args.streams))
    print(format_bench_streams(report))
    dropping = ultralytics_streams(onnx, streams_file, args.imgsz, buffer=False)
    theirs = ultralytics_streams(onnx, streams_file, args.imgsz, buffer=True)
    e2e, only = report["end_to_end"], report["model_only"]
    ratio_ul = e2e["fps"] / max(theirs["fps"], 1e-9)
    total = args.streams * args.frames
    print(f"  ultralytics predict  {dropping['fps']:>8.1f} frames/s  ({dropping['frames']} of {total} frames got a "
          "result: its default stream loader keeps only each video's newest frame)")
    print(f"  ultralytics predict  {theirs['fps']:>8.1f} frames/s  ({theirs['frames']} of {total} frames, "
          "stream_buffer=True: every frame; the baseline below)")
    verdicts = [
        ("host capacity ≥ 1.8× the serial host path", report["ratios"]["host_pipelined_vs_serial"], 1.8),
        ("end to end ≥ 95 % of model only", e2e["fps"] / only["fps"], 0.95),
        ("end to end ≥ 2× ultralytics predict", ratio_ul, 2.0),
    ]
    for text, value, target in verdicts:
        print(f"  {text}: {value:.2f} → {'MET' if value >= target else 'NOT MET'}")
    if args.json:
        args.json.write_text(json.dumps({**report, "ultralytics": theirs, "ultralytics_default": dropping, "verdicts": [
            {"target": t, "value": round(v, 3), "met": v >= g} for t, v, g in verdicts]}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
