"""``trtbuild qat``: INT8 quantization-aware training through ultralytics' own ``quantize=8``, for users who can
fine-tune on labelled data.

ultralytics 8.4 (``BaseTrainer`` with ``quantize=8``) inserts NVIDIA ModelOpt's fake quantization into every Conv of
the model (``mtq.INT8_DEFAULT_CFG``: per-channel int8 weights, per-tensor int8 inputs), calibrates the activation
ranges once on 8 training batches, then fine-tunes the weights with the detection loss; the head's output convs and
the DFL stay float (its recipe). The checkpoint carries the quantizer state, and its ONNX export writes ModelOpt's
Q/DQ pairs, so ``trtbuild engine --model NAME-qat.pt --precision int8`` exports it, keeps those Q/DQ as trained
(``int8`` stage: a pre-quantized model is not re-quantized, no calibration) and builds the engine as for PTQ.

Needs ``nvidia-modelopt`` (the ``qat`` extra): without it, one line saying what to install. The stage is keyed
by the model's bytes, every train image and label, and the settings; its output is ``NAME-qat.pt``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..artifacts import Outputs, StageResult, package_version, run_stage, sha256_file, sha256_json
from ..config import QatConfig
from ..data.dataset import load_dataset
from ..errors import DependencyMissingError, InputError
from ..layout import Layout, model_stem
from .budget import data_key

STAGE_VERSION = 1
QAT_REQUIREMENT = "nvidia-modelopt>=0.44"


def qat(model: str | os.PathLike, config: QatConfig, *, progress: bool = False) -> StageResult:
    """Fine-tune ``model`` (an ultralytics .pt) with INT8 fake quantization on ``config.data``'s train split →
    ``OUT_DIR/NAME-qat.pt`` (+ ``NAME.qat.json``: settings, the training's last validation metrics, seconds)."""
    cfg = config
    src = Path(model)
    if src.suffix != ".pt" or not src.is_file():
        raise InputError(f"{src}: quantization-aware training starts from a trained ultralytics .pt checkpoint",
                         param="model")
    if importlib.util.find_spec("modelopt") is None:
        raise DependencyMissingError(f"{QAT_REQUIREMENT} is not installed: ultralytics' INT8 quantization-aware training needs "
                                     "it; pip install 'trtbuild[qat]' (or make qat-venv)")
    ds = load_dataset(cfg.data, "train")
    yaml_file = ds.yaml_file
    if yaml_file is None:
        raise InputError(f"{cfg.data}: quantization-aware training needs a data.yaml (train and val splits)",
                         param="data")
    layout = Layout(cfg.out_dir, cfg.name or model_stem(src))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in cfg.to_dict().items() if k != "data"}
    out = layout.qat_checkpoint
    key = sha256_json({
        "stage": "qat", "stage_version": STAGE_VERSION, "model": sha256_file(src),
        "train": data_key(cfg.data, "train"), "val": data_key(cfg.data, "val"), "config": settings,
        "versions": {p: package_version(p) for p in ("ultralytics", "torch", "nvidia-modelopt")},
    })

    def make(outputs: Outputs) -> dict:
        from ultralytics import YOLO

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="trtbuild-qat-") as tmp:
            yolo = YOLO(str(src))
            yolo.train(data=str(yaml_file), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch, lr0=cfg.lr0,
                       fraction=cfg.fraction, device=cfg.device, workers=cfg.workers, seed=cfg.seed,
                       deterministic=True, quantize=8, project=tmp, name="qat", exist_ok=True, plots=False,
                       amp=False, verbose=progress)
            weights = Path(tmp) / "qat" / "weights"
            last = weights / "best.pt" if (weights / "best.pt").is_file() else weights / "last.pt"
            shutil.copyfile(last, outputs.path(out))
            metrics = {k: float(v) for k, v in (getattr(yolo.trainer, "metrics", None) or {}).items()}
        return {"model": str(src), "data": str(yaml_file), "output": str(out), "config": settings,
                "train_images": len(ds.items), "metrics": metrics, "seconds": round(time.perf_counter() - t0, 1),
                "versions": {p: package_version(p) for p in ("ultralytics", "torch", "nvidia-modelopt")}}

    return run_stage("qat", key, layout.qat_report, out, make, cfg.force, inputs={"model": src},
                     overwrite=cfg.overwrite)
