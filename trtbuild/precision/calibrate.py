"""INT8 calibration on the CPU: pick images, letterbox them exactly as inference does, measure activation ranges.

The ranges feed both INT8 paths: explicit Q/DQ in the ONNX (TensorRT 11, strongly typed) and the implicit-INT8
table TensorRT 10 reads (``<name>.calib.cache``, see ``table.py``). Statistics come from ONNX Runtime's own
calibrators (``onnxruntime.quantization.calibrate``: MinMax, Entropy, Percentile). What is ours, and why:

- defaults: ORT's entropy defaults (128 bins, 128 quantized bins) leave a single candidate threshold, i.e.
  min/max; we use 2048 bins and 255 quantized bins (ORT's histogram is signed over [-T, T], so 255 bins is
  the symmetric INT8 grid, the analogue of TensorRT's 128 bins over |x|). Percentile uses ORT's signed
  histogram (``symmetric=False``): its |x| histogram raises "Too many bins" on near-constant tensors;
- the result is cleaned: ORT clips each threshold into the observed [min, max] separately, which yields
  min > max when the chosen window lies below all of the data (a narrow band far from 0, e.g. a sigmoid
  stuck near 0.5); such tensors fall back to their observed (min, max);
- data feeding: calibration batches bound memory (ORT's histogram calibrators keep every tensor of a
  ``collect_data`` call); inside a batch the model runs at its own batch size, so a static batch-1 ONNX is
  fed image by image (a short last group is padded by repeating its images) and no dynamic copy is needed;
- ``tensors=`` restricts collection (ORT only offers op types): entropy's threshold search is pure Python,
  ~0.5-0.7 s per tensor at 2048 bins, 2-3 minutes for all ~250 tensors of yolov8n whatever the image count
  (about 50 s for its 59 Conv inputs); minmax and percentile take seconds. Entropy's smallest candidate
  threshold is 1/8 of max|x| with these bins (TensorRT's: 1/16).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np

from ..artifacts import (
    StageResult,
    cached_report,
    output_hashes,
    package_version,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from ..errors import InputError, UnsupportedModelError
from ..vision.io import IMAGE_SUFFIXES, read_image
from ..vision.letterbox import letterbox_batch
from .table import DEFAULT_TRT_VERSION, amax, table_header, write_table

log = logging.getLogger(__name__)

STAGE = "calibrate"
STAGE_VERSION = 1
METHODS = ("entropy", "percentile", "minmax")
MIN_RECOMMENDED_IMAGES = 100
DEFAULT_NUM_BINS = 2048
DEFAULT_QUANTIZED_BINS = 255
DEFAULT_PERCENTILE = 99.999


class FewImagesWarning(UserWarning):
    """Fewer calibration images than recommended: the measured ranges may not be stable."""



def few_images_warning(count: int) -> str | None:
    if count >= MIN_RECOMMENDED_IMAGES:
        return None
    return (
        f"only {count} calibration image(s) (≥ {MIN_RECOMMENDED_IMAGES} recommended): activation ranges measured "
        "on so few images are unstable and INT8 accuracy may drop; add deployment images to the folder"
    )


_COMPANION_SUFFIXES = {".yaml", ".yml", ".json", ".md", ".cache"}


def _dataset_companion(path: Path, folder: Path) -> bool:
    """Files a YOLO data set keeps beside its images (labels, data.yaml, READMEs): expected, not "skipped"."""
    rel = path.relative_to(folder)
    return (path.suffix.lower() in _COMPANION_SUFFIXES or path.name.upper().startswith("README")
            or (path.suffix.lower() == ".txt" and "labels" in rel.parts[:-1]))


def select_images(
    folder: str | os.PathLike, num: int = 512, seed: int = 0
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Pick ``num`` decodable images under ``folder`` (recursively): ``(selected, skipped)``.

    Files are sorted by relative path, then visited in a permutation seeded by ``seed`` until ``num`` decode;
    the result does not depend on filesystem order. ``skipped`` lists non-image files and images that did not
    decode (those visited: every one when the folder holds ``num`` images or fewer). Warns (``FewImagesWarning``)
    below 100 images; InputError when none is usable.
    """
    folder = Path(folder)
    if num < 1:
        raise InputError(f"--num {num}: must be ≥ 1")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(f"calibration folder {folder} {what}; put a few hundred deployment images in it "
                         "or pass --images DIR")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(Path(root) / n for n in names)
    files = [p for p in files if not _dataset_companion(p, folder)]
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    skipped = [(p, f"not an image (suffix '{p.suffix or '(none)'}')") for p in files
               if p.suffix.lower() not in IMAGE_SUFFIXES]
    candidates = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
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
    if not selected:
        raise InputError(
            f"calibration folder {folder} has no usable image ({len(files)} file(s), {len(skipped)} skipped); "
            f"add images OpenCV can read ({', '.join(sorted(IMAGE_SUFFIXES))}) or pass --images DIR"
        )
    selected.sort(key=lambda p: p.relative_to(folder).as_posix())
    skipped.sort(key=lambda s: s[0].relative_to(folder).as_posix())
    if (warning := few_images_warning(len(selected))) is not None:
        log.info(warning)
        warnings.warn(warning, FewImagesWarning, stacklevel=2)
    return selected, skipped


class CalibrationData:
    """Calibration batches ``[b, 3, H, W]`` float32 (b ≤ ``batch``), made by ``letterbox_batch``, the inference
    preprocessing, so the ranges are measured on exactly what the engine will see."""

    def __init__(self, images: Sequence[str | os.PathLike], imgsz: int | tuple[int, int], batch: int = 8,
                 progress: bool = False):
        if batch < 1:
            raise InputError(f"--batch {batch}: must be ≥ 1")
        self.images = [Path(p) for p in images]
        self.imgsz = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else tuple(map(int, imgsz))
        self.batch = int(batch)
        self.progress = progress

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)

    def __iter__(self):
        from tqdm import tqdm

        with tqdm(total=len(self.images), desc="calibrate", unit="img", leave=False, disable=not self.progress) as bar:
            for start in range(0, len(self.images), self.batch):
                frames = [read_image(p) for p in self.images[start : start + self.batch]]
                if (bad := next((p for p, f in zip(self.images[start:], frames) if f is None), None)) is not None:
                    raise InputError(f"calibration image {bad} can no longer be read; rerun the calibration")
                bar.update(len(frames))
                yield letterbox_batch(frames, self.imgsz)[0]


def calibration_key(model_path, images: Sequence[str | os.PathLike], imgsz, method: str, batch: int, **params) -> str:
    """Hash of everything the ranges depend on: model bytes, each image's bytes (in order), size, method, batch,
    parameters, the ORT version. Changing one image changes the key (a stale cache is never reused)."""
    return sha256_json({
        "stage": STAGE,
        "stage_version": STAGE_VERSION,
        "model_sha256": sha256_file(model_path),
        "images_sha256": [sha256_file(p) for p in images],
        "imgsz": list(imgsz) if isinstance(imgsz, (tuple, list)) else [int(imgsz)] * 2,
        "method": method,
        "batch": int(batch),
        "params": params,
        "onnxruntime": package_version("onnxruntime"),
    })



def model_input(model) -> tuple[str, int | None, tuple[int, int] | None, type]:
    """``(name, static batch or None, static (H, W) or None, numpy dtype)`` of the model's single image input."""
    from ..graph import io_specs

    ins, _ = io_specs(model)
    if len(ins) != 1 or len(ins[0].shape) != 4:
        raise UnsupportedModelError(f"calibration needs one [B,3,H,W] image input; this model has "
                                    f"{[(s.name, list(s.shape)) for s in ins]}")
    spec = ins[0]
    dims = [d if isinstance(d, int) and d > 0 else None for d in spec.shape]
    hw = (dims[2], dims[3]) if dims[2] and dims[3] else None
    return spec.name, dims[0], hw, np.float16 if spec.dtype == "float16" else np.float32


def activation_tensors(model, op_types: Iterable[str] | None = None) -> list[str]:
    """Non-initializer inputs and outputs of the nodes (of ``op_types`` if given), in graph order."""
    inits = {i.name for i in model.graph.initializer}
    wanted = set(op_types) if op_types is not None else None
    names: dict[str, None] = {}
    for node in model.graph.node:
        if wanted is None or node.op_type in wanted:
            for name in (*node.input, *node.output):
                if name and name not in inits:
                    names.setdefault(name)
    return list(names)


def _reader(feeds: list[dict]) -> SimpleNamespace:
    """An ORT ``CalibrationDataReader`` (anything with ``get_next``) over a list of feed dicts."""
    return SimpleNamespace(get_next=functools.partial(next, iter(feeds), None))


def _groups(batch: np.ndarray, name: str, model_batch: int | None, hw, dtype) -> tuple[list[dict], int]:
    """Split one calibration batch into the model's own batch size; returns (feeds, padded image count)."""
    if batch.ndim != 4 or batch.shape[1] != 3 or (hw and tuple(batch.shape[2:]) != hw):
        raise InputError(f"calibration batch of shape {batch.shape} does not fit the model input {name} "
                         f"[B,3,{hw[0] if hw else 'H'},{hw[1] if hw else 'W'}]")
    batch = batch.astype(dtype, copy=False)
    if model_batch is None:
        return [{name: batch}], 0
    feeds, padded = [], 0
    for start in range(0, len(batch), model_batch):
        part = batch[start : start + model_batch]
        if len(part) < model_batch:  # repeat this group's own images: never invents pixels
            padded += model_batch - len(part)
            part = np.resize(part, (model_batch, *part.shape[1:]))
        feeds.append({name: np.ascontiguousarray(part)})
    return feeds, padded


def _make_calibrator(model_path: Path, augmented: Path, method: str, options: dict, tensors: set[str] | None):
    from onnxruntime.quantization import calibrate as ortc

    kind = {"entropy": ortc.CalibrationMethod.Entropy, "percentile": ortc.CalibrationMethod.Percentile,
            "minmax": ortc.CalibrationMethod.MinMax}[method]
    if tensors is None:
        return ortc.create_calibrator(model_path, augmented_model_path=str(augmented), calibrate_method=kind,
                                      extra_options=options)
    base = {"entropy": ortc.EntropyCalibrater, "percentile": ortc.PercentileCalibrater,
            "minmax": ortc.MinMaxCalibrater}[method]

    class Restricted(base):  # ORT selects by op type only; keep just the requested tensors
        def select_tensors_to_calibrate(self, model):
            found, infos = super().select_tensors_to_calibrate(model)
            return found & tensors, infos

    calibrator = Restricted(model_path, augmented_model_path=str(augmented), **options)
    calibrator.augment_graph()
    calibrator.create_inference_session()
    return calibrator


def _as_float(value) -> float:
    return float(np.asarray(value, dtype=np.float64).ravel()[0])


def _compute(onnx_path, data: Iterable[np.ndarray], method: str, percentile: float, num_bins: int | None,
             tensors: Iterable[str] | None, num_quantized_bins: int) -> tuple[dict, dict]:
    from ..console import capture_fd_stderr
    from ..graph import load_onnx

    if method not in METHODS:
        raise InputError(f"--method {method!r}: one of {', '.join(METHODS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise InputError(f"--percentile {percentile}: must be in (0, 100]")
    model = load_onnx(onnx_path, check=False)
    name, model_batch, hw, dtype = model_input(model)
    order = [name, *activation_tensors(model)]
    wanted = None
    if tensors is not None:
        wanted = set(tensors)
        if unknown := sorted(wanted - set(order)):
            raise InputError(f"{onnx_path}: no activation tensor named {', '.join(map(repr, unknown[:5]))}"
                             f"{' …' if len(unknown) > 5 else ''}")
    bins = num_bins or DEFAULT_NUM_BINS
    options = {
        "entropy": {"num_bins": bins, "num_quantized_bins": num_quantized_bins, "symmetric": False},
        "percentile": {"num_bins": bins, "percentile": percentile, "symmetric": False},
        "minmax": {"symmetric": False},
    }[method]
    notes = {"images": 0, "padded_images": 0, "model_batch": model_batch, "fallback_minmax": []}
    quiet = contextlib.redirect_stdout(io.StringIO())  # ORT's calibrators print progress lines
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trtbuild-calib-") as tmp:
        copy = Path(tmp) / "model.onnx"  # ORT writes '<model>-inferred.onnx' beside its input: keep it here
        shutil.copyfile(onnx_path, copy)
        with capture_fd_stderr(), quiet:
            calibrator = _make_calibrator(copy, Path(tmp) / "augmented.onnx", method, options, wanted)
        for batch in data:
            feeds, padded = _groups(np.asarray(batch), name, model_batch, hw, dtype)
            with contextlib.redirect_stdout(io.StringIO()):
                calibrator.collect_data(_reader(feeds))
            notes["images"] += len(batch)
            notes["padded_images"] += padded
        if not notes["images"]:
            raise InputError("no calibration data: the image iterable was empty")
        t1 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = calibrator.compute_data()
        collector = getattr(calibrator, "collector", None)
        observed = {k: (_as_float(v[2]), _as_float(v[3])) for k, v in (collector.histogram_dict.items()
                                                                        if collector else ())}
        del calibrator
    ranges = {}
    for tensor in [t for t in order if t in result]:
        lo, hi = (_as_float(v) for v in result[tensor].range_value)
        if lo > hi:  # the chosen window excludes the data: keep what was observed
            lo, hi = observed.get(tensor, (hi, lo))
            notes["fallback_minmax"].append(tensor)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            log.warning("tensor %s has a non-finite range (%s, %s); left out of the calibration", tensor, lo, hi)
            continue
        ranges[tensor] = (lo, hi)
    if wanted is not None and (missing := sorted(wanted - set(ranges))):
        log.warning("no range for %d requested tensor(s) (not float, or unknown shape): %s", len(missing), missing[:5])
    notes.update(collect_s=round(t1 - t0, 3), compute_s=round(time.perf_counter() - t1, 3))
    return ranges, notes


def compute_ranges(onnx_path, data: Iterable[np.ndarray], method: str = "entropy",
                   percentile: float = DEFAULT_PERCENTILE, num_bins: int | None = None,
                   tensors: Iterable[str] | None = None,
                   num_quantized_bins: int = DEFAULT_QUANTIZED_BINS) -> dict[str, tuple[float, float]]:
    """Per-tensor ``(min, max)`` (plain floats, graph order) of every float activation of ``onnx_path``
    (graph input and node outputs; only ``tensors`` if given) over ``data``, an iterable of [B,3,H,W] batches.

    ``method``: "minmax" (observed extremes), "entropy" (KL-optimal threshold), "percentile" (``percentile``
    of the values). For symmetric INT8 use ``amax(r)`` = max(|min|, |max|). ``num_bins`` defaults to 2048.
    """
    return _compute(onnx_path, data, method, percentile, num_bins, tensors, num_quantized_bins)[0]



def artifact_name(onnx_path: Path) -> str:
    """``yolov8n.sim.onnx`` → ``yolov8n`` (the ranges and table belong to the model, not to a stage of it)."""
    name = onnx_path.name[: -len(".onnx")] if onnx_path.name.endswith(".onnx") else onnx_path.stem
    return name[: -len(".sim")] if name.endswith(".sim") else name


def _resolve_imgsz(model, onnx_path: Path, hw, imgsz) -> tuple[int, int]:
    from ..graph import get_metadata
    from ..modelinfo import ModelInfo

    want = None if imgsz is None else ((imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz))
    if hw is not None:
        if want is not None and tuple(want) != hw:
            raise InputError(f"{onnx_path}: its input is fixed at {hw[0]}x{hw[1]}; calibrate at that size "
                             f"(drop --imgsz {want[0]},{want[1]})")
        return hw
    return tuple(want or ModelInfo.from_metadata(get_metadata(model)).imgsz or (640, 640))


def calibrate(onnx_path, images_dir="calib_data", out_dir=None, num: int = 512, batch: int = 8,
              method: str = "entropy", seed: int = 0, percentile: float = DEFAULT_PERCENTILE, force: bool = False,
              *, num_bins: int | None = None, tensors: Iterable[str] | None = None, imgsz=None,
              trt_version: str = DEFAULT_TRT_VERSION, progress: bool = False) -> StageResult:
    """Calibrate ``onnx_path`` on images under ``images_dir``: writes ``<name>.ranges.json`` (ranges, key,
    selection, skipped files; the stage report) and ``<name>.calib.cache`` (TensorRT table) into ``out_dir``
    (default: beside the model). Skipped when the key (model, each image, settings) is unchanged."""
    from ..graph import load_onnx

    src = Path(onnx_path)
    model = load_onnx(src, check=False)
    if method not in METHODS:
        raise InputError(f"--method {method!r}: one of {', '.join(METHODS)}")
    if batch < 1:
        raise InputError(f"--batch {batch}: must be ≥ 1")
    _, model_batch, hw, _ = model_input(model)
    hw = _resolve_imgsz(model, src, hw, imgsz)
    out_dir = Path(out_dir) if out_dir is not None else src.parent
    name = artifact_name(src)
    ranges_path, table_path = out_dir / f"{name}.ranges.json", out_dir / f"{name}.calib.cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewImagesWarning)  # said once, in the report and by the caller
        selected, skipped = select_images(images_dir, num, seed)
    header = table_header(trt_version)
    bins = num_bins or DEFAULT_NUM_BINS
    params = {"entropy": {"num_bins": bins, "num_quantized_bins": DEFAULT_QUANTIZED_BINS},
              "percentile": {"num_bins": bins, "percentile": percentile}, "minmax": {}}[method]
    params.update(tensors=sorted(tensors) if tensors is not None else None, table_header=header)
    key = calibration_key(src, selected, hw, method, batch, **params)
    if not force and (report := cached_report(ranges_path, key, [table_path])):
        return StageResult(ranges_path, ranges_path, report, skipped=True)

    t0 = time.perf_counter()
    data = CalibrationData(selected, hw, batch, progress=progress)
    ranges, notes = _compute(src, data, method, percentile, num_bins, tensors, DEFAULT_QUANTIZED_BINS)
    write_table(ranges, table_path, header)
    root = Path(images_dir)
    report = {
        "stage": STAGE, "key": key, "model": str(src), "method": method, "params": params, "imgsz": list(hw),
        "batch": batch, "model_batch": model_batch, "seed": seed, "num_requested": num, "images_dir": str(root),
        "images": [p.relative_to(root).as_posix() for p in selected],
        "skipped": [{"path": p.relative_to(root).as_posix(), "reason": r} for p, r in skipped],
        "warning": few_images_warning(len(selected)),
        "padded_images": notes["padded_images"], "fallback_minmax": notes["fallback_minmax"],
        "table": {"path": str(table_path), "header": header, "tensors": len(ranges)},
        "outputs": output_hashes([table_path]),
        "seconds": {"collect": notes["collect_s"], "compute": notes["compute_s"],
                    "total": round(time.perf_counter() - t0, 3)},
        "versions": {p: package_version(p) for p in ("onnxruntime", "onnx", "numpy")},
        "ranges": {k: [lo, hi] for k, (lo, hi) in ranges.items()},
    }
    write_json_atomic(ranges_path, report)
    return StageResult(ranges_path, ranges_path, report, skipped=False)


def load_ranges(path) -> dict[str, tuple[float, float]]:
    """The ranges of a ``<name>.ranges.json`` written by :func:`calibrate`."""
    from ..artifacts import read_json

    report = read_json(path)
    if not report or not isinstance(report.get("ranges"), dict):
        raise InputError(f"{path}: not a calibration ranges file; rerun `trtbuild calibrate`")
    return {k: (float(v[0]), float(v[1])) for k, v in report["ranges"].items()}


def describe_calibrate(res: StageResult) -> str:
    r = res.report
    if res.skipped:
        return f"calibrate {res.output} is up to date ({len(r['ranges'])} tensors, {len(r['images'])} images)"
    amaxes = [amax(v) for v in r["ranges"].values()] or [0.0]
    skipped = f" ({len(r['skipped'])} file(s) skipped)" if r["skipped"] else ""
    return (
        f"calibrate {r['model']}: {len(r['images'])} image(s) from {r['images_dir']}{skipped}, {r['method']}, "
        f"batch {r['batch']}, {r['imgsz'][0]}x{r['imgsz'][1]} → {len(r['ranges'])} tensors "
        f"(amax {min(amaxes):.3g}…{max(amaxes):.3g}, {r['seconds']['total']:.1f} s)"
    )


@click.command("calibrate")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(dir_okay=False))
@click.option("--images", "images_dir", default="calib_data", show_default=True, type=click.Path(file_okay=False),
              help="Folder of calibration images (searched recursively).")
@click.option("--num", default=512, show_default=True, type=click.IntRange(min=1), help="Images to use at most.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per calibration step (independent of the engine batch).")
@click.option("--method", default="entropy", show_default=True, type=click.Choice(METHODS))
@click.option("--percentile", default=DEFAULT_PERCENTILE, show_default=True,
              type=click.FloatRange(0, 100, min_open=True), help="Kept fraction of values, for --method percentile.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds which images are picked.")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False), help="[default: beside ONNX]")
@click.option("--force", is_flag=True, help="Rerun even when model, images and options are unchanged.")
def calibrate_command(onnx_path, images_dir, num, batch, method, percentile, seed, out_dir, force):
    """Measure INT8 activation ranges of ONNX on calibration images (on the CPU).

    Writes NAME.ranges.json (ranges and report) and NAME.calib.cache (TensorRT implicit-INT8 table).
    """
    res = calibrate(onnx_path, images_dir, out_dir, num, batch, method, seed, percentile, force, progress=True)
    r = res.report
    click.echo(describe_calibrate(res))
    if r.get("warning"):
        click.echo(f"warning: {r['warning']}", err=True)
    for s in r["skipped"][:10]:
        click.echo(f"skipped   {Path(r['images_dir']) / s['path']}: {s['reason']}")
    if len(r["skipped"]) > 10:
        click.echo(f"skipped   … and {len(r['skipped']) - 10} more (listed in {res.report_path})")
    click.echo(f"ranges    {res.report_path}")
    click.echo(f"table     {r['table']['path']} ({r['table']['header']})")
