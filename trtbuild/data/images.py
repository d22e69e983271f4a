"""Calibration images: which files of a folder calibration (and the FP16 stage's range check) reads.

Shared by the calibrate stage, the TensorRT 10 calibrator (``trt/calibrator.py``), the pipeline and the CLI, so it
sits below all of them. Images are picked by a seeded permutation of the sorted paths, so the choice does not depend
on filesystem order; unreadable files are reported (``skipped``), a YOLO data set's labels and yaml are not.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..config import MIN_CALIB_IMAGES
from ..errors import FewImagesWarning, InputError
from ..vision.io import IMAGE_SUFFIXES, list_images, read_image

log = logging.getLogger(__name__)

MIN_IMAGES = MIN_CALIB_IMAGES
MIN_RECOMMENDED_IMAGES = 100
_COMPANION_SUFFIXES = {".yaml", ".yml", ".json", ".md", ".cache"}


def few_images_warning(count: int) -> str | None:
    if count >= MIN_RECOMMENDED_IMAGES:
        return None
    return (
        f"only {count} calibration image(s) (≥ {MIN_RECOMMENDED_IMAGES} recommended): activation ranges measured "
        "on so few images are unstable and INT8 accuracy may drop; add deployment images to the folder"
    )


def dataset_companion(path: Path, folder: Path) -> bool:
    """Files a YOLO data set keeps beside its images (labels, data.yaml, READMEs): expected, not "skipped"."""
    rel = path.relative_to(folder)
    return (path.suffix.lower() in _COMPANION_SUFFIXES or path.name.upper().startswith("README")
            or (path.suffix.lower() == ".txt" and "labels" in rel.parts[:-1]))


def select_images(
    folder: str | os.PathLike, num: int = 512, seed: int = 0, min_images: int = MIN_IMAGES
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Pick ``num`` decodable images under ``folder`` (recursively): ``(selected, skipped)``.

    Files are sorted by relative path, then visited in a permutation seeded by ``seed`` until ``num`` decode;
    the result does not depend on filesystem order. ``skipped`` lists non-image files and images that did not
    decode (those visited: every one when the folder holds ``num`` images or fewer). Grayscale, RGBA and 16-bit
    images are used (decoded to 8-bit BGR, as inference reads them). Warns (``FewImagesWarning``) below 100
    images; InputError when fewer than ``MIN_IMAGES`` are usable (``min_images``).
    """
    folder = Path(folder)
    if num < 1:
        raise InputError(f"num={num}: must be ≥ 1", param="num")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(f"calibration folder {folder} {what}; put a few hundred deployment images in it "
                         "or pass another folder (images=DIR)", param="images")
    skipped: list[tuple[Path, str]] = []

    def skip(path: Path, reason: str) -> None:
        if not dataset_companion(path, folder):
            skipped.append((path, reason))

    candidates = list_images(folder, recursive=True, on_skip=skip)
    n = len(candidates)
    order = np.random.default_rng(seed).permutation(n) if n > num else range(n)  # all of them: no need to sample
    selected = []
    for i in order:
        if len(selected) == num:
            break
        path = candidates[int(i)]
        if read_image(path) is None:
            skipped.append((path, "cannot be decoded as an image"))
        else:
            selected.append(path)
    if len(selected) < min(min_images, num):
        why = "; ".join(f"{p.name}: {r}" for p, r in skipped[:3]) + (" …" if len(skipped) > 3 else "")
        raise InputError(
            f"calibration folder {folder} has {len(selected) or 'no'} usable image(s) ({n} image file(s), "
            f"{len(skipped)} skipped{': ' + why if why else ''}); at least {min(min_images, num)} are needed "
            f"(≥ {MIN_RECOMMENDED_IMAGES} recommended): add images OpenCV can read "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}) or pass another folder (images=DIR)", param="images")
    selected.sort(key=lambda p: p.relative_to(folder).as_posix())
    skipped.sort(key=lambda s: s[0].relative_to(folder).as_posix())
    if (warning := few_images_warning(len(selected))) is not None:
        log.info(warning)
        warnings.warn(warning, FewImagesWarning, stacklevel=2)
    return selected, skipped
