"""trtbuild.data.dataset on small YOLO data sets written here; one parity check against ultralytics' loader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trtbuild.data.dataset import label_path_for, load_dataset, read_labels, yolo_to_xyxy
from trtbuild.errors import InputError

LABELS = {
    "a": "0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.1 0.1\n",
    "b": "\n1 0.6 0.4 0.3 0.2   \n\n",
    "c": None,  # no label file: background image
    "d": "",  # empty label file
}


def _write_image(path: Path, w: int = 64, h: int = 48) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = (40, 160, 220)
    assert cv2.imwrite(str(path), img)


def _make_dataset(root: Path, names, split: str = "val", labels: dict | None = None, yaml_extra: str = "") -> Path:
    for stem, text in (labels or LABELS).items():
        _write_image(root / "images" / split / f"{stem}.jpg")
        if text is not None:
            lb = root / "labels" / split / f"{stem}.txt"
            lb.parent.mkdir(parents=True, exist_ok=True)
            lb.write_text(text)
    (root / "images" / split / "notes.md").write_text("not an image")
    if isinstance(names, dict):
        names_yaml = "names:\n" + "".join(f"  {k}: {v}\n" for k, v in names.items())
    else:
        names_yaml = f"names: [{', '.join(names)}]\n"
    yaml_file = root / "data.yaml"
    yaml_file.write_text(f"path: {root}\ntrain: images/{split}\n{split}: images/{split}\n{yaml_extra}{names_yaml}")
    return yaml_file


def test_load_yaml_names_list(tmp_path):
    ds = load_dataset(_make_dataset(tmp_path, ["cat", "dog"]))
    assert ds.names == {0: "cat", 1: "dog"}
    assert len(ds) == 4 and [p.name for p, _ in ds.items] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    labels = {p.stem: lb for p, lb in ds.items}
    np.testing.assert_allclose(labels["a"], [[0, 0.5, 0.5, 0.2, 0.4], [1, 0.25, 0.75, 0.1, 0.1]], atol=1e-7)
    np.testing.assert_allclose(labels["b"], [[1, 0.6, 0.4, 0.3, 0.2]], atol=1e-7)
    assert labels["c"].shape == (0, 5) and labels["d"].shape == (0, 5)
    assert ds.n_instances == 3


def test_load_folder_with_yaml_and_names_dict(tmp_path):
    _make_dataset(tmp_path, {0: "cat", 1: "dog"})
    ds = load_dataset(tmp_path)  # the folder holding data.yaml
    assert ds.names == {0: "cat", 1: "dog"} and len(ds) == 4


def test_relative_paths_resolve_against_yaml_folder(tmp_path, monkeypatch):
    yaml_file = _make_dataset(tmp_path / "ds", ["cat", "dog"])
    yaml_file.write_text("path: ../ds\nval: images/val\ntrain: images/val\nnames: {0: cat, '1': dog}\n")
    monkeypatch.chdir(tmp_path / "ds" / "images")  # not where "../ds" would resolve from
    ds = load_dataset(yaml_file)
    assert len(ds) == 4 and ds.names == {0: "cat", 1: "dog"}
    yaml_file.write_text("val: images/val\ntrain: images/val\nnames: [cat, dog]\n")  # no path: the yaml's folder
    assert len(load_dataset(yaml_file)) == 4


def test_split_from_list_file(tmp_path):
    yaml_file = _make_dataset(tmp_path, ["cat", "dog"])
    (tmp_path / "val.txt").write_text("./images/val/b.jpg\n./images/val/a.jpg\n")
    yaml_file.write_text(f"path: {tmp_path}\ntrain: images/val\nval: val.txt\nnames: [cat, dog]\n")
    ds = load_dataset(yaml_file)
    assert [p.name for p, _ in ds.items] == ["a.jpg", "b.jpg"]


def test_image_folder_with_sibling_labels(tmp_path):
    _make_dataset(tmp_path, ["cat", "dog"])
    (tmp_path / "data.yaml").unlink()
    ds = load_dataset(tmp_path / "images" / "val")
    assert len(ds) == 4 and ds.names == {0: "class_0", 1: "class_1"} and ds.n_instances == 3


def test_label_path_rule():
    assert label_path_for(f"{os.sep}d{os.sep}images{os.sep}x{os.sep}images{os.sep}v{os.sep}im.1.png") == Path(
        f"{os.sep}d{os.sep}images{os.sep}x{os.sep}labels{os.sep}v{os.sep}im.1.txt"
    )


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("0 0.5 0.5 0.2", "5 values"),
        ("0 0.5 0.5 0.2 0.4 0.9", "5 values"),
        ("x 0.5 0.5 0.2 0.4", "non-numeric"),
        ("0.5 0.5 0.5 0.2 0.4", "not a non-negative integer"),
        ("7 0.5 0.5 0.2 0.4", "2 classes"),
        ("0 50 50 20 40", "normalized"),
        ("0 0.5 0.5 -0.2 0.4", "negative"),
    ],
)
def test_malformed_label_names_file_and_line(tmp_path, line, fragment):
    labels = dict(LABELS, b=f"1 0.6 0.4 0.3 0.2\n{line}\n")
    with pytest.raises(InputError) as err:
        load_dataset(_make_dataset(tmp_path, ["cat", "dog"], labels=labels))
    msg = str(err.value)
    assert f"{tmp_path / 'labels' / 'val' / 'b.txt'}:2" in msg and fragment in msg


def test_polygon_rows_become_boxes_and_duplicates_drop(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("1 0.1 0.2 0.5 0.2 0.3 0.6\n0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    lb = read_labels(f, nc=2)
    np.testing.assert_allclose(lb, [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.3, 0.4, 0.4, 0.4]], atol=1e-6)


def test_bad_yaml_errors(tmp_path):
    yaml_file = _make_dataset(tmp_path, ["cat", "dog"])
    with pytest.raises(InputError, match="'test:'"):
        load_dataset(yaml_file, split="test")
    yaml_file.write_text("val: images/val\nnames: {0: cat, 2: dog}\n")
    with pytest.raises(InputError, match="0..n-1"):
        load_dataset(yaml_file)
    with pytest.raises(InputError, match="no such"):
        load_dataset(tmp_path / "missing.yaml")


def test_yolo_to_xyxy():
    boxes = yolo_to_xyxy(np.array([[3, 0.5, 0.5, 0.2, 0.4], [0, 0.1, 0.9, 0.2, 0.2]]), w=200, h=100)
    np.testing.assert_allclose(boxes, [[80, 30, 120, 70], [0, 80, 40, 100]])
    assert yolo_to_xyxy(np.zeros((0, 5)), 10, 10).shape == (0, 4)


def test_matches_ultralytics_loader(tmp_path, monkeypatch):
    """Same images, same order, same boxes as ultralytics' check_det_dataset + YOLODataset."""
    pytest.importorskip("ultralytics")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    rng = np.random.default_rng(0)
    labels = {}
    for i in range(12):
        rows = [f"{int(rng.integers(0, 3))} " + " ".join(f"{v:.5f}" for v in rng.uniform(0.1, 0.5, 4))
                for _ in range(int(rng.integers(0, 5)))]
        labels[f"sub/im{i}" if i % 3 == 0 else f"im{i}"] = "\n".join(rows) if i % 4 else None
    labels["sub/im3"] = "2 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n"  # polygon row
    monkeypatch.chdir(tmp_path)
    yaml_file = _make_dataset(tmp_path / "ds", ["a", "b", "c"], labels=labels)
    data = check_det_dataset(str(yaml_file))
    ref = YOLODataset(img_path=data["val"], data=data, task="detect", imgsz=64, augment=False, batch_size=1)
    ours = load_dataset(yaml_file)
    assert [str(p) for p, _ in ours.items] == ref.im_files
    assert ours.names == data["names"]
    for (_, lb), r in zip(ours.items, ref.labels):
        np.testing.assert_allclose(lb, np.concatenate([r["cls"], r["bboxes"]], 1).reshape(-1, 5), atol=1e-6)
