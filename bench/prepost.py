"""Time trtbuild.vision pre/post-processing against ultralytics' own, per 640 frame, on real images.

Letterbox: ours (``letterbox_into`` one reused (3, 640, 640) slot, as the predictor and the streaming layer fill
their batch buffers) vs ultralytics' predictor ``preprocess`` (LetterBox + its uint8→float CHW normalisation).
Decode: ours (``postprocess``) vs ``non_max_suppression`` + ``scale_boxes`` on the model's real outputs.
Both sides run in the same process with the same OpenCV thread setting; median of --runs after warm-up.

    python bench/prepost.py [--onnx model.onnx | --random-model] [--runs 100]

By default it exports the project's reference model (models/shapes-yolov8n.pt) and runs it on real photos
(ultralytics' and scikit-image's) and on images of its own synthetic val split, so the decode is timed on the
reference model's real outputs. --random-model exports ``yolov8n.yaml`` (random weights, seeded) instead; random
heads give near-constant scores (nothing passes conf 0.25), so unless --raw-head is given the BatchNorm
statistics are recalibrated on the photos and the class bias lowered, making scores depend on the image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

CV2_DEFAULT_THREADS = cv2.getNumThreads()  # before ultralytics sets it to 0 on import

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trtbuild.vision.decode import postprocess  # noqa: E402
from trtbuild.vision.letterbox import letterbox, letterbox_into  # noqa: E402

REFERENCE_MODEL = Path(__file__).resolve().parents[1] / "models" / "shapes-yolov8n.pt"
SYNTHETIC_IMAGES = 5  # val-split images rendered by trtbuild.synth (seed 0)
TARGET_TOTAL_MS = 0.6
TARGET_SPEEDUP = 3.0


def photo_paths() -> list[Path]:
    import skimage
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    data = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"]
    return [assets / "bus.jpg", assets / "zidane.jpg"] + [data / n for n in names]


def synthetic_images(n: int) -> list[tuple[str, np.ndarray]]:
    """The first ``n`` images of the reference model's val split, rendered in memory (same pixels as on disk
    up to JPEG encoding)."""
    from trtbuild.data.synth import render_image

    return [(f"synth-val-{i:03d}", render_image(0, "val", i)[0]) for i in range(n)]


def export_reference(out_dir: Path, imgsz: int) -> Path:
    """Export models/shapes-yolov8n.pt with trtbuild's own export stage."""
    from trtbuild.config import ExportConfig
    from trtbuild.stages.export import export

    return export(REFERENCE_MODEL, ExportConfig(imgsz=(imgsz, imgsz), out_dir=out_dir)).output


def export_model(out_dir: Path, images: list[np.ndarray], imgsz: int, raw_head: bool) -> Path:
    """Export yolov8n.yaml (seeded random weights) to ONNX in ``out_dir``; optionally give it a content-aware head."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")
    if not raw_head:
        net = yolo.model
        batch = []
        for img in images:
            chw, _ = letterbox(img, imgsz)
            batch.append(torch.from_numpy(chw))
        for m in net.modules():  # BN statistics from the photos keep activations alive through the random net
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        with torch.no_grad():
            net(torch.stack(batch))
        net.eval()
        head = net.model[-1]
        with torch.no_grad():
            for branch in head.cv3:  # class logits: spread out, most anchors well below conf 0.25
                branch[-1].weight.mul_(2.0)
                branch[-1].bias.fill_(-7.0)
            for branch in head.cv2:  # box distributions: varied sizes
                branch[-1].weight.mul_(3.0)
    cwd = os.getcwd()
    os.chdir(out_dir)
    try:
        path = yolo.export(format="onnx", imgsz=imgsz, simplify=False, verbose=False)
    finally:
        os.chdir(cwd)
    return Path(out_dir, path).resolve() if not Path(path).is_absolute() else Path(path)


def time_pair(fn_a, fn_b, runs: int, warmup: int) -> tuple[float, float]:
    """Median milliseconds of two callables, interleaved so that machine noise hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    ta, tb = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn_a()
        t1 = time.perf_counter()
        fn_b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--onnx", type=Path, help="YOLOv8 detect ONNX (static 640); default: the reference model")
    ap.add_argument("--random-model", action="store_true", help="export yolov8n.yaml instead of the reference model")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per image and stage (median is reported)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--conf", type=float, default=0.25, help="ultralytics predict default")
    ap.add_argument("--iou", type=float, default=0.7, help="ultralytics predict default")
    ap.add_argument("--raw-head", action="store_true", help="export the untouched random model (no candidates)")
    ap.add_argument(
        "--cv2-threads", type=int, default=None, help=f"OpenCV threads for both sides (default {CV2_DEFAULT_THREADS})"
    )
    args = ap.parse_args(argv)
    if args.runs < 50:
        ap.error("--runs must be at least 50")

    import onnxruntime as ort
    import torch
    import torchvision  # noqa: F401  (ultralytics' predictor imports it, which selects torchvision NMS)
    from ultralytics.models.yolo.detect import DetectionPredictor
    from ultralytics.utils import ops
    from ultralytics.utils.nms import non_max_suppression

    cv2.setNumThreads(CV2_DEFAULT_THREADS if args.cv2_threads is None else args.cv2_threads)
    named = [(p.name, cv2.imread(str(p))) for p in photo_paths()]
    if not args.random_model:
        named += synthetic_images(SYNTHETIC_IMAGES)
    paths, images = [Path(n) for n, _ in named], [im for _, im in named]
    imgsz = 640

    with tempfile.TemporaryDirectory() as tmp:
        if args.onnx:
            onnx_path = args.onnx
        elif args.random_model:
            onnx_path = export_model(Path(tmp), images, imgsz, args.raw_head)
        else:
            onnx_path = export_reference(Path(tmp), imgsz)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        in_shape = sess.get_inputs()[0].shape
        if list(in_shape[2:]) != [imgsz, imgsz]:
            print(f"error: {onnx_path} has input {in_shape}; this bench needs a static 640x640 model", file=sys.stderr)
            return 2
        predictor = DetectionPredictor(overrides=dict(model=str(onnx_path), imgsz=imgsz, verbose=False, device="cpu"))
        predictor.setup_model(str(onnx_path), verbose=False)
        predictor.imgsz = (imgsz, imgsz)
        cv2.setNumThreads(CV2_DEFAULT_THREADS if args.cv2_threads is None else args.cv2_threads)

        rows = []
        slot = np.empty((3, imgsz, imgsz), np.float32)  # one slot of a batch buffer, reused frame after frame
        load_before = os.getloadavg()
        for path, img in zip(paths, images):
            x, info = letterbox(img, imgsz)
            ref = predictor.preprocess([img]).numpy()
            if not np.array_equal(ref[0], x):
                print(f"warning: letterbox differs from ultralytics on {path.name}", file=sys.stderr)
            out = sess.run(None, {sess.get_inputs()[0].name: x[None]})[0]
            out_t = torch.from_numpy(out)

            def ul_decode(out_t=out_t, img=img):
                preds = non_max_suppression(out_t, args.conf, args.iou, None, False, max_det=300)
                for p in preds:
                    p[:, :4] = ops.scale_boxes((imgsz, imgsz), p[:, :4], img.shape)
                return preds

            def ours_decode(out=out, info=info):
                return postprocess(out, [info], conf=args.conf, iou=args.iou)

            def ours_letterbox(img=img):
                return letterbox_into(img, imgsz, slot)

            def ul_letterbox(img=img):
                return predictor.preprocess([img]).numpy()

            ours_dets, ul_dets = ours_decode()[0], ul_decode()[0].numpy()
            if len(ours_dets) != len(ul_dets) or not np.array_equal(ours_dets.class_ids, ul_dets[:, 5]):
                print(f"warning: detections differ from ultralytics on {path.name}", file=sys.stderr)
            lb = time_pair(ours_letterbox, ul_letterbox, args.runs, args.warmup)
            if not np.array_equal(slot, x):
                print(f"warning: letterbox_into differs from letterbox on {path.name}", file=sys.stderr)
            dec = time_pair(ours_decode, ul_decode, args.runs, args.warmup)
            n_cand = int((out[0, 4:].max(0) > args.conf).sum())
            rows.append((path.name, img.shape, n_cand, len(ours_dets), lb, dec))

    if args.onnx:
        model = f"--onnx {args.onnx}"
    elif args.random_model:
        model = "yolov8n.yaml export, " + ("raw" if args.raw_head else "calibrated") + " head"
    else:
        model = f"reference model {REFERENCE_MODEL.name}"
    print(f"\nper 640 frame, median of {args.runs} runs after {args.warmup} warm-up, in ms; model: {model}")
    print(f"conf={args.conf} iou={args.iou}; OpenCV threads={cv2.getNumThreads()}, "
          f"torch threads={torch.get_num_threads()}; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)")
    hdr = (
        f"{'image':20s} {'size':>10s} {'cand':>5s} {'dets':>4s} | {'letterbox ours/ul':>17s} | "
        f"{'decode ours/ul':>15s} | {'total ours/ul':>15s}  ratio"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, shape, n_cand, n_det, lb, dec in rows:
        tot = (lb[0] + dec[0], lb[1] + dec[1])
        print(f"{name:20s} {shape[1]:>4d}x{shape[0]:<5d} {n_cand:5d} {n_det:4d} | {lb[0]:7.3f} {lb[1]:7.3f}   | "
              f"{dec[0]:6.3f} {dec[1]:6.3f}   | {tot[0]:6.3f} {tot[1]:6.3f}   {tot[1] / tot[0]:5.2f}x")
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    lb_o, lb_u = mean([r[4][0] for r in rows]), mean([r[4][1] for r in rows])
    de_o, de_u = mean([r[5][0] for r in rows]), mean([r[5][1] for r in rows])
    tot_o, tot_u = lb_o + de_o, lb_u + de_u
    print("\nmean over images      ours (ms)   ultralytics (ms)   speed-up")
    print(f"letterbox             {lb_o:9.3f}   {lb_u:16.3f}   {lb_u / lb_o:7.2f}x")
    print(f"decode+NMS+scale      {de_o:9.3f}   {de_u:16.3f}   {de_u / de_o:7.2f}x")
    print(f"total                 {tot_o:9.3f}   {tot_u:16.3f}   {tot_u / tot_o:7.2f}x")
    ok_ms, ok_x = tot_o <= TARGET_TOTAL_MS, tot_u / tot_o >= TARGET_SPEEDUP
    print(f"\ntarget ours <= {TARGET_TOTAL_MS} ms per frame: {'MET' if ok_ms else 'NOT MET'} ({tot_o:.3f} ms)")
    print(f"target >= {TARGET_SPEEDUP}x faster than ultralytics: {'MET' if ok_x else 'NOT MET'} ({tot_u / tot_o:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
