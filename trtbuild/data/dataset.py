"""Read a YOLO-format detection data set (data.yaml or an image folder) into image paths and labels.

Paths, image discovery and the image → label rule follow ultralytics, so ``trtbuild eval`` scores the same
images against the same boxes as ``YOLO(...).val()``; bad label files fail loudly instead of being skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..errors import InputError
from ..vision.io import IMAGE_SUFFIXES, is_image, list_images

COORD_TOLERANCE = 0.01  # normalized coordinates may overshoot [0, 1] by this much (as ultralytics allows)


@dataclass
class YoloDataset:
    """Images of one split with their labels: (K, 5) float32 rows [cls, cx, cy, w, h], normalized to 0–1."""

    names: dict[int, str]
    items: list[tuple[Path, np.ndarray]] = field(default_factory=list)
    root: Path | None = None  # data set root (``path:`` in the yaml) or the image folder
    yaml_file: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_instances(self) -> int:
        return sum(len(lb) for _, lb in self.items)


def yolo_to_xyxy(labels: np.ndarray, w: int | float, h: int | float) -> np.ndarray:
    """[cls, cx, cy, w, h] normalized rows (or bare [cx, cy, w, h]) → (K, 4) xyxy boxes in pixels."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.size == 0:
        return np.zeros((0, 4))
    xywh = labels[:, -4:] if labels.ndim == 2 else labels.reshape(-1, 4)
    cx, cy, bw, bh = xywh[:, 0] * w, xywh[:, 1] * h, xywh[:, 2] * w, xywh[:, 3] * h
    return np.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), axis=1)


def label_path_for(image: str | os.PathLike) -> Path:
    """ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, the suffix becomes ``.txt``."""
    s = os.fspath(image)
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if images in s:
        head, tail = s.rsplit(images, 1)
        s = head + labels + tail
    return Path(s.rsplit(".", 1)[0] + ".txt")


def _names_from(raw, where: Path) -> dict[int, str]:
    if isinstance(raw, list):
        names = dict(enumerate(raw))
    elif isinstance(raw, dict):
        try:
            names = {int(k): v for k, v in raw.items()}
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'names' keys must be class indices 0..n-1, got {list(raw)}") from None
    else:
        raise InputError(f"{where}: 'names' must be a list or a mapping of index → name")
    names = {k: str(v) for k, v in names.items()}
    if not names or sorted(names) != list(range(len(names))):
        raise InputError(f"{where}: 'names' must cover class indices 0..n-1 exactly, got {sorted(names)}")
    return names


def _find_yaml(folder: Path) -> Path | None:
    for name in ("data.yaml", "data.yml"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.yaml")) or sorted(folder.glob("*.yml"))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InputError(f"{folder}: several YAML files and no data.yaml; pass the data YAML itself")
    return None


def _list_images(sources: list[Path], where: Path) -> list[Path]:
    """Images under folders (recursively), or listed in .txt files; sorted by path string like ultralytics."""
    found: list[str] = []
    for src in sources:
        if src.is_dir():
            found += [str(p) for p in list_images(src, recursive=True)]
        elif src.is_file():
            parent = str(src.parent) + os.sep
            with open(src, encoding="utf-8-sig") as f:
                for line in f.read().strip().splitlines():
                    line = line.strip()
                    if not line:
                        continue
                    if line.startswith("./"):  # relative to the list file
                        line = line.replace("./", parent, 1)
                    elif not os.path.isabs(line) and not os.path.exists(line):
                        line = parent + line  # not relative to the working directory either: try the list's folder
                    if is_image(line):
                        found.append(line)
        else:
            raise InputError(f"{where}: image source {src} does not exist")
    if not found:
        raise InputError(f"{where}: no images found in {', '.join(map(str, sources))} "
                         f"(suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return [Path(x) for x in sorted(found)]


def read_labels(label_file: Path, nc: int | None = None, kpt_values: int = 0) -> np.ndarray:
    """(K, 5) float32 [cls, cx, cy, w, h]; missing file → no objects. Polygon rows become their bounding box.

    ``kpt_values`` (= nkpt × ndim for pose data) lets pose rows be read as boxes. Any malformed line raises
    :class:`InputError` naming the file and the 1-based line number.
    """
    if not label_file.is_file():
        return np.zeros((0, 5), dtype=np.float32)
    try:
        text = label_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{label_file}: cannot read label file ({exc})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{label_file}:{lineno}"
        try:
            values = np.array(parts, dtype=np.float32)
        except ValueError:
            raise InputError(f"{where}: non-numeric value in {line.strip()!r}; expected 'class cx cy w h'") from None
        if not np.isfinite(values).all():
            raise InputError(f"{where}: non-finite value in {line.strip()!r}")
        if kpt_values and len(values) == 5 + kpt_values:
            values = values[:5]  # pose row: keep the box, drop the keypoints
        if len(values) == 5:
            box = values[1:]
            if box[2:].min() < 0:
                raise InputError(f"{where}: negative width/height in {line.strip()!r}")
        elif len(values) >= 7 and len(values) % 2 == 1:  # class + polygon x1 y1 x2 y2 ...
            xy = values[1:].reshape(-1, 2)
            lo, hi = xy.min(0), xy.max(0)
            box = np.concatenate(((lo + hi) / 2, hi - lo)).astype(np.float32)
            values = np.concatenate((values[:1], box))
        else:
            raise InputError(f"{where}: expected 'class cx cy w h' (5 values) or a polygon, "
                             f"got {len(values)} values")
        cls = values[0]
        if cls < 0 or cls % 1 != 0:
            raise InputError(f"{where}: class {parts[0]!r} is not a non-negative integer")
        if nc is not None and cls >= nc:
            raise InputError(f"{where}: class {int(cls)} but the data set has {nc} classes (0-{nc - 1})")
        if values[1:].max() > 1 + COORD_TOLERANCE or values[1:].min() < -COORD_TOLERANCE:
            raise InputError(f"{where}: coordinates must be normalized to 0-1, got {line.strip()!r}")
        rows.append(values)
    if not rows:
        return np.zeros((0, 5), dtype=np.float32)
    labels = np.stack(rows).astype(np.float32)
    _, first = np.unique(labels, axis=0, return_index=True)
    if len(first) < len(labels):  # duplicate rows dropped, kept in sorted-row order like ultralytics
        labels = labels[first]
    return labels


def _resolve_split(data: dict, yaml_file: Path, split: str) -> tuple[Path, list[Path]]:
    """Dataset root and the split's image sources; relative paths as ultralytics resolves them."""
    raw_root = data.get("path")
    if raw_root:
        root = Path(os.path.expanduser(str(raw_root)))
        if not root.is_absolute() and not root.exists():
            root = yaml_file.parent / root  # ultralytics would try its datasets dir; the yaml's folder is ours
    else:
        root = yaml_file.parent
    key = split
    if split == "val" and not data.get("val") and data.get("validation"):
        key = "validation"
    entry = data.get(key)
    if not entry:
        have = [k for k in ("train", "val", "test") if data.get(k)]
        raise InputError(f"{yaml_file}: no '{split}:' entry (has: {', '.join(have) or 'none'})")
    sources = []
    for item in entry if isinstance(entry, list) else [entry]:
        src = (root / str(item)).resolve()
        if not src.exists() and str(item).startswith("../"):
            src = (root / str(item)[3:]).resolve()
        sources.append(src)
    return root.resolve(), sources


def _load_yaml(yaml_file: Path) -> dict:
    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{yaml_file}: not a readable YAML file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{yaml_file}: expected a mapping with 'path', 'val' and 'names'")
    return data


def load_dataset(path: str | os.PathLike, split: str = "val") -> YoloDataset:
    """Load a split from a data YAML, a folder holding one, or a folder of images with a sibling labels tree."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such data YAML or image folder")
    yaml_file = path if path.is_file() else _find_yaml(path)
    if path.is_file() and path.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"{path}: expected a data YAML (.yaml) or a folder of images")

    if yaml_file is not None:
        data = _load_yaml(yaml_file)
        if data.get("names") is not None:
            names = _names_from(data["names"], yaml_file)
        elif isinstance(data.get("nc"), int) and data["nc"] > 0:
            names = {i: f"class_{i}" for i in range(data["nc"])}
        else:
            raise InputError(f"{yaml_file}: needs 'names' (list or mapping) or 'nc'")
        if data.get("nc") is not None and data.get("nc") != len(names):
            raise InputError(f"{yaml_file}: 'nc: {data['nc']}' but {len(names)} names")
        root, sources = _resolve_split(data, yaml_file, split)
        kpt = data.get("kpt_shape")
        kpt_values = int(np.prod(kpt)) if isinstance(kpt, (list, tuple)) and kpt else 0
        images = _list_images(sources, yaml_file)
        items = [(im, read_labels(label_path_for(im), len(names), kpt_values)) for im in images]
        return YoloDataset(names=names, items=items, root=root, yaml_file=yaml_file)

    images = _list_images([path], path)  # bare image folder: class names unknown, use class_<i>
    items = [(im, read_labels(label_path_for(im))) for im in images]
    n = max((int(lb[:, 0].max()) + 1 for _, lb in items if len(lb)), default=0)
    return YoloDataset(names={i: f"class_{i}" for i in range(n)}, items=items, root=path.resolve())
