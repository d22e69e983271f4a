"""Exact greedy non-maximum suppression in vectorized NumPy (same kept set as ``torchvision.ops.nms``).

Greedy NMS is the unique fixed point of "keep a box iff no kept higher-scoring box overlaps it", found by
iterating over an overlap relation (sparse pairs, or matrix chunks). Up to ``SMALL_N`` boxes (a detector's
usual case) one IoU matrix is packed into one bit row per box and walked once in score order: a handful of
integer operations per box instead of repeated matrix products.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DEFAULT_CHUNK = 256
SMALL_N = 96  # up to this many boxes one dense IoU matrix is cheapest
SPARSE_PAIRS_PER_BOX = 64  # above this many x-overlapping pairs per box, chunked matrices are cheaper
_UPPER = np.triu(np.ones((max(DEFAULT_CHUNK, SMALL_N),) * 2, bool), 1)  # [i, j]: i precedes j

Coords = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x1, y1, x2, y2, area


@lru_cache(maxsize=64)
def f32_threshold(iou_threshold: float) -> np.float32:
    """The float32 ``t`` for which ``iou32 > t`` equals torchvision's ``iou32 > iou_threshold`` (a double)."""
    t = np.float32(iou_threshold)
    if float(t) > iou_threshold:  # rounded up: iou32 == t is already > the double threshold
        t = np.nextafter(t, np.float32(-np.inf))
    return t


def _iou_gt(a: Coords, b: Coords, thr: np.float32) -> np.ndarray:
    """IoU(a, b) > thr, broadcasting a against b, in float32 with torchvision's order of operations."""
    ax1, ay1, ax2, ay2, a_area = a
    bx1, by1, bx2, by2, b_area = b
    w = np.minimum(ax2, bx2)
    w -= np.maximum(ax1, bx1)
    h = np.minimum(ay2, by2)
    h -= np.maximum(ay1, by1)
    np.maximum(w, 0, out=w)
    np.maximum(h, 0, out=h)
    inter = np.multiply(w, h, out=w)
    union = a_area + b_area
    union -= inter
    iou = np.divide(inter, union, out=inter)  # 0/0 (two empty boxes) is NaN: not an overlap
    return iou > thr


def _take(c: Coords, idx: np.ndarray, column: bool = False) -> Coords:
    return tuple(x[idx, None] if column else x[idx] for x in c)  # type: ignore[return-value]


def _greedy_dense(over: np.ndarray) -> np.ndarray:
    """Greedy keep mask for m boxes in score order from their (m, m) overlap matrix (diagonal ignored)."""
    m = over.shape[0]
    upper = _UPPER[:m, :m] if m <= _UPPER.shape[0] else np.triu(np.ones((m, m), bool), 1)
    sup = np.logical_and(over, upper).astype(np.float32)  # sup[i, j]: i precedes and overlaps j
    keep = np.ones(m, np.float32)
    for _ in range(m + 1):  # each round settles at least the next box in order
        new = (keep @ sup == 0).astype(np.float32)
        if np.array_equal(new, keep):
            break
        keep = new
    return keep.astype(bool)


def _greedy_bits(over: np.ndarray, limit: int) -> np.ndarray:
    """Indices kept by greedy NMS from the (m, m) overlap matrix of m boxes in score order (diagonal ignored).

    Row i packed into one integer: box i, when kept, removes every box j with bit j set; boxes before i are
    already decided, so their bits do not matter.
    """
    rows = np.packbits(over, axis=1, bitorder="little")
    kept: list[int] = []
    removed = 0
    for i in range(over.shape[0]):
        if not removed >> i & 1:
            kept.append(i)
            if len(kept) == limit:
                break
            removed |= int.from_bytes(rows[i], "little")
    return np.array(kept, np.int64)


def _overlap_matrix(xyxy: np.ndarray, area: np.ndarray, thr: np.float32) -> np.ndarray:
    """(m, m) IoU > thr of m boxes given as a (4, m) float32 array; ``_iou_gt`` in fewer, stacked operations."""
    xy1, xy2 = xyxy[:2], xyxy[2:]
    wh = np.minimum(xy2[:, :, None], xy2[:, None, :])  # (2, m, m): min(x2), min(y2)
    wh -= np.maximum(xy1[:, :, None], xy1[:, None, :])
    np.maximum(wh, 0, out=wh)
    inter = np.multiply(wh[0], wh[1], out=wh[0])
    union = area[:, None] + area
    union -= inter
    return np.divide(inter, union, out=inter) > thr  # 0/0 (two empty boxes) is NaN: not an overlap


def nms_sorted(xyxy: np.ndarray, thr: np.float32, limit: int, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Greedy NMS of boxes already in score order (highest first), given as a (4, n) float32 x1, y1, x2, y2 array.

    ``thr`` is ``f32_threshold(iou)``; returns the kept positions (at most ``limit``), in order.
    """
    if limit <= 0:
        return np.empty(0, np.int64)
    xyxy = np.ascontiguousarray(xyxy, dtype=np.float32)  # row-wise operations below want C order
    x1, y1, x2, y2 = xyxy
    area = (x2 - x1) * (y2 - y1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if x1.shape[0] <= SMALL_N:
            return _greedy_bits(_overlap_matrix(xyxy, area, thr), limit)
        c = (x1, y1, x2, y2, area)
        pairs = _x_overlap_pairs(x1, x2)
        keep = _nms_sparse(c, pairs, thr) if pairs is not None else _nms_chunked(c, thr, limit, chunk)
    return keep[:limit]


def _greedy_sparse(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Greedy keep mask from overlap edges src -> dst (src precedes dst in score order)."""
    keep = np.ones(n, bool)
    for _ in range(n + 1):
        new = np.bincount(dst, weights=keep[src], minlength=n) == 0
        if np.array_equal(new, keep):
            break
        keep = new
    return keep


def _x_overlap_pairs(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """All pairs (i, j) of boxes whose x-extents intersect (no other pair can overlap), by a sweep on x1.

    Returns None when there are so many that chunked matrices are cheaper.
    """
    n = x1.shape[0]
    xs = np.argsort(x1, kind="stable")
    ends = np.searchsorted(x1[xs], x2[xs], side="left")  # sorted boxes starting before each one ends
    first = np.arange(1, n + 1)
    counts = np.maximum(ends - first, 0)
    total = int(counts.sum())
    if total > n * SPARSE_PAIRS_PER_BOX:
        return None
    rows = np.repeat(np.arange(n), counts)
    starts = np.cumsum(counts) - counts
    cols = np.arange(total) - np.repeat(starts - first, counts)
    return xs[rows], xs[cols]


def _nms_sparse(c: Coords, pairs: tuple[np.ndarray, np.ndarray], thr: np.float32) -> np.ndarray:
    i, j = pairs
    over = _iou_gt(_take(c, i), _take(c, j), thr)
    i, j = i[over], j[over]
    return np.flatnonzero(_greedy_sparse(c[0].shape[0], np.minimum(i, j), np.maximum(i, j)))


def _nms_chunked(c: Coords, thr: np.float32, limit: int, chunk: int) -> np.ndarray:
    """Chunks in score order: cull each by the boxes kept so far, then resolve it internally; stop at ``limit``."""
    n = c[0].shape[0]
    kept_parts: list[np.ndarray] = []
    kept = np.empty(0, np.int64)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(start + chunk, n))
        if kept.size:  # drop what an already-kept (higher-scoring) box suppresses
            idx = idx[~_iou_gt(_take(c, kept, column=True), _take(c, idx), thr).any(0)]
        if idx.size == 0:
            continue
        idx = idx[_greedy_dense(_iou_gt(_take(c, idx, column=True), _take(c, idx), thr))]
        kept_parts.append(idx)
        kept = np.concatenate(kept_parts)
        if kept.size >= limit:
            break
    return kept


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """Greedy NMS on (N, 4) xyxy boxes: indices of the kept boxes, highest score first.

    A box is dropped when its IoU with a higher-scoring kept box is > ``iou_threshold``; ``max_keep`` cuts the
    result (and the work). Few boxes: one IoU matrix; sparse scenes (few boxes overlap in x, e.g. class-offset
    boxes of many classes): only the pairs that can overlap; dense scenes: chunked IoU matrices.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    n = boxes.shape[0]
    limit = n if max_keep is None else min(int(max_keep), n)
    if n == 0 or limit <= 0:
        return np.empty(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    return order[nms_sorted(np.ascontiguousarray(boxes[order].T), f32_threshold(float(iou_threshold)), limit, chunk)]
