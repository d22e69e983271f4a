"""``trtbuild synth``: the project's synthetic shapes data set (calibration images, the reference model's val set);
``trtbuild clean``: delete what trtbuild wrote."""

from __future__ import annotations

from pathlib import Path

import click

from .. import owned
from ..data.synth import DIFFICULTIES, generate_dataset


@click.command("synth")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("datasets/shapes"),
              show_default=True, help="Dataset root; images/, labels/, data.yaml and synth.json are written here.")
@click.option("--train", "n_train", type=click.IntRange(min=0), default=3000, show_default=True,
              help="Number of training images.")
@click.option("--val", "n_val", type=click.IntRange(min=0), default=500, show_default=True,
              help="Number of validation images.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed; same seed and options give identical files.")
@click.option("--difficulty", type=click.Choice(sorted(DIFFICULTIES)), default="normal", show_default=True,
              help="'hard' has smaller objects, more clutter and noise (for a harder eval split).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes to render with (default: all CPUs). Does not change the output.")
@click.option("--overwrite", is_flag=True,
              help="Delete files under OUT/images and OUT/labels that synth did not write (refused without it).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth_cmd(out: Path, n_train: int, n_val: int, seed: int, difficulty: str, workers: int | None, overwrite: bool,
              quiet: bool) -> None:
    """Generate the synthetic shapes detection dataset (YOLO format, 8 classes).

    Look-alike classes (square/rectangle, circle/ellipse, ...), objects from ~8 px to half the image,
    occlusion, cluttered textured backgrounds, blur, noise and JPEG artifacts; images of varied sizes.
    A previous synth run in OUT is replaced; other files there are refused unless --overwrite.

    \b
    Examples:
      trtbuild synth --out datasets/shapes --train 0 --val 500 --seed 0      # the reference val split
      trtbuild synth --out calib_data/shapes --train 512 --val 0 --seed 1    # calibration images
    """
    yaml_path = generate_dataset(out, n_train=n_train, n_val=n_val, seed=seed, workers=workers, difficulty=difficulty,
                                 overwrite=overwrite, progress=not quiet)
    click.echo(f"wrote {n_train} train + {n_val} val images; data: {yaml_path}")


@click.command("clean")
@click.argument("folders", metavar="FOLDER [FOLDER ...]", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
def clean_cmd(folders: tuple[Path, ...]) -> None:
    """Delete what trtbuild wrote in FOLDER(s) and below: the files its records list, while unchanged.

    Anything else stays: your own files, and files trtbuild wrote that were changed since (listed). Folders left
    empty are removed.

    \b
    Examples:
      trtbuild clean engines                 # what make clean runs
      trtbuild clean engines datasets/shapes
    """
    for folder in folders:
        deleted, kept = owned.clean(folder)
        click.echo(f"clean     {folder}: {len(deleted)} file(s) trtbuild wrote deleted"
                   + (f"; {len(kept)} kept, changed since trtbuild wrote them: "
                      + ", ".join(str(p) for p in kept[:5]) + (" …" if len(kept) > 5 else "") if kept else ""))
