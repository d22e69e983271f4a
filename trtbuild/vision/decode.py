"""YOLOv8 detect-head decoding: the shared ``Detections`` result type, NMS postprocessing and end-to-end decoding.

Same semantics as ultralytics ``non_max_suppression`` + ``scale_boxes`` (its predictor's path), in NumPy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, UnsupportedModelError
from .letterbox import LetterboxInfo, scale_boxes
from .nms import f32_threshold, nms_sorted

MAX_WH = 7680  # per-class coordinate offset (pixels) that keeps classes apart in class-aware NMS


@dataclass
class Detections:
    """Detections of one image: xyxy boxes in original pixels, scores, class ids; highest score first."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def to_list(self, names: Mapping[int, str] | Sequence[str] | None = None) -> list[dict]:
        """Plain-Python records ``{box: [x1, y1, x2, y2], score, class_id, class_name}`` (JSON-ready)."""
        out = []
        for box, score, cid in zip(self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist()):
            out.append({"box": box, "score": score, "class_id": cid, "class_name": class_name(names, cid)})
        return out


def class_name(names: Mapping[int, str] | Sequence[str] | None, class_id: int) -> str:
    """Name of ``class_id`` in ``names`` (a dict or a list), or the id as text when it is not there."""
    if names is not None:
        try:
            return str(names[class_id])
        except (KeyError, IndexError, TypeError):
            pass
    return str(class_id)


def _classes_mask(class_ids: np.ndarray, classes: Iterable[int] | None) -> np.ndarray | None:
    if classes is None:
        return None
    return np.isin(class_ids, np.asarray(list(classes), dtype=np.int64))


def _decode_one(
    pred: np.ndarray, conf: float, iou: float, max_det: int, agnostic: bool, classes, max_nms: int, multi_label: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NMS of one image's (4+nc, A) head output; boxes stay in network-input pixels.

    Only the candidate columns are ever copied: scores are reduced in place over the class rows, then the
    candidates are put in score order once and their four coordinate rows gathered in that order.
    """
    cls_scores = pred[4:]
    best = cls_scores.max(0)
    cand = np.flatnonzero(best > conf)
    if cand.size:
        if multi_label:  # every (anchor, class) with score > conf, anchor-major like ultralytics
            sub = cls_scores[:, cand]
            rows, class_ids = np.nonzero(sub.T > conf)
            scores = sub[class_ids, rows]
            cand = cand[rows]
        else:
            class_ids = cls_scores[:, cand].argmax(0)
            scores = best[cand]
        class_ids = class_ids.astype(np.int64, copy=False)
        keep = _classes_mask(class_ids, classes)
        if keep is not None:
            cand, class_ids, scores = cand[keep], class_ids[keep], scores[keep]
    if cand.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    # score order (stable: ties keep anchor order); the max_nms best-scoring candidates
    order = np.argsort(-scores, kind="stable")[:max_nms]
    cand, class_ids, scores = cand[order], class_ids[order], scores[order]
    xywh = np.take(pred[:4], cand, axis=1)  # (4, k), C order: the only copy of box data
    half_wh = xywh[2:] / np.float32(2)
    boxes = np.empty_like(xywh)  # (4, k) x1, y1, x2, y2
    np.subtract(xywh[:2], half_wh, out=boxes[:2])
    np.add(xywh[:2], half_wh, out=boxes[2:])
    shifted = boxes if agnostic else boxes + class_ids.astype(np.float32) * np.float32(MAX_WH)
    kept = nms_sorted(shifted, f32_threshold(iou), max_det)
    return boxes[:, kept].T, scores[kept], class_ids[kept]


def postprocess(
    output: np.ndarray,
    infos: Sequence[LetterboxInfo],
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    agnostic: bool = False,
    classes: Iterable[int] | None = None,
    max_nms: int = 30000,
    multi_label: bool = False,
) -> list[Detections]:
    """Decode a raw YOLOv8 detect output [B, 4+nc, A] (cx, cy, w, h, class scores) into per-image Detections.

    Best class per anchor, kept if its score is > ``conf`` (and in ``classes``); at most ``max_nms`` candidates
    by score; class-aware (or ``agnostic``) greedy NMS at ``iou``; at most ``max_det`` boxes, highest score
    first; boxes mapped back to each image's original pixels with its ``LetterboxInfo``. ``multi_label`` makes
    every class scoring > ``conf`` its own candidate (ultralytics' option of that name; off in its predictor).
    """
    output = np.asarray(output)
    if output.ndim != 3 or output.shape[1] < 5:
        raise UnsupportedModelError(f"expected a detect output of shape [B, 4+nc, A], got {output.shape}; "
                                    "pass a YOLOv8 detect model")
    if len(infos) < output.shape[0]:
        raise ValueError(f"{output.shape[0]} images in the output but {len(infos)} LetterboxInfo")
    if not 0 <= conf <= 1 or not 0 <= iou <= 1:
        raise InputError(f"conf={conf}, iou={iou}: both must lie in [0, 1]", param="conf")
    if output.dtype != np.float32:
        output = output.astype(np.float32)
    multi_label = multi_label and output.shape[1] > 5  # as ultralytics: only with more than one class
    results = []
    for pred, info in zip(output, infos):
        boxes, scores, class_ids = _decode_one(pred, conf, iou, max_det, agnostic, classes, max_nms, multi_label)
        results.append(Detections(scale_boxes(boxes, info), scores, class_ids))
    return results


def postprocess_end2end(
    output: np.ndarray,
    infos: Sequence[LetterboxInfo],
    conf: float = 0.25,
    max_det: int = 300,
    classes: Iterable[int] | None = None,
) -> list[Detections]:
    """Decode an end-to-end (NMS-free) output [B, K, 6] of (x1, y1, x2, y2, score, class) in input pixels.

    Rows with score > ``conf`` (and class in ``classes``) are kept in their given order, at most ``max_det``,
    as ultralytics does for end-to-end models; boxes are mapped back to original pixels.
    """
    output = np.asarray(output)
    if output.ndim != 3 or output.shape[2] < 6:
        raise UnsupportedModelError(f"expected an end-to-end output of shape [B, K, 6], got {output.shape}")
    if len(infos) < output.shape[0]:
        raise ValueError(f"{output.shape[0]} images in the output but {len(infos)} LetterboxInfo")
    results = []
    for pred, info in zip(output, infos):
        pred = pred.astype(np.float32, copy=False)
        mask = pred[:, 4] > conf
        class_ids = pred[:, 5].astype(np.int64)
        cmask = _classes_mask(class_ids, classes)
        if cmask is not None:
            mask &= cmask
        idx = np.flatnonzero(mask)[:max_det]
        results.append(Detections(scale_boxes(pred[idx, :4], info), pred[idx, 4].copy(), class_ids[idx]))
    return results
