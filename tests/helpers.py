"""Small helpers shared by the tests: paths of real photos bundled with installed packages, model exports."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import numpy as np


def package_dir(name: str) -> Path:
    spec = find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(list(spec.submodule_search_locations)[0])


def ultralytics_photos() -> list[Path]:
    assets = package_dir("ultralytics") / "assets"
    return [assets / "bus.jpg", assets / "zidane.jpg"]


def skimage_photos() -> list[Path]:
    data = package_dir("skimage") / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"]
    return [data / n for n in names if (data / n).is_file()]


def extra_photos() -> list[Path]:
    """More scikit-image pictures, of the kinds calibration folders hold: two colour JPEGs, two grayscale PNGs and
    an RGBA PNG (read as BGR like any other)."""
    data = package_dir("skimage") / "data"
    names = ["hubble_deep_field.jpg", "retina.jpg", "camera.png", "coins.png", "logo.png"]
    return [data / n for n in names if (data / n).is_file()]


def photo_folder(folder: Path) -> Path:
    """``folder`` (created) holding copies of the real photos above (12): a small calibration-images folder."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for photo in ultralytics_photos() + skimage_photos() + extra_photos():
        shutil.copy(photo, folder / photo.name)
    return folder


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def photos() -> dict[str, np.ndarray]:
    """{file name: BGR image as cv2 reads the file} for the ultralytics and scikit-image photos."""
    import cv2

    return {p.name: cv2.imread(str(p)) for p in ultralytics_photos() + skimage_photos()}


def export_calibrated_model(out_dir: Path, images: list[np.ndarray], imgsz: int = 640, dynamic: bool = False) -> Path:
    """yolov8n.yaml (seeded random weights) exported to an ``imgsz`` ONNX whose scores depend on the image
    (``dynamic``: batch, height and width dynamic, ultralytics' ``dynamic=True``).

    An untouched random head gives near-constant scores (nothing passes conf 0.25), so before export the
    BatchNorm statistics are recomputed on ``images`` and the class bias lowered: scores and boxes then vary
    with the image, as a trained model's do, and real photos give many detections.
    """
    import torch
    from ultralytics import YOLO

    from trtbuild.vision.letterbox import letterbox

    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")
    net = yolo.model
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the one calibration batch
    net.train()
    with torch.no_grad():
        net(torch.stack([torch.from_numpy(letterbox(img, imgsz)[0]) for img in images]))
    net.eval()
    with torch.no_grad():
        for branch in net.model[-1].cv3:
            branch[-1].weight.mul_(2.0)
            branch[-1].bias.fill_(-7.0)
        for branch in net.model[-1].cv2:
            branch[-1].weight.mul_(3.0)
    cwd = os.getcwd()
    os.chdir(out_dir)  # ultralytics writes the export next to the model name, i.e. into the cwd
    try:
        path = Path(yolo.export(format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=False, verbose=False))
    finally:
        os.chdir(cwd)
    return path if path.is_absolute() else out_dir / path


def refused(result, code: int, *needles: str) -> str:
    """The one ``error:`` line of a CLI ``result`` (exit ``code``, no traceback, every needle in it)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]
