"""Small helpers shared by the tests (paths of real photos bundled with installed packages)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path


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


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()
