"""Detection accuracy metrics: IoU matching, COCO-style 101-point AP, and P/R at the best-F1 confidence.

Pure NumPy, written to reproduce the numbers of ultralytics' detection validator exactly, so that
``trtbuild eval`` and ``YOLO(...).val()`` agree on the same predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # mAP50-95 thresholds, step 0.05
CONF_GRID = np.linspace(0.0, 1.0, 1000)  # confidence axis of the P, R and F1 curves
RECALL_GRID = np.linspace(0.0, 1.0, 101)  # COCO 101-point recall sampling
F1_SMOOTH_FRACTION = 0.1  # width of the box filter applied to the mean F1 curve, as a fraction of its length

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # np.trapz was renamed in NumPy 2.0


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4) → (N, M); ``eps`` keeps empty boxes finite."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0.0, None)
    inter = overlap[..., 0] * overlap[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + eps)


def match_predictions(
    pred_classes: np.ndarray,
    true_classes: np.ndarray,
    iou: np.ndarray,
    iouv: np.ndarray = IOU_THRESHOLDS,
) -> np.ndarray:
    """Mark each prediction correct or not at every IoU threshold → (N_pred, T) bool.

    ``iou`` is (N_true, N_pred), i.e. ``box_iou(gt_boxes, pred_boxes)``, and predictions must be ordered by
    descending confidence. Greedy, like ultralytics: predictions take turns in that order; at each threshold
    independently a prediction claims the still-unclaimed target of its own class with the highest IoU (the
    lowest target index on ties) and is correct when that IoU reaches the threshold.
    """
    pred_classes = np.asarray(pred_classes).reshape(-1)
    true_classes = np.asarray(true_classes).reshape(-1)
    iouv = np.asarray(iouv, dtype=np.float64).reshape(-1)
    n_thr = iouv.shape[0]
    correct = np.zeros((pred_classes.shape[0], n_thr), dtype=bool)
    if pred_classes.shape[0] == 0 or true_classes.shape[0] == 0:
        return correct
    iou = np.asarray(iou, dtype=np.float64)
    if iou.shape != (true_classes.shape[0], pred_classes.shape[0]):
        raise ValueError(f"iou has shape {iou.shape}, expected (n_true, n_pred) = "
                         f"{(true_classes.shape[0], pred_classes.shape[0])}")
    iou = np.where(true_classes[:, None] == pred_classes[None, :], iou, 0.0)  # other classes never match
    claimed = np.zeros((true_classes.shape[0], n_thr), dtype=bool)  # target already taken, per threshold
    thr_idx = np.arange(n_thr)
    for j in np.flatnonzero((iou >= iouv.min()).any(axis=0)):  # others cannot be correct at any threshold
        open_iou = np.where(claimed, -1.0, iou[:, j : j + 1])  # (N_true, T): IoU with each unclaimed target
        best = open_iou.argmax(axis=0)  # first maximum → lowest target index on ties
        hit = open_iou[best, thr_idx] >= iouv
        correct[j] = hit
        claimed[best[hit], thr_idx[hit]] = True
    return correct


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope, sampled at 101 recall points (COCO)."""
    last = recall[-1] if len(recall) else 1.0
    rec = np.concatenate(([0.0], recall, [last], [1.0]))
    prec = np.concatenate(([1.0], precision, [0.0], [0.0]))
    envelope = np.maximum.accumulate(prec[::-1])[::-1]  # precision made non-increasing in recall
    return float(_trapezoid(np.interp(RECALL_GRID, rec, envelope), RECALL_GRID))


def _box_smooth(y: np.ndarray, fraction: float) -> np.ndarray:
    """Moving average over an odd window of ``fraction`` × 2 × len(y) points, edges padded with end values."""
    width = round(len(y) * fraction * 2) // 2 + 1
    pad = width // 2
    padded = np.concatenate((np.full(pad, y[0]), y, np.full(pad, y[-1])))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


@dataclass
class APResult:
    """Per-class results of :func:`ap_per_class`; every array is indexed like ``classes``."""

    classes: np.ndarray  # (nc,) class ids that have at least one ground-truth box, ascending
    n_targets: np.ndarray  # (nc,) ground-truth boxes per class
    ap: np.ndarray  # (nc, T) AP at each IoU threshold
    precision: np.ndarray  # (nc,) at the confidence that maximises the smoothed mean F1
    recall: np.ndarray  # (nc,)
    f1: np.ndarray  # (nc,)
    tp: np.ndarray  # (nc,) true positives at that confidence (rounded, like ultralytics)
    fp: np.ndarray  # (nc,) false positives at that confidence
    best_conf: float  # the confidence on CONF_GRID where the smoothed mean F1 peaks
    p_curve: np.ndarray  # (nc, 1000) precision against CONF_GRID
    r_curve: np.ndarray  # (nc, 1000)
    f1_curve: np.ndarray  # (nc, 1000)

    @property
    def ap50(self) -> np.ndarray:
        return self.ap[:, 0] if len(self.ap) else np.zeros(0)

    @property
    def ap50_95(self) -> np.ndarray:
        return self.ap.mean(axis=1) if len(self.ap) else np.zeros(0)


def ap_per_class(
    tp: np.ndarray,
    conf: np.ndarray,
    pred_cls: np.ndarray,
    target_cls: np.ndarray,
    eps: float = 1e-16,
) -> APResult:
    """AP per class at each IoU threshold, plus P, R and F1 at the confidence where mean F1 peaks.

    ``tp`` (N, T) bool from :func:`match_predictions`, ``conf`` and ``pred_cls`` (N,) for all predictions of a
    data set, ``target_cls`` (K,) for all its ground-truth boxes. Only classes with ground truth are scored;
    predictions of other classes are ignored. The peak is taken on the mean F1 curve after a box filter.
    """
    tp = np.asarray(tp)
    tp = tp.reshape(-1, 1) if tp.ndim == 1 else tp
    conf = np.asarray(conf).reshape(-1)
    pred_cls = np.asarray(pred_cls).reshape(-1)
    order = np.argsort(-conf)  # default (unstable) kind on purpose: same tie order as ultralytics
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]

    classes, n_targets = np.unique(np.asarray(target_cls).reshape(-1), return_counts=True)
    nc, n_thr = classes.shape[0], tp.shape[1]
    ap = np.zeros((nc, n_thr))
    p_curve, r_curve = np.zeros((nc, CONF_GRID.size)), np.zeros((nc, CONF_GRID.size))
    for k, c in enumerate(classes):
        mine = pred_cls == c
        n_pred = int(mine.sum())
        if n_pred == 0:
            continue  # AP, P and R stay 0
        hits = tp[mine].cumsum(axis=0)  # true positives among the top-i predictions of this class
        recall = hits / (n_targets[k] + eps)
        precision = hits / np.arange(1, n_pred + 1)[:, None]
        neg_conf = -conf[mine]  # np.interp needs increasing x
        r_curve[k] = np.interp(-CONF_GRID, neg_conf, recall[:, 0], left=0)
        p_curve[k] = np.interp(-CONF_GRID, neg_conf, precision[:, 0], left=1)
        for t in range(n_thr):
            ap[k, t] = _average_precision(recall[:, t], precision[:, t])

    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    best = int(_box_smooth(f1_curve.mean(axis=0), F1_SMOOTH_FRACTION).argmax()) if nc else 0
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    tp_count = (r * n_targets).round()
    fp_count = (tp_count / (p + eps) - tp_count).round()
    return APResult(
        classes=classes.astype(int),
        n_targets=n_targets,
        ap=ap,
        precision=p,
        recall=r,
        f1=f1,
        tp=tp_count,
        fp=fp_count,
        best_conf=float(CONF_GRID[best]),
        p_curve=p_curve,
        r_curve=r_curve,
        f1_curve=f1_curve,
    )


def _class_name(names: Mapping[int, str] | Sequence[str] | None, c: int) -> str:
    if isinstance(names, Mapping):
        return str(names.get(c, c))
    if names is not None and 0 <= c < len(names):
        return str(names[c])
    return str(c)


class DetectionMetrics:
    """Accumulates per-image matches and computes mAP50, mAP50-95, P and R over a data set.

    Call :meth:`update` once per image (also for images without predictions or without ground truth),
    then :meth:`compute`. Boxes are xyxy in one pixel space per image.
    """

    def __init__(self, iouv: np.ndarray = IOU_THRESHOLDS) -> None:
        self.iouv = np.asarray(iouv, dtype=np.float64).reshape(-1)
        self.reset()

    def reset(self) -> None:
        self._tp: list[np.ndarray] = []
        self._conf: list[np.ndarray] = []
        self._pred_cls: list[np.ndarray] = []
        self._target_cls: list[np.ndarray] = []
        self._image_cls: list[np.ndarray] = []  # distinct GT classes of each image, for the "images" count
        self.n_images = 0

    def update(self, pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes) -> np.ndarray:
        """Add one image; returns its (N_pred, T) correctness matrix, in descending-score order."""
        pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
        # float32 like the validator's tensors, so that equal scores tie (and sort) the same way
        scores = np.asarray(pred_scores, dtype=np.float32).reshape(-1)
        pred_cls = np.rint(np.asarray(pred_classes, dtype=np.float64).reshape(-1)).astype(np.int64)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_cls = np.rint(np.asarray(gt_classes, dtype=np.float64).reshape(-1)).astype(np.int64)
        if not (len(pred_boxes) == len(scores) == len(pred_cls)):
            raise ValueError(f"prediction lengths differ: boxes {len(pred_boxes)}, scores {len(scores)}, "
                             f"classes {len(pred_cls)}")
        if len(gt_boxes) != len(gt_cls):
            raise ValueError(f"ground-truth lengths differ: boxes {len(gt_boxes)}, classes {len(gt_cls)}")

        order = np.argsort(-scores, kind="stable")  # matching is greedy in confidence order (NMS order)
        pred_boxes, scores, pred_cls = pred_boxes[order], scores[order], pred_cls[order]
        if len(pred_cls) and len(gt_cls):
            tp = match_predictions(pred_cls, gt_cls, box_iou(gt_boxes, pred_boxes), self.iouv)
        else:
            tp = np.zeros((len(pred_cls), self.iouv.size), dtype=bool)

        self._tp.append(tp)
        self._conf.append(scores)
        self._pred_cls.append(pred_cls)
        self._target_cls.append(gt_cls)
        self._image_cls.append(np.unique(gt_cls))
        self.n_images += 1
        return tp

    def result(self) -> APResult:
        """The raw per-class :class:`APResult` over everything added so far."""
        n_thr = self.iouv.size
        tp = np.concatenate(self._tp, 0) if self._tp else np.zeros((0, n_thr), dtype=bool)
        conf = np.concatenate(self._conf) if self._conf else np.zeros(0, dtype=np.float32)
        pred_cls = np.concatenate(self._pred_cls) if self._pred_cls else np.zeros(0, dtype=np.int64)
        target_cls = np.concatenate(self._target_cls) if self._target_cls else np.zeros(0, dtype=np.int64)
        return ap_per_class(tp, conf, pred_cls, target_cls)

    def compute(self, names: Mapping[int, str] | Sequence[str] | None = None) -> dict:
        """Summary dict: means over classes that have ground truth (0.0 when there is none), and per-class rows."""
        res = self.result()
        image_cls = np.concatenate(self._image_cls) if self._image_cls else np.zeros(0, dtype=np.int64)
        images_per_class = {int(c): int(n) for c, n in zip(*np.unique(image_cls, return_counts=True))}
        have = len(res.classes) > 0
        per_class = [
            {
                "class_id": int(c),
                "name": _class_name(names, int(c)),
                "images": images_per_class.get(int(c), 0),
                "instances": int(res.n_targets[k]),
                "precision": float(res.precision[k]),
                "recall": float(res.recall[k]),
                "map50": float(res.ap[k, 0]),
                "map50_95": float(res.ap[k].mean()),
            }
            for k, c in enumerate(res.classes)
        ]
        return {
            "map50": float(res.ap[:, 0].mean()) if have else 0.0,
            "map75": float(res.ap[:, 5].mean()) if have and res.ap.shape[1] > 5 else 0.0,
            "map50_95": float(res.ap.mean()) if have else 0.0,
            "precision": float(res.precision.mean()) if have else 0.0,
            "recall": float(res.recall.mean()) if have else 0.0,
            "per_class": per_class,
            "n_images": self.n_images,
            "n_instances": int(res.n_targets.sum()),
        }
