"""The one output comparator: how far one run of a model is from a reference run (NumPy only).

Three questions, one set of measures: simplify's parity check (``parity_error``: max |a-b| and the worst
per-channel relative error), the budget's per-layer sensitivity (``sensitivity``) and the precision report's
error table (``detect_error``). A YOLOv8 detect output ``[B, 4+nc, A]`` mixes box coordinates in pixels (rows 0-3)
with class scores in 0..1 (rows 4..), so every measure judges boxes and scores on their own scales, and box errors
count only on the anchors the reference is confident about (best class score > ``CONFIDENT``): low-score anchors'
boxes may move a lot and matter little.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError

CONFIDENT = 0.25  # reference best class score of the anchors whose boxes are compared
REL_EPS = 1e-3  # mean_rel = mean(|Δ| / (|ref| + REL_EPS)) over the elements


def _per_channel_max(values: np.ndarray) -> np.ndarray:
    """Max over every axis but 1 (the channel axis); the whole-tensor max for outputs of rank < 2."""
    if values.ndim < 2:
        return np.array([values.max()]) if values.size else np.zeros(1)
    return values.max(axis=tuple(i for i in range(values.ndim) if i != 1))


def parity_error(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict:
    """``{max_abs, max_rel}`` over all outputs, or ``{reason}`` when their shapes differ.

    ``max_rel`` is max |a - b| / max |a| taken per channel (axis 1) of each output, worst channel reported."""
    max_abs = max_rel = 0.0
    for x, y in zip(reference, candidate):
        if x.shape != y.shape:
            return {"reason": f"output shapes differ: {x.shape} vs {y.shape}"}
        diff = np.abs(x.astype(np.float64) - y)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(np.max(_per_channel_max(diff) / _per_channel_max(np.abs(x)).clip(1e-12))))
    return {"max_abs": max_abs, "max_rel": max_rel}


def confident_anchors(ref: np.ndarray) -> np.ndarray:
    """[B, A] mask of the anchors whose reference best class score exceeds ``CONFIDENT``."""
    return ref[:, 4:].max(1) > CONFIDENT


def _check_detect(ref: np.ndarray, out: np.ndarray) -> None:
    if ref.shape != out.shape:
        raise InputError(f"output shapes differ: {ref.shape} vs {out.shape}")
    if ref.ndim != 3 or ref.shape[1] < 5:
        raise InputError(f"output of shape {list(ref.shape)} is not a YOLOv8 detect head [B, 4+nc, A]")


def stats(ref: np.ndarray, out: np.ndarray) -> dict:
    """max |Δ|, mean |Δ|, mean |Δ| / (|ref| + 1e-3) and the cosine similarity of the flattened tensors."""
    delta = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    r, o = ref.ravel().astype(np.float64), out.ravel().astype(np.float64)
    norm = np.linalg.norm(r) * np.linalg.norm(o)
    return {
        "max_abs": float(delta.max()) if delta.size else 0.0,
        "mean_abs": float(delta.mean()) if delta.size else 0.0,
        "mean_rel": float((delta / (np.abs(ref) + REL_EPS)).mean()) if delta.size else 0.0,
        "cosine": float(r @ o / norm) if norm > 0 else float(np.array_equal(r, o)),
    }


def detect_error(ref: np.ndarray, out: np.ndarray) -> dict:
    """Error of ``out`` against ``ref`` (both ``[B, 4+nc, A]``): :func:`stats` of the whole output, of the box rows,
    of the score rows, and of the box rows on the confident anchors only (``box_confident``, with their count)."""
    _check_detect(ref, out)
    mask = confident_anchors(ref)
    box_ref, box_out = (x[:, :4].transpose(0, 2, 1)[mask] for x in (ref, out))
    return {"all": stats(ref, out), "box": stats(ref[:, :4], out[:, :4]), "score": stats(ref[:, 4:], out[:, 4:]),
            "box_confident": {**stats(box_ref, box_out), "anchors": int(mask.sum())}}


def sensitivity(ref: np.ndarray, out: np.ndarray, imgsz: Sequence[int]) -> dict:
    """One number per comparison, for ranking layers: ``cls_err`` = 1 − cosine similarity of the class-score rows
    (per image, averaged), ``box_err`` = mean |Δ| of the box rows on the confident anchors divided by the input
    size (max of H, W); ``score`` = their sum."""
    _check_detect(ref, out)
    cls_ref, cls_out = (x[:, 4:].reshape(len(x), -1).astype(np.float64) for x in (ref, out))
    dot = (cls_ref * cls_out).sum(1)
    norm = np.linalg.norm(cls_ref, axis=1) * np.linalg.norm(cls_out, axis=1)
    cos = np.clip(np.where(norm > 0, dot / np.maximum(norm, 1e-300), 1.0), -1.0, 1.0)
    cls_err = float(np.mean(1.0 - cos))
    mask = confident_anchors(ref)
    if mask.any():
        delta = np.abs(ref[:, :4] - out[:, :4]).transpose(0, 2, 1)[mask]  # [anchors, 4]
        box_err = float(delta.mean()) / float(max(imgsz))
    else:
        box_err = 0.0
    return {"score": cls_err + box_err, "cls_err": cls_err, "box_err": box_err}
