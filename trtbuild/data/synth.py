"""Seeded synthetic shapes dataset in YOLO format (look-alike classes, clutter, occlusion, JPEG noise).

It gives the project its own detector to train and a val set hard enough that INT8 recipes differ in mAP50-95.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import yaml

from .. import owned
from ..artifacts import TEMP_RE, sweep_stale, temp_prefix
from ..console import progress_bar
from ..errors import InputError

CLASS_NAMES = ("square", "rectangle", "circle", "ellipse", "triangle", "hexagon", "star", "cross")
SPLITS = ("train", "val")
SYNTH_VERSION = 1
_SPLIT_CODE = {"train": 1, "val": 2}
_DIFFICULTY_CODE = {"normal": 0, "hard": 1}
_SHIFT = 4  # cv2 fixed-point bits: vertices are drawn at 1/16 px precision


@dataclass(frozen=True)
class SynthParams:
    """Everything that shapes one image; recorded in synth.json so a dataset can be reproduced."""

    width: tuple[int, int] = (384, 960)
    height: tuple[int, int] = (288, 720)
    max_image_aspect: float = 2.5
    objects: tuple[int, int] = (1, 12)
    min_size: float = 8.0  # px, longest side of the unrotated shape (log-uniform up to max_size_frac)
    max_size_frac: float = 0.5  # of min(H, W)
    outline_prob: float = 0.25
    outline_min_size: float = 20.0  # smaller shapes are always filled (a 1 px outline hides the class)
    gradient_fill_prob: float = 0.25
    low_contrast_prob: float = 0.08  # share of objects whose colour skips the contrast check
    min_contrast: float = 45.0  # luma difference to the local background
    min_visible: float = 0.4  # objects less visible than this after occlusion are dropped from the labels
    clutter: tuple[int, int] = (3, 10)  # lines, curves and blobs drawn under the shapes
    occluders: tuple[int, int] = (0, 3)  # blobs and thick strokes drawn over the shapes
    texture_amp: tuple[float, float] = (5.0, 40.0)
    noise_sigma: tuple[float, float] = (0.0, 10.0)
    blur_prob: float = 0.35
    blur_sigma: tuple[float, float] = (0.4, 1.3)
    gain: tuple[float, float] = (0.65, 1.3)
    gamma: tuple[float, float] = (0.7, 1.45)
    jpeg_quality: tuple[int, int] = (40, 95)


DIFFICULTIES = {
    "normal": SynthParams(),
    "hard": SynthParams(  # smaller, more and fainter objects in heavier clutter and noise
        objects=(4, 18), min_size=6.0, max_size_frac=0.25, outline_prob=0.35, outline_min_size=10.0,
        low_contrast_prob=0.15, min_contrast=30.0, clutter=(8, 20), occluders=(1, 5), texture_amp=(15.0, 55.0),
        noise_sigma=(3.0, 16.0), blur_prob=0.5, jpeg_quality=(30, 85),
    ),
}


def params_for(difficulty: str) -> SynthParams:
    """The SynthParams of a named difficulty."""
    try:
        return DIFFICULTIES[difficulty]
    except KeyError:
        raise InputError(f"difficulty {difficulty!r}: expected one of {', '.join(DIFFICULTIES)}") from None


def image_rng(seed: int, split: str, index: int, difficulty: str = "normal") -> np.random.Generator:
    """Independent generator per image, so images can be rendered in any order or process."""
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index), _DIFFICULTY_CODE[difficulty]])


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    t = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], 1)


def _unit_shape(rng: np.random.Generator, cls: int) -> np.ndarray:
    """Polygon of class ``cls`` centred on 0 whose unrotated bounding box has longest side 1."""
    name = CLASS_NAMES[cls]
    if name in ("square", "rectangle"):
        aspect = 1.0 if name == "square" else rng.uniform(1.4, 2.5)
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * [1.0, 1.0 / aspect]
    elif name in ("circle", "ellipse"):
        ratio = 1.0 if name == "circle" else rng.uniform(1.4, 2.5)
        pts = _regular(72) * [1.0, 1.0 / ratio]
    elif name == "triangle":
        t = np.radians([90.0, 210.0, 330.0] + rng.uniform(-14, 14, 3))
        pts = np.stack([np.cos(t), np.sin(t)], 1) * rng.uniform(0.85, 1.15, (3, 1))
    elif name == "hexagon":
        pts = _regular(6)
    elif name == "star":
        pts = _regular(10) * np.tile([1.0, rng.uniform(0.38, 0.5)], 5)[:, None]
    else:  # cross: a plus sign with arms of relative width a
        a = rng.uniform(0.28, 0.42)
        pts = np.array(
            [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]]
        )
    if name in ("square", "circle", "hexagon", "star", "cross"):
        pts = pts * rng.uniform(0.95, 1.05, 2)  # slight non-uniform jitter, far from the look-alike's aspect
    pts = pts - (pts.max(0) + pts.min(0)) / 2
    return pts / (pts.max(0) - pts.min(0)).max()


def _rotate(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _blob(rng: np.random.Generator, size: float) -> np.ndarray:
    """Wobbly closed outline (several strong harmonics) that is none of the classes."""
    t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    r = np.ones_like(t)
    for k in rng.choice(np.arange(2, 7), 3, replace=False):
        r += rng.uniform(0.15, 0.35) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    r = np.clip(r * rng.uniform(0.85, 1.15, t.size), 0.15, None)
    return np.stack([np.cos(t), np.sin(t)], 1) * r[:, None] * size / 2


def _curve(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Quadratic Bezier through random points, as a polyline."""
    p0, p1, p2 = rng.uniform([0, 0], [w, h], (3, 2))
    t = np.linspace(0, 1, 40)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _paint(img: np.ndarray, pts: np.ndarray, color, thickness: int = 0, closed: bool = True, rng=None):
    """Alpha-blend a filled (thickness 0) or stroked polygon into float ``img``.

    Returns (solid mask of the ROI, (x0, y0) of the ROI) or None when nothing lands in the image.
    """
    h, w = img.shape[:2]
    pad = thickness + 2
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    fixed = np.round((pts - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)[None]
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if thickness <= 0:
        cv2.fillPoly(mask, fixed, 255, cv2.LINE_AA, _SHIFT)
    else:
        cv2.polylines(mask, fixed, closed, 255, int(thickness), cv2.LINE_AA, _SHIFT)
    color = np.asarray(color, np.float32)
    if color.ndim == 2 and rng is not None:  # two colours: linear gradient across the ROI
        yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
        ang = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(ang) + yy * math.sin(ang)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        color = color[0] + ramp[..., None] * (color[1] - color[0])
    alpha = mask.astype(np.float32)[..., None] / 255.0
    roi = img[y0:y1, x0:x1]
    roi += alpha * (color - roi)
    return mask >= 128, (x0, y0)


def _luma(c) -> float:
    c = np.asarray(c, np.float32)
    return float(0.114 * c[..., 0].mean() + 0.587 * c[..., 1].mean() + 0.299 * c[..., 2].mean())  # BGR


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 3) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise: random grid upsampled with bicubic interpolation."""
    ch = max(2, round(cells * h / max(h, w)))
    cw = max(2, round(cells * w / max(h, w)))
    grid = rng.standard_normal((ch, cw, channels)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _background(rng: np.random.Generator, h: int, w: int, p: SynthParams) -> np.ndarray:
    c1, c2 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    kind = rng.integers(4)
    if kind == 0:  # linear gradient
        ang = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    elif kind == 1:  # radial gradient
        cx, cy = rng.uniform(0, 1, 2)
        t = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        t = t / t.max()
    elif kind == 2:  # large smooth colour patches
        t = 0.5 + 0.25 * _smooth_noise(rng, h, w, int(rng.integers(3, 8)), 1)[..., 0]
    else:  # soft stripes
        ang, freq = rng.uniform(0, math.pi), rng.uniform(3, 14)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (xx * math.cos(ang) + yy * math.sin(ang)))
    img = c1 + np.clip(t, 0, 1)[..., None] * (c2 - c1)
    amp = rng.uniform(*p.texture_amp)  # fractal texture: coarse + fine octaves
    for cells, weight in ((int(rng.integers(6, 16)), 0.6), (int(rng.integers(30, 90)), 0.4)):
        img += amp * weight * _smooth_noise(rng, h, w, cells)
    return img


def _clutter(rng: np.random.Generator, img: np.ndarray, n: int, p: SynthParams, thick: bool = False):
    """Lines, curves and blobs; yields each solid mask so callers can mark occlusion."""
    h, w = img.shape[:2]
    lo, hi = p.min_size, p.max_size_frac * min(h, w)
    for _ in range(n):
        color = rng.uniform(0, 255, 3)
        kind = rng.integers(3)
        t = int(rng.integers(3, 9)) if thick else int(rng.integers(1, 5))
        if kind == 0:
            pts = rng.uniform([0, 0], [w, h], (2, 2))
            res = _paint(img, pts, color, t, closed=False)
        elif kind == 1:
            res = _paint(img, _curve(rng, h, w), color, t, closed=False)
        else:
            size = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            pts = _blob(rng, size) + rng.uniform([0, 0], [w, h])
            res = _paint(img, pts, color, 0 if rng.random() < 0.7 else t)
        if res is not None:
            yield res


def _object_color(rng: np.random.Generator, img: np.ndarray, pts: np.ndarray, p: SynthParams) -> np.ndarray:
    """One colour (or two for a gradient fill) with enough luma contrast to the local background, usually."""
    h, w = img.shape[:2]
    x0, y0 = np.clip(np.floor(pts.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(pts.max(0)).astype(int) + 1, [x0 + 1, y0 + 1], [w, h])
    bg = _luma(img[y0:y1, x0:x1])
    n_colors = 2 if rng.random() < p.gradient_fill_prob else 1
    check = rng.random() >= p.low_contrast_prob
    color = rng.uniform(0, 255, (n_colors, 3))
    for _ in range(12):
        if not check or abs(_luma(color) - bg) >= p.min_contrast:
            break
        color = rng.uniform(0, 255, (n_colors, 3))
    return color if n_colors == 2 else color[0]


def _image_size(rng: np.random.Generator, p: SynthParams) -> tuple[int, int]:
    while True:
        w, h = int(rng.integers(p.width[0], p.width[1] + 1)), int(rng.integers(p.height[0], p.height[1] + 1))
        if max(w / h, h / w) <= p.max_image_aspect:
            return h, w


def render_image(seed: int, split: str, index: int, difficulty: str = "normal"):
    """Render one image; pure function of its arguments.

    Returns (BGR uint8 image, int array of labels ``[cls, x0, y0, x1, y1]`` in pixels, JPEG quality).
    """
    p = params_for(difficulty)
    rng = image_rng(seed, split, index, difficulty)
    h, w = _image_size(rng, p)
    img = _background(rng, h, w, p)
    for _ in _clutter(rng, img, int(rng.integers(p.clutter[0], p.clutter[1] + 1)), p):
        pass

    owner = np.zeros((h, w), np.int16)  # which object (1-based) owns each pixel; 0 = nobody
    objects = []  # (cls, box, area)
    lo, hi = math.log(p.min_size), math.log(p.max_size_frac * min(h, w))
    for _ in range(int(rng.integers(p.objects[0], p.objects[1] + 1))):
        cls = int(rng.integers(len(CLASS_NAMES)))
        size = math.exp(rng.uniform(lo, hi))
        pts = _rotate(_unit_shape(rng, cls), rng.uniform(0, 2 * math.pi)) * size
        span = pts.max(0) - pts.min(0)
        if (span > [w - 4, h - 4]).any():
            pts *= float(np.min(np.array([w - 4, h - 4]) / span))
            span = pts.max(0) - pts.min(0)
        pts += rng.uniform(2, [w - 2 - span[0], h - 2 - span[1]]) - pts.min(0)
        thickness = 0
        if rng.random() < p.outline_prob and size >= p.outline_min_size:
            thickness = max(1, round(size * rng.uniform(0.06, 0.14)))
        res = _paint(img, pts, _object_color(rng, img, pts, p), thickness, rng=rng)
        if res is None or not res[0].any():
            continue
        solid, (x0, y0) = res
        ys, xs = np.nonzero(solid)
        owner[y0 : y0 + solid.shape[0], x0 : x0 + solid.shape[1]][solid] = len(objects) + 1
        box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
        objects.append((cls, box, int(solid.sum())))

    for solid, (x0, y0) in _clutter(rng, img, int(rng.integers(p.occluders[0], p.occluders[1] + 1)), p, thick=True):
        owner[y0 : y0 + solid.shape[0], x0 : x0 + solid.shape[1]][solid] = 0

    visible = np.bincount(owner.ravel(), minlength=len(objects) + 1)
    labels = [[cls, *box] for i, (cls, box, area) in enumerate(objects) if visible[i + 1] >= p.min_visible * area]

    # illumination, optics and sensor
    img *= 1.0 + rng.uniform(0.0, 0.25) * _smooth_noise(rng, h, w, 3, 1)
    img = 255.0 * (np.clip(img * rng.uniform(*p.gain), 0, 255) / 255.0) ** rng.uniform(*p.gamma)
    if rng.random() < p.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*p.blur_sigma))
    img += rng.normal(0.0, rng.uniform(*p.noise_sigma), img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    quality = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    return out, np.array(labels, dtype=np.int64).reshape(-1, 5), quality


def format_labels(labels: np.ndarray, h: int, w: int) -> str:
    """YOLO label text: ``cls cx cy w h`` normalised, 6 decimals, one object per line."""
    lines = []
    for cls, x0, y0, x1, y1 in labels.tolist():
        cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return "".join(line + "\n" for line in lines)


def _image_paths(split: str, index: int) -> tuple[str, str]:
    """The image and label file of one sample, relative to the data set root."""
    return f"images/{split}/{index:06d}.jpg", f"labels/{split}/{index:06d}.txt"


def _write_one(task: tuple[str, int], root: str, seed: int, difficulty: str) -> tuple[str, list[int], dict[str, str]]:
    """Render one sample and write its two files (each through a temporary file renamed into place, so a file at
    its final name is always complete); returns the split, its per-class counts and the files' sha256."""
    split, index = task
    img, labels, quality = render_image(seed, split, index, difficulty)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode image {index} of split {split}")
    written = {}
    for rel, data in zip(_image_paths(split, index), (jpeg.tobytes(), format_labels(labels, *img.shape[:2]).encode())):
        dest = Path(root) / rel
        tmp = dest.with_name(temp_prefix(dest.name) + "w")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        written[rel] = hashlib.sha256(data).hexdigest()
    return split, np.bincount(labels[:, 0], minlength=len(CLASS_NAMES)).tolist(), written


def _init_worker() -> None:
    cv2.setNumThreads(1)


_META_FILES = ("data.yaml", "synth.json")


def _prepare(root: Path, overwrite: bool = False) -> None:
    """Check ``root`` and clear what a previous synth run wrote there. synth owns exactly the files its record
    lists (``owned``, the manifest in ``root``); those are removed when unchanged, or changed with ``overwrite``.
    Any other file under ``images/`` or ``labels/`` (it would end up in the data set) or at ``data.yaml`` /
    ``synth.json`` is refused, ``overwrite`` or not: synth never deletes a file it did not write."""
    listed = {p for p in owned.recorded_files(root)}
    present = [f for kind in ("images", "labels") for split in SPLITS if (root / kind / split).is_dir()
               for f in sorted((root / kind / split).iterdir())]
    present += [root / n for n in _META_FILES if (root / n).exists()]
    present = [f for f in present if not TEMP_RE.match(f.name)]  # a killed run's temporary files: swept below
    foreign = [f for f in present if f.resolve() not in listed or not f.is_file()]
    if foreign:
        more = f" and {len(foreign) - 1} more file(s)" if len(foreign) > 1 else ""
        raise InputError(f"out={root}: {foreign[0]}{more} not written by synth would end up in (or be replaced by) "
                         f"the data set; move {'them' if more else 'it'} away or choose an empty folder", param="out")
    changed = [f for f in present if not owned.is_ours(f)]
    if changed and not overwrite:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise owned.NotOursError(changed[0], f"changed since synth wrote it{more}",
                                 hint="pass overwrite=True to replace the earlier data set anyway")
    for f in present:
        f.unlink()
    owned.forget([*listed], root)
    for split in SPLITS:
        for kind in ("images", "labels"):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
            sweep_stale(root / kind / split)


def default_workers() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def generate_dataset(
    root: str | Path = "datasets/shapes",
    n_train: int = 3000,
    n_val: int = 500,
    seed: int = 0,
    workers: int | None = None,
    difficulty: str = "normal",
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a YOLO-format dataset under ``root`` and return the path of its data.yaml.

    Same arguments, same bytes: every image draws from its own generator seeded by (seed, split, index,
    difficulty), so the worker count does not change the result. A previous synth run's files (its record, not
    their names, says which) are replaced; any other file under ``images/`` or ``labels/`` is refused (see
    ``_prepare``). A failed or interrupted run removes the files it wrote.
    """
    params = params_for(difficulty)
    if n_train < 0 or n_val < 0:
        raise InputError(f"image counts must be >= 0 (got train={n_train}, val={n_val})")
    root = Path(root).resolve()
    _prepare(root, overwrite)
    tasks = [("train", i) for i in range(n_train)] + [("val", i) for i in range(n_val)]
    job = partial(_write_one, root=str(root), seed=int(seed), difficulty=difficulty)
    workers = max(1, min(workers or default_workers(), len(tasks) or 1))
    counts = {s: np.zeros(len(CLASS_NAMES), np.int64) for s in SPLITS}
    written: dict[Path, str] = {}
    bar = progress_bar(total=len(tasks), desc=f"synth {root.name}", unit="img", disable=not progress)
    pool = get_context("spawn").Pool(workers, initializer=_init_worker) if workers > 1 else None
    if pool is None:
        results = map(job, tasks)
    else:
        results = pool.imap_unordered(job, tasks, chunksize=max(1, min(16, len(tasks) // (workers * 4))))
    try:
        try:
            for split, per_class, files in results:
                counts[split] += per_class
                written.update((root / rel, sha) for rel, sha in files.items())
                bar.update()
        except BaseException:
            if pool is not None:
                pool.terminate()  # not close(): the queued samples would still be rendered
            raise
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
        data = {"path": str(root), "train": "images/train", "val": "images/val", "nc": len(CLASS_NAMES),
                "names": dict(enumerate(CLASS_NAMES))}
        meta = {"generator": "trtbuild.synth", "version": SYNTH_VERSION, "seed": int(seed), "difficulty": difficulty,
                "n_train": n_train, "n_val": n_val, "class_names": list(CLASS_NAMES), "params": asdict(params),
                "instances": {s: dict(zip(CLASS_NAMES, counts[s].tolist())) for s in SPLITS}}
        for name, text in (("data.yaml", yaml.safe_dump(data, sort_keys=False)),
                           ("synth.json", json.dumps(meta, indent=2) + "\n")):
            (root / name).write_text(text)
            written[root / name] = hashlib.sha256(text.encode()).hexdigest()
        owned.record(written, root)
    except BaseException:
        # every file at a sample's name was made by this run (earlier ones were cleared, foreign ones refused)
        made = [root / rel for task in tasks for rel in _image_paths(*task)] + [root / n for n in _META_FILES]
        owned.remove_created([p for p in made if p.exists()], root)
        for kind in ("images", "labels"):
            for split in SPLITS:
                sweep_stale(root / kind / split)
        raise
    return root / "data.yaml"
