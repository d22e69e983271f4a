"""Activation ranges of an ONNX model over letterboxed calibration batches.

``percentile`` (the default), ``mse`` and ``minmax`` come from trtbuild's one-pass collector (``collect.py``:
exact min/max and |x| histograms from one ONNX Runtime run per batch) and the threshold choice of ``clip.py``;
a range is ``(max(min, −amax), min(max, amax))``, what symmetric INT8 with that amax represents.

``entropy`` (TensorRT's KL method) keeps ONNX Runtime's calibrators (``onnxruntime.quantization.calibrate``),
whose threshold search is the slow part (~0.6 s per tensor). What is ours there, and why:

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ...artifacts import read_json
from ...config import CALIB_METHODS as METHODS
from ...config import DEFAULT_PERCENTILE
from ...console import capture_fd_stderr, progress_bar
from ...errors import InputError
from ...onnx.graph import load_onnx
from ...onnx.modelinfo import ModelInfo
from ...vision.batch import pad_batch
from ...vision.io import read_image
from ...vision.letterbox import letterbox_batch
from .clip import mse_amax, percentile_amax
from .collect import DEFAULT_BINS, collect_stats

log = logging.getLogger(__name__)

DEFAULT_NUM_BINS = DEFAULT_BINS
DEFAULT_QUANTIZED_BINS = 255


class CalibrationData:
    """Calibration batches ``[b, 3, H, W]`` float32 (b ≤ ``batch``), made by ``letterbox_batch``, the inference
    preprocessing, so the ranges are measured on exactly what the engine will see."""

    def __init__(self, images: Sequence[str | os.PathLike], imgsz: int | tuple[int, int], batch: int = 8,
                 progress: bool = False):
        if batch < 1:
            raise InputError(f"batch={batch}: must be ≥ 1", param="batch")
        self.images = [Path(p) for p in images]
        self.imgsz = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else tuple(map(int, imgsz))
        self.batch = int(batch)
        self.progress = progress

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)

    def __iter__(self):
        with progress_bar(total=len(self.images), desc="calibrate", unit="img", disable=not self.progress) as bar:
            for start in range(0, len(self.images), self.batch):
                frames = [read_image(p) for p in self.images[start : start + self.batch]]
                if (bad := next((p for p, f in zip(self.images[start:], frames) if f is None), None)) is not None:
                    raise InputError(f"calibration image {bad} can no longer be read; rerun the calibration")
                bar.update(len(frames))
                yield letterbox_batch(frames, self.imgsz)[0]


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
        if len(part) < model_batch:  # calibration never sees invented pixels: repeat this group's own images
            padded += model_batch - len(part)
            part = pad_batch(part, model_batch, "repeat")
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


def measure_ranges(onnx_path, data: Iterable[np.ndarray], method: str, percentile: float, num_bins: int | None,
             tensors: Iterable[str] | None, num_quantized_bins: int) -> tuple[dict, dict]:
    if method not in METHODS:
        raise InputError(f"method={method!r}: one of {', '.join(METHODS)}", param="method")
    if method == "percentile" and not 0 < percentile <= 100:
        raise InputError(f"percentile={percentile}: must be in (0, 100]", param="percentile")
    if method != "entropy":
        return _one_pass_ranges(onnx_path, data, method, percentile, num_bins, tensors)
    return _ort_ranges(onnx_path, data, method, percentile, num_bins, tensors, num_quantized_bins)


def _one_pass_ranges(onnx_path, data, method: str, percentile: float, num_bins: int | None,
                     tensors: Iterable[str] | None) -> tuple[dict, dict]:
    model = load_onnx(onnx_path, check=False)
    info = ModelInfo.of_onnx(model)
    order = [info.input.name, *activation_tensors(model)]
    wanted = order if tensors is None else list(dict.fromkeys(tensors))
    t0 = time.perf_counter()
    stats, notes = collect_stats(onnx_path, data, wanted, num_bins or DEFAULT_NUM_BINS)
    t1 = time.perf_counter()
    ranges = {}
    for tensor in [t for t in order if t in stats]:
        st = stats[tensor]
        if method == "minmax":
            amax = st.amax
        elif method == "mse":
            amax = mse_amax(st.hist, st.width)
        else:
            amax = percentile_amax(st.hist, st.width, percentile)
        amax = min(max(amax, 0.0), st.amax)
        ranges[tensor] = (max(st.lo, -amax), min(st.hi, amax))
    if tensors is not None and (missing := sorted(set(wanted) - set(ranges))):
        log.warning("no range for %d requested tensor(s) (not float): %s", len(missing), missing[:5])
    notes.update(model_batch=info.batch, fallback_minmax=[], collector="one-pass",
                 collect_s=round(t1 - t0, 3), compute_s=round(time.perf_counter() - t1, 3))
    return ranges, notes


def _ort_ranges(onnx_path, data, method: str, percentile: float, num_bins: int | None,
                tensors: Iterable[str] | None, num_quantized_bins: int) -> tuple[dict, dict]:
    model = load_onnx(onnx_path, check=False)
    info = ModelInfo.of_onnx(model)
    name, model_batch, hw = info.input.name, info.batch, info.static_hw
    dtype = np.float16 if info.input.dtype == "float16" else np.float32
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
    notes.update(collector="onnxruntime", collect_s=round(t1 - t0, 3), compute_s=round(time.perf_counter() - t1, 3))
    return ranges, notes


def compute_ranges(onnx_path, data: Iterable[np.ndarray], method: str = "percentile",
                   percentile: float = DEFAULT_PERCENTILE, num_bins: int | None = None,
                   tensors: Iterable[str] | None = None,
                   num_quantized_bins: int = DEFAULT_QUANTIZED_BINS) -> dict[str, tuple[float, float]]:
    """Per-tensor ``(min, max)`` (plain floats, graph order) of every float activation of ``onnx_path``
    (graph input and node outputs; only ``tensors`` if given) over ``data``, an iterable of [B,3,H,W] batches.

    ``method``: "percentile" (``percentile`` of |x|), "mse" (least quantization error), "minmax" (observed
    extremes), "entropy" (KL-optimal threshold, ONNX Runtime's calibrator). For symmetric INT8 use ``amax(r)`` =
    max(|min|, |max|). ``num_bins`` defaults to 2048.
    """
    return measure_ranges(onnx_path, data, method, percentile, num_bins, tensors, num_quantized_bins)[0]


def load_ranges(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """The ranges of a ``<name>.ranges.json`` written by :func:`calibrate`."""
    report = read_json(path)
    if not report or not isinstance(report.get("ranges"), dict):
        raise InputError(f"{path}: not a calibration ranges file; rerun `trtbuild calibrate`")
    if not report["ranges"]:
        raise InputError(f"{path}: holds no ranges; rerun `trtbuild calibrate` on the model")
    return {k: (float(v[0]), float(v[1])) for k, v in report["ranges"].items()}
