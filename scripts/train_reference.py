#!/usr/bin/env python3
"""Train the project's reference detector: YOLOv8n from scratch on trtbuild's synthetic shapes dataset.

Runs fully offline (no weights, fonts or datasets are downloaded) and writes the checkpoint plus a
Markdown/JSON training summary next to it, so the model in models/ documents how it was made.

    python scripts/train_reference.py --device 0 --workers 14 --time 6
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

# Before anything imports ultralytics: no network, no pip installs.
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

MAX_CKPT_MB = 7.0


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("datasets/shapes"),
                    help="dataset root (generated with --train/--val/--seed if it has no data.yaml)")
    ap.add_argument("--train", type=int, default=3000, help="train images to generate when --data is missing")
    ap.add_argument("--val", type=int, default=500, help="val images to generate when --data is missing")
    ap.add_argument("--seed", type=int, default=0, help="dataset and training seed")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--time", type=float, default=None,
                    help="optional training budget in minutes; ultralytics then fits the epochs (and LR schedule) to it")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="0", help="'0' (first CUDA GPU) or 'cpu'")
    ap.add_argument("--workers", type=int, default=8, help="dataloader and dataset-generation workers")
    ap.add_argument("--amp", choices=("fp16", "bf16", "off"), default="fp16", help="mixed precision on CUDA")
    ap.add_argument("--cache", choices=("none", "ram", "disk"), default="none", help="ultralytics image cache")
    ap.add_argument("--out", type=Path, default=Path("models/shapes-yolov8n.pt"), help="final checkpoint")
    ap.add_argument("--project", type=Path, default=Path("runs/reference"), help="ultralytics run directory")
    return ap.parse_args(argv)


def _offline_check_font(font: str = "Arial.ttf"):
    """Stand-in for ultralytics' check_font, which fetches Arial from GitHub: only ever answers locally."""
    return None  # callers fall back to PIL's default font; with plots=False nothing is drawn anyway


def _offline_check_amp(model) -> bool:
    """Stand-in for ultralytics' check_amp, which downloads yolo26n.pt to compare FP32 and AMP outputs.

    Does the same comparison on a copy of the model being trained, with a fixed random batch.
    """
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    try:
        m = copy.deepcopy(model).float().eval()
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.rand(4, 3, 256, 256, device=device, generator=gen)
        with torch.no_grad():
            a = _first_tensor(m(x)).float()
            with torch.autocast("cuda", dtype=torch.float16):
                b = _first_tensor(m(x)).float()
        ok = bool(torch.isfinite(b).all()) and a.shape == b.shape and torch.allclose(a, b, atol=0.5, rtol=1e-2)
    except Exception as exc:  # same stance as ultralytics: a failed check is not a reason to stop
        print(f"AMP: local check could not run ({exc}); keeping AMP on", flush=True)
        return True
    print(f"AMP: local FP32-vs-FP16 check {'passed' if ok else 'failed, training in FP32'}", flush=True)
    return ok


def _first_tensor(out):
    import torch

    while not isinstance(out, torch.Tensor):
        out = out[0] if isinstance(out, (list, tuple)) else next(iter(out.values()))
    return out


def _refuse_download(*args, **kwargs):
    raise ConnectionError(f"train_reference.py runs offline; refused download of {kwargs.get('url') or args[:1]}")


def make_offline() -> None:
    """Patch the ultralytics call sites that would reach the network during train/val."""
    import ultralytics.data.utils as data_utils
    import ultralytics.engine.trainer as trainer
    import ultralytics.utils.checks as checks
    import ultralytics.utils.downloads as downloads
    import ultralytics.utils.plotting as plotting

    for mod in (checks, data_utils, plotting):
        mod.check_font = _offline_check_font
    trainer.check_amp = _offline_check_amp
    downloads.safe_download = data_utils.safe_download = _refuse_download


def prepare_data(args) -> tuple[Path, dict]:
    """The dataset's data.yaml (generated when missing, its ``path`` re-pointed if moved) and synth.json."""
    import yaml

    from trtbuild.data.synth import generate_dataset

    root = args.data.resolve()
    yaml_path = root / "data.yaml"
    if not yaml_path.is_file():
        print(f"generating {args.train} train + {args.val} val images into {root}", flush=True)
        t0 = time.perf_counter()
        generate_dataset(root, n_train=args.train, n_val=args.val, seed=args.seed, workers=args.workers)
        print(f"generated in {time.perf_counter() - t0:.1f}s", flush=True)
    data = yaml.safe_load(yaml_path.read_text())
    if Path(str(data.get("path", ""))) != root:
        data["path"] = str(root)
        yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    meta_path = root / "synth.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return yaml_path, meta


def slim_copy(best: Path, out: Path) -> float:
    """Copy the (already optimizer-stripped, FP16) best.pt to ``out``; drop extras if it is over MAX_CKPT_MB."""
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out)
    if out.stat().st_size / 1e6 > MAX_CKPT_MB:
        ckpt = torch.load(out, map_location="cpu", weights_only=False)
        keep = ("date", "version", "license", "model", "train_args", "epoch")
        torch.save({k: ckpt[k] for k in keep if k in ckpt} | {"model": ckpt["model"].half()}, out)
    mb = out.stat().st_size / 1e6
    if mb > MAX_CKPT_MB:
        raise SystemExit(f"{out} is {mb:.1f} MB, over the {MAX_CKPT_MB} MB limit")
    return mb


def validate(weights: Path, yaml_path: Path, args) -> dict:
    from ultralytics import YOLO

    m = YOLO(str(weights)).val(data=str(yaml_path), split="val", imgsz=args.imgsz, batch=args.batch,
                               device=args.device, workers=args.workers, plots=False, verbose=True,
                               project=str(args.project.resolve()), name="val", exist_ok=True)
    box, names = m.box, m.names
    per_class = []
    for i, c in enumerate(box.ap_class_index):
        p, r, ap50, ap = box.class_result(i)
        per_class.append({"class": names[int(c)], "instances": int(m.nt_per_class[int(c)]), "precision": round(p, 4),
                          "recall": round(r, 4), "mAP50": round(ap50, 4), "mAP50-95": round(ap, 4)})
    return {"mAP50": round(float(box.map50), 4), "mAP50-95": round(float(box.map), 4),
            "precision": round(float(box.mp), 4), "recall": round(float(box.mr), 4),
            "instances": int(m.nt_per_class.sum()), "per_class": per_class}


def device_name(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(int(str(device).split(",")[0]))
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def write_summary(out: Path, record: dict) -> tuple[Path, Path]:
    md_path, json_path = out.with_suffix(".md"), out.with_name(out.stem + ".train.json")
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    v, t, d = record["val"], record["training"], record["dataset"]
    lines = [
        f"# {out.name}: training log summary",
        "",
        "YOLOv8n trained from scratch (no pretrained weights) on trtbuild's synthetic shapes dataset.",
        "",
        f"Command: `{record['command']}`",
        "",
        "## Dataset",
        "",
        f"- generator `{d.get('generator', '?')}` v{d.get('version', '?')}, difficulty `{d.get('difficulty', '?')}`, "
        f"seed {d.get('seed', '?')}",
        f"- {d.get('n_train', '?')} train / {d.get('n_val', '?')} val images, classes: "
        f"{', '.join(d.get('class_names', []))}",
        f"- generation parameters: `{json.dumps(d.get('params', {}))}`",
        "",
        "## Training",
        "",
        f"- epochs {t['epochs_run']} ("
        + (f"fitted to a {t['time_budget_min']:g}-min budget" if t["time_budget_min"] else f"requested {t['epochs']}")
        + f"), imgsz {t['imgsz']}, batch {t['batch']}, "
        f"amp {t['amp']}, seed {t['seed']}",
        f"- device: {t['device']}",
        f"- train time: {t['train_time_s'] / 60:.1f} min",
        f"- checkpoint: `{out}` ({record['checkpoint_mb']:.1f} MB, FP16 weights)",
        "",
        f"## Validation ({v['instances']} instances)",
        "",
        f"mAP50 **{v['mAP50']:.4f}**, mAP50-95 **{v['mAP50-95']:.4f}**, P {v['precision']:.4f}, R {v['recall']:.4f}",
        "",
        "| class | instances | P | R | mAP50 | mAP50-95 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {c['class']} | {c['instances']} | {c['precision']:.3f} | {c['recall']:.3f} | {c['mAP50']:.3f} | "
              f"{c['mAP50-95']:.3f} |" for c in v["per_class"]]
    lines += ["", "## Versions", ""] + [f"- {k}: {val}" for k, val in record["versions"].items()]
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, json_path


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import ultralytics
    from ultralytics import YOLO

    make_offline()
    yaml_path, meta = prepare_data(args)
    amp = {"fp16": True, "bf16": "bf16", "off": False}[args.amp]
    extra = {"time": args.time / 60} if args.time else {}
    model = YOLO("yolov8n.yaml")
    t0 = time.perf_counter()
    model.train(data=str(yaml_path), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device,
                workers=args.workers, seed=args.seed, deterministic=True, pretrained=False, amp=amp,
                cache=False if args.cache == "none" else args.cache, plots=False, project=str(args.project.resolve()),
                name="train", exist_ok=True, verbose=True, **extra)
    train_time = time.perf_counter() - t0
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).is_file() else trainer.last)
    mb = slim_copy(best, args.out)
    print(f"copied {best} -> {args.out} ({mb:.1f} MB)", flush=True)

    record = {
        "command": " ".join(["python", "scripts/train_reference.py", *(argv if argv is not None else sys.argv[1:])]),
        "dataset": meta,
        "training": {"epochs": args.epochs, "epochs_run": int(trainer.epoch) + 1, "imgsz": args.imgsz,
                     "batch": args.batch, "amp": args.amp if args.device != "cpu" else "off (cpu)",
                     "seed": args.seed, "device": device_name(args.device), "train_time_s": round(train_time, 1),
                     "time_budget_min": args.time, "best_checkpoint": best.name},
        "checkpoint_mb": round(mb, 2),
        "val": validate(args.out, yaml_path, args),
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    md_path, json_path = write_summary(args.out, record)
    v = record["val"]
    print(f"val mAP50 {v['mAP50']:.4f}  mAP50-95 {v['mAP50-95']:.4f}  P {v['precision']:.4f}  R {v['recall']:.4f}")
    print(f"wrote {args.out}, {md_path}, {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
