"""Every artifact file name trtbuild writes (``engines/NAME.*``), decided here and nowhere else.

One model's artifacts share a folder and a base name: ``NAME.onnx`` (export), ``NAME.sim.onnx`` (simplify),
``NAME.fp16.onnx``, ``NAME.ranges.json`` + ``NAME.calib.cache`` (calibrate), ``NAME.int8.onnx``, ``NAME.int8fb.onnx``
(budget), ``NAME.PREC.engine`` + ``.engine.json`` + ``.engine.layers.json`` (build), ``NAME.precision.*``,
``NAME.bench.*``. ``model_name`` recovers NAME from any of them, so every stage finds its siblings the same way.
Two names derive from the exact file given instead (a stage applied to that file): ``X.sim.onnx`` for
``X.onnx`` (simplify) and ``X.nms.onnx`` / ``X.nms-efficient.onnx`` (NMS appended to ``X.onnx``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# suffixes of one model's ONNX artifacts, stripped (repeatedly) to get the model's base name
STAGE_SUFFIXES = (".int8fb", ".int8", ".fp16", ".sim", ".nms", ".nms-efficient")
TIMING_CACHE = "timing.cache"


def onnx_stem(path: str | Path) -> str:
    """``m.sim.onnx`` → ``m.sim``: the file name without its ``.onnx`` suffix."""
    name = Path(path).name
    return name[: -len(".onnx")] if name.endswith(".onnx") else Path(name).stem


def model_name(path: str | Path) -> str:
    """``engines/m.fp16.onnx`` → ``m``: the model name shared by all of one model's artifacts."""
    stem = onnx_stem(path)  # "m.fp16.engine" → "m.fp16" too
    changed = True
    while changed:
        changed = False
        for suffix in STAGE_SUFFIXES:
            if stem.endswith(suffix):
                stem, changed = stem[: -len(suffix)], True
    return stem


def model_stem(model: str | Path) -> str:
    """``models/shapes-yolov8n.pt`` → ``shapes-yolov8n``: the default NAME of an export."""
    return Path(model).stem


@dataclass(frozen=True)
class Layout:
    """The artifact paths of model ``name`` in ``folder``."""

    folder: Path
    name: str

    @classmethod
    def of(cls, artifact: str | Path) -> Layout:
        """The layout an artifact belongs to (its folder, its model name)."""
        artifact = Path(artifact)
        return cls(artifact.parent, model_name(artifact))

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.name}{suffix}"

    # export, simplify
    @property
    def onnx(self) -> Path:
        return self.file(".onnx")

    @property
    def export_report(self) -> Path:
        return self.file(".export.json")

    @property
    def sim(self) -> Path:
        return self.file(".sim.onnx")

    # precision
    def typed(self, tag: str) -> Path:
        """``NAME.<tag>.onnx`` for tag fp16, int8, int8fb."""
        return self.file(f".{tag}.onnx")

    def typed_report(self, tag: str) -> Path:
        return self.file(f".{tag}.json")

    @property
    def fp16(self) -> Path:
        return self.typed("fp16")

    @property
    def int8(self) -> Path:
        return self.typed("int8")

    @property
    def int8fb(self) -> Path:
        return self.typed("int8fb")

    @property
    def ranges(self) -> Path:
        return self.file(".ranges.json")

    @property
    def calib_table(self) -> Path:
        return self.file(".calib.cache")

    @property
    def trt_calib_table(self) -> Path:
        """TensorRT's own table from live calibration (never mixed with trtbuild's ``.calib.cache``)."""
        return self.file(".trt-calib.cache")

    @property
    def qat_checkpoint(self) -> Path:
        """``NAME-qat.pt``: the INT8 quantization-aware-trained checkpoint (its own NAME: ``NAME-qat``)."""
        return self.folder / f"{self.name}-qat.pt"

    @property
    def qat_report(self) -> Path:
        return self.file(".qat.json")

    @property
    def budget(self) -> Path:
        return self.file(".budget.json")

    def precision_report(self, ext: str) -> Path:
        return self.file(f".precision.{ext}")

    # engines
    def engine(self, precision: str, nms: str | None = None, dla_core: int | None = None,
               flavor: str = "tensorrt") -> Path:
        """``NAME.PREC[-nms][.dlaN][.rtx].engine``: a TensorRT-RTX engine never overwrites a standard one."""
        suffix = (f".{precision}" + ("-nms" if nms else "") + (f".dla{dla_core}" if dla_core is not None else "")
                  + (".rtx" if flavor == "rtx" else ""))
        return self.file(f"{suffix}.engine")

    def runtime_cache(self, engine: Path) -> Path:
        """TensorRT-RTX's runtime cache (its JIT results on this GPU) beside ``engine``."""
        return engine.with_name(engine.name + ".runtime.cache")

    @property
    def timing_cache(self) -> Path:
        return self.folder / TIMING_CACHE

    # measurements
    def bench(self, ext: str) -> Path:
        return self.file(f".bench.{ext}")

    def stream_bench(self, ext: str) -> Path:
        """``NAME.streams.{json,md}``: ``bench --streams``."""
        return self.file(f".streams.{ext}")

    @property
    def eval_report(self) -> Path:
        return self.file(".eval.json")


def sim_path(onnx_path: str | Path) -> Path:
    """``engines/yolov8n.onnx`` → ``engines/yolov8n.sim.onnx`` (simplify's default output)."""
    p = Path(onnx_path)
    return p.with_name(onnx_stem(p) + ".sim.onnx")


def simplify_report_path(out: str | Path) -> Path:
    """``m.sim.onnx`` → ``m.simplify.json``; any other output name ``X.onnx`` → ``X.simplify.json``."""
    out = Path(out)
    if out.name.endswith(".sim.onnx"):
        return out.with_name(out.name[: -len(".sim.onnx")] + ".simplify.json")
    return out.with_suffix(".simplify.json")


def nms_path(onnx_path: str | Path, variant: str) -> Path:
    """``m.sim.onnx`` → ``m.sim.nms.onnx`` (``variant`` "onnx") or ``m.sim.nms-efficient.onnx``."""
    p = Path(onnx_path)
    tag = "nms" if variant == "onnx" else f"nms-{variant}"
    return p.with_name(f"{onnx_stem(p)}.{tag}.onnx")


def check_report(onnx_path: str | Path) -> Path:
    """``X.onnx`` → ``X.check.json``: what ``trtbuild check`` found in it."""
    p = Path(onnx_path)
    return p.with_name(onnx_stem(p) + ".check.json")


def ultralytics_engine(engine: str | Path) -> Path:
    """``X.fp16.engine`` → ``X.fp16.ultralytics.engine``: the copy with ultralytics' metadata header."""
    engine = Path(engine)
    return engine.with_name(f"{engine.stem}.ultralytics{engine.suffix}")


def onnx_report_path(onnx_path: str | Path) -> Path:
    """``X.onnx`` → ``X.json``: the report beside an ONNX a stage wrote (NMS)."""
    return Path(onnx_path).with_suffix(".json")


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def layers_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".layers.json")


def engine_of_layers(path: str | Path) -> Path | None:
    """``X.engine.layers.json`` → ``X.engine``; None for any other name."""
    path = Path(path)
    return path.with_name(path.name[: -len(".layers.json")]) if path.name.endswith(".layers.json") else None


def report_for(artifact: str | Path) -> Path | None:
    """The stage report that records how ``artifact`` was made (its inputs, its sha256); None for a file no stage
    report describes. ``X.onnx`` → ``X.export.json``, ``X.sim.onnx`` → ``X.simplify.json``, ``X.fp16.onnx`` →
    ``X.fp16.json`` (int8, int8fb alike), ``X.calib.cache`` → ``X.ranges.json``, ``X.engine`` → its sidecar."""
    artifact = Path(artifact)
    name = artifact.name
    if name.endswith(".engine"):
        return sidecar_path(artifact)
    if name.endswith(".calib.cache"):
        return artifact.with_name(name[: -len(".calib.cache")] + ".ranges.json")
    if not name.endswith(".onnx"):
        return None
    stem = onnx_stem(artifact)
    for tag in (".fp16", ".int8", ".int8fb"):
        if stem.endswith(tag):
            return artifact.with_name(stem + ".json")
    if stem.endswith(".nms") or stem.endswith(".nms-efficient"):
        return onnx_report_path(artifact)
    if stem.endswith(".sim"):
        return simplify_report_path(artifact)
    return artifact.with_name(stem + ".export.json")
