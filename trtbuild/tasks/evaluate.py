"""``trtbuild eval``: mAP50, mAP50-95, per-class AP, P and R of any model artifact on a YOLO data set.

Same protocol as ultralytics' ``val`` (conf 0.001, IoU 0.7, max_det 300, multi-label NMS, COCO 101-point
AP) so figures are comparable; the preprocessing is the project's one letterbox, as at inference.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import owned
from ..artifacts import output_folders, sha256_file, write_json_atomic
from ..config import EvalConfig
from ..console import progress_bar, table
from ..data.dataset import label_path_for, load_dataset, yolo_to_xyxy
from ..data.metrics import DetectionMetrics
from ..errors import InputError
from ..runtime.open import open_runner
from ..trt.host import Host
from ..vision.io import read_image
from .predictor import Predictor


def require_labels(ds, items, data, split: str) -> None:
    """InputError when no image of the split has a label file, or no label file holds an object: the mAP of such a
    set is 0 whatever the model does."""
    if not items:
        raise InputError(f"{data}: split '{split}' has no image; check the data YAML's '{split}:' path")
    if any(len(labels) for _, labels in items):
        return
    with_files = sum(label_path_for(p).is_file() for p, _ in items)
    if with_files == 0:
        raise InputError(f"{data}: none of the {len(items)} '{split}' images has a label file (looked for "
                         f"{label_path_for(items[0][0])}); mAP would be 0: put YOLO .txt labels under labels/")
    raise InputError(f"{data}: the {with_files} label file(s) of split '{split}' hold no object; mAP would be 0: "
                     "check the labels")


def evaluate(model: str | os.PathLike, config: EvalConfig, *, host: Host | None = None, progress: bool = False
             ) -> dict:
    """Evaluate ``model`` (.onnx or .engine) on ``config.split`` of ``config.data``; write ``config.report`` JSON if
    given (replacing only a file trtbuild wrote, or any with ``config.overwrite``)."""
    cfg = config
    data, split, conf, iou, max_det, batch = cfg.data, cfg.split, cfg.conf, cfg.iou, cfg.max_det, cfg.batch
    limit, report, overwrite = cfg.limit, cfg.report, cfg.overwrite
    if report:
        owned.refuse_input_as_output([report], [model], param="report")
        owned.check_replaceable(report, overwrite)
    ds = load_dataset(data, split)
    items = ds.items[:limit] if limit else ds.items
    require_labels(ds, items, data, split)
    # the report's folder is checked before the work and not left behind empty when the work fails
    with output_folders(*([Path(report).parent] if report else [])):
        metrics = DetectionMetrics()
        unreadable: list[str] = []
        t0 = time.perf_counter()
        with open_runner(model, host=host) as runner:
            predictor = Predictor(runner, conf=conf, iou=iou, max_det=max_det, batch=batch, multi_label=True)
            if ds.yaml_file is not None and len(predictor.names) != len(ds.names):
                raise InputError(f"{model}: predicts {len(predictor.names)} classes, but {ds.yaml_file} names "
                                 f"{len(ds.names)}: mAP would compare unrelated classes; evaluate on the data set the "
                                 "model was trained for")
            bar = None
            if progress:
                bar = progress_bar(total=len(items), desc=f"eval {Path(model).name}", unit="img", leave=False)
            for start in range(0, len(items), predictor.batch):
                chunk = []
                for path, labels in items[start : start + predictor.batch]:
                    image = read_image(path)
                    if image is None:
                        unreadable.append(str(path))
                        continue
                    chunk.append((image, labels))
                dets = predictor.predict([im for im, _ in chunk]) if chunk else []
                for (image, labels), det in zip(chunk, dets):
                    h, w = image.shape[:2]
                    metrics.update(det.boxes, det.scores, det.class_ids, yolo_to_xyxy(labels, w, h), labels[:, 0])
                if bar is not None:
                    bar.update(len(items[start : start + predictor.batch]))
            if bar is not None:
                bar.close()
            names = ds.names or predictor.names
        result = metrics.compute(names)
        out = {
            "model": str(model),
            "model_sha256": sha256_file(model),
            "data": str(ds.yaml_file or data),
            "split": split,
            "imgsz": list(predictor.imgsz),
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
            **result,
            "unreadable_images": unreadable,
            "seconds": round(time.perf_counter() - t0, 2),
            "ms_per_image": predictor.times.per_image_ms(),
        }
        if report:
            write_json_atomic(report, out, overwrite)
    return out


def format_eval(res: dict) -> str:
    rows = [
        ("all", res["n_images"], res["n_instances"], f"{res['precision']:.4f}", f"{res['recall']:.4f}",
         f"{res['map50']:.4f}", f"{res['map50_95']:.4f}")
    ]
    for c in res["per_class"]:
        rows.append((c["name"], c["images"], c["instances"], f"{c['precision']:.4f}", f"{c['recall']:.4f}",
                     f"{c['map50']:.4f}", f"{c['map50_95']:.4f}"))
    text = table(rows, ("class", "images", "instances", "P", "R", "mAP50", "mAP50-95"))
    if res["unreadable_images"]:
        text += f"\nskipped {len(res['unreadable_images'])} unreadable image(s)"
    return text
