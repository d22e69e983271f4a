"""The synthetic shapes dataset: deterministic, well-formed YOLO labels, and the size/class spread it promises."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from trtbuild.cli.data import synth_cmd as synth_command
from trtbuild.data.synth import CLASS_NAMES, generate_dataset, render_image
from trtbuild.errors import InputError


def _read_labels(path):
    rows = [line.split() for line in path.read_text().splitlines()]
    return np.array([[float(v) for v in r] for r in rows]).reshape(-1, 5)


@pytest.fixture(scope="module")
def sample():
    """Labels (pixels) and image shapes of 60 normal train images, rendered in memory."""
    out = [render_image(0, "train", i) for i in range(60)]
    return [(img.shape[:2], labels) for img, labels, _ in out]


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a = generate_dataset(tmp_path / "a", n_train=4, n_val=2, seed=7, workers=1, progress=False).parent
    b = generate_dataset(tmp_path / "b", n_train=4, n_val=2, seed=7, workers=2, progress=False).parent
    c = generate_dataset(tmp_path / "c", n_train=4, n_val=2, seed=8, workers=1, progress=False).parent
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            name = f"{i:06d}"
            la, lb = (r / "labels" / split / f"{name}.txt" for r in (a, b))
            assert la.read_bytes() == lb.read_bytes()
            ia, ib = (cv2.imread(str(r / "images" / split / f"{name}.jpg")) for r in (a, b))
            assert ia is not None and np.array_equal(ia, ib)
    assert json.loads((a / "synth.json").read_text())["instances"] == json.loads((b / "synth.json").read_text())[
        "instances"
    ]
    differs = [
        (a / "labels" / "train" / f"{i:06d}.txt").read_bytes() != (c / "labels" / "train" / f"{i:06d}.txt").read_bytes()
        for i in range(4)
    ]
    assert all(differs)


def test_render_is_pure_and_splits_differ():
    img1, lab1, q1 = render_image(3, "val", 5)
    img2, lab2, q2 = render_image(3, "val", 5)
    assert np.array_equal(img1, img2) and np.array_equal(lab1, lab2) and q1 == q2
    img3, lab3, _ = render_image(3, "train", 5)
    assert img1.shape != img3.shape or not np.array_equal(img1, img3)


def test_layout_labels_parse_and_are_normalised(tmp_path):
    yaml_path = generate_dataset(tmp_path / "ds", n_train=6, n_val=3, seed=1, workers=1, progress=False)
    root = yaml_path.parent
    data = yaml.safe_load(yaml_path.read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == dict(enumerate(CLASS_NAMES)) and data["nc"] == len(CLASS_NAMES)
    assert (root / data["path"]).resolve() == root.resolve()
    meta = json.loads((root / "synth.json").read_text())
    assert meta["seed"] == 1 and meta["n_train"] == 6 and meta["difficulty"] == "normal"
    total = 0
    for split, n in (("train", 6), ("val", 3)):
        images = sorted((root / "images" / split).glob("*.jpg"))
        labels = sorted((root / "labels" / split).glob("*.txt"))
        assert [p.stem for p in images] == [p.stem for p in labels] == [f"{i:06d}" for i in range(n)]
        for lp in labels:
            for line in lp.read_text().splitlines():
                parts = line.split()
                assert len(parts) == 5 and parts[0].isdigit() and all(len(p.split(".")[1]) == 6 for p in parts[1:])
            lab = _read_labels(lp)
            total += len(lab)
            assert np.all((lab[:, 0] >= 0) & (lab[:, 0] < len(CLASS_NAMES)))
            cx, cy, w, h = lab[:, 1:].T
            assert np.all((w > 0) & (h > 0))
            assert np.all(cx - w / 2 >= -1e-6) and np.all(cx + w / 2 <= 1 + 1e-6)
            assert np.all(cy - h / 2 >= -1e-6) and np.all(cy + h / 2 <= 1 + 1e-6)
    assert total == sum(sum(v.values()) for v in meta["instances"].values()) > 0


def test_regenerating_replaces_old_files(tmp_path):
    generate_dataset(tmp_path / "ds", n_train=5, n_val=1, seed=0, workers=1, progress=False)
    generate_dataset(tmp_path / "ds", n_train=2, n_val=1, seed=0, workers=1, progress=False)
    assert len(list((tmp_path / "ds" / "images" / "train").glob("*.jpg"))) == 2
    assert len(list((tmp_path / "ds" / "labels" / "train").glob("*.txt"))) == 2


def test_every_class_appears_and_images_vary_in_size(sample):
    classes = np.concatenate([lab[:, 0] for _, lab in sample])
    assert set(classes.tolist()) == set(range(len(CLASS_NAMES)))
    assert np.bincount(classes, minlength=len(CLASS_NAMES)).min() >= 0.4 * len(classes) / len(CLASS_NAMES)
    shapes = {hw for hw, _ in sample}
    aspects = [w / h for h, w in shapes]
    assert len(shapes) > 50 and min(aspects) < 0.9 and max(aspects) > 1.5


def test_sizes_span_small_to_large(sample):
    small = large = 0
    for (h, w), lab in sample:
        bw, bh = lab[:, 3] - lab[:, 1], lab[:, 4] - lab[:, 2]
        side = np.maximum(bw, bh)
        assert np.all(side >= 4)
        small += int(np.sum(side < 16))
        large += int(np.sum(side > min(h, w) / 4))
    assert small >= 5 and large >= 5


def test_look_alikes_keep_their_aspect():
    """Squares/circles have near-square boxes when axis-aligned; rectangles/ellipses cannot all be square."""
    ratios = {c: [] for c in ("square", "rectangle", "circle", "ellipse")}
    for i in range(40):
        _, lab, _ = render_image(0, "train", i)
        for cls, x0, y0, x1, y1 in lab.tolist():
            name = CLASS_NAMES[cls]
            if name in ratios and min(x1 - x0, y1 - y0) >= 40:
                ratios[name].append(max(x1 - x0, y1 - y0) / min(x1 - x0, y1 - y0))
    assert ratios["circle"] and max(ratios["circle"]) < 1.2
    assert ratios["ellipse"] and max(ratios["ellipse"]) > 1.3


def test_hard_has_smaller_objects_and_more_of_them():
    def stats(difficulty):
        sides, counts = [], []
        for i in range(20):
            img, lab, _ = render_image(0, "val", i, difficulty)
            sides += (np.maximum(lab[:, 3] - lab[:, 1], lab[:, 4] - lab[:, 2]) / min(img.shape[:2])).tolist()
            counts.append(len(lab))
        return np.median(sides), np.mean(counts)

    (normal_side, normal_n), (hard_side, hard_n) = stats("normal"), stats("hard")
    assert hard_side < 0.7 * normal_side
    assert hard_n > normal_n


def test_unknown_difficulty_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="difficulty"):
        generate_dataset(tmp_path, n_train=1, n_val=0, difficulty="brutal")


def test_cli_writes_dataset(tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(synth_command, ["--out", str(out), "--train", "2", "--val", "1", "--seed", "4",
                                             "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert (out / "data.yaml").is_file() and len(list((out / "images" / "val").glob("*.jpg"))) == 1
    assert json.loads((out / "synth.json").read_text())["seed"] == 4
    assert "--difficulty" in CliRunner().invoke(synth_command, ["--help"]).output
