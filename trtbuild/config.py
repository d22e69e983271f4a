"""Every stage's typed config, in one place: defaults shared by the CLI and the Python API.

A stage is ``stage(input artifact(s), config) -> StageResult``. ``to_dict()`` is what enters the stage's cache key
and report: the fields that change what it computes. ``force``, ``out_dir``, ``name``, ``out``, ``strict`` and
``overwrite`` choose where and whether it runs, never what it computes, so they stay out of the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InputError

DEFAULT_MODEL = "yolov8n.yaml"
REFERENCE_MODEL = "models/shapes-yolov8n.pt"  # the project's trained reference model, relative to the repository
DEFAULT_OUT_DIR = Path("engines")
DEFAULT_CALIB = Path("calib_data")
DEFAULT_OPSET = 17  # parsed by TensorRT 10.3 (JetPack 6) through 11.x, ONNX Runtime and onnxsim alike
PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("percentile", "mse", "minmax", "entropy")
RECONSTRUCT_METHODS = ("none", "adaquant", "adaround")  # learned INT8 weights + scales (stages/precision/reconstruct)
INT8_MODES = ("auto", "qdq", "table", "calibrate")
HW_COMPAT = ("none", "ampere+", "same-cc")
NMS_VARIANTS = ("onnx", "efficient")
TRT_FLAVORS = ("auto", "tensorrt", "rtx")
DEFAULT_PERCENTILE = 99.9999
MIN_CALIB_IMAGES = 8  # fewer calibration images than this: refused (ranges from a handful of images are noise)
DEFAULT_TRT_TABLE_VERSION = "10.3.0"  # JetPack 6, the oldest TensorRT that still reads implicit-INT8 tables here
_RUN_FIELDS = ("force", "overwrite", "out_dir", "name", "out", "strict")


MAX_IMGSZ = 8192  # beyond this an input's activations alone need tens of GiB
DEFAULT_IMGSZ = (640, 640)  # the size YOLO models are trained and exported at (ModelInfo's fallback too)
DEFAULT_STRIDE = 32  # the largest stride of a YOLO detect head
HEAD_STRIDES = (8, 16, 32)  # the strides of a YOLOv8/YOLO11/YOLO26 detect head's three scales


def parse_imgsz(value: int | str | tuple | list, param: str = "imgsz") -> tuple[int, int]:
    """``640`` → (640, 640); ``"320,480"`` or ``(320, 480)`` → (H, W). Sizes must be positive multiples of 32."""
    if isinstance(value, int):
        hw = (value, value)
    elif isinstance(value, (tuple, list)):
        hw = tuple(int(v) for v in value)
    else:
        parts = [p for p in str(value).replace("x", ",").split(",") if p.strip()]
        try:
            hw = tuple(int(p) for p in parts)
        except ValueError:
            raise InputError(f"{param}={value!r}: expected an integer or H,W (e.g. 640 or 384,640)",
                             param=param) from None
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or any(v <= 0 or v % 32 for v in hw):
        raise InputError(f"{param}={value!r}: expected one or two positive multiples of 32 (e.g. 640 or 384,640)",
                         param=param)
    if max(hw) > MAX_IMGSZ:
        raise InputError(f"{param}={value!r}: larger than {MAX_IMGSZ} (a {hw[0]}x{hw[1]} input needs "
                         f"~{hw[0] * hw[1] * 3 * 4 * 40 / 2**30:.0f} GiB of activations); YOLOv8 runs at 320-1280",
                         param=param)
    return hw  # type: ignore[return-value]


def parse_target_cc(value: str | tuple | list) -> tuple[str, ...]:
    """``"8.6,8.9,12"`` or ``("8.6", 12.0)`` → ``("8.6", "8.9", "12.0")``; ``current`` is kept as a word."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out = []
    for item in (i.strip() for i in items if str(i).strip()):
        if item != "current":
            try:
                major, _, minor = item.partition(".")
                item = f"{int(major)}.{int(minor or 0)}"
            except ValueError:
                raise InputError(f"target_cc={value!r}: expected compute capabilities like 8.6,8.9,12.0 or current",
                                 param="target_cc") from None
        out.append(item)
    if not out:
        raise InputError(f"target_cc={value!r}: name at least one compute capability (e.g. 8.6)", param="target_cc")
    return tuple(dict.fromkeys(out))


def parse_precisions(value: str) -> list[str]:
    """``"all"`` → every precision; ``"fp16,int8"`` → both; unknown names are an error."""
    names = list(PRECISIONS) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in PRECISIONS]
    if bad or not names:
        raise InputError(f"precision={value!r}: choose from {', '.join(PRECISIONS)} or 'all'", param="precision")
    return names


def _choice(param: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"{param}={value!r}: expected one of {', '.join(map(str, choices))}", param=param)


def _plain_name(param: str, value: str | None) -> None:
    """An artifact base name: a file name inside the chosen folder, never a path out of it."""
    if value is not None and (not value or value in (".", "..") or any(c in value for c in "/\\\0")):
        raise InputError(f"{param}={value!r}: a file name without folders (outputs go into the out_dir folder)", param=param)


def _enough_calibration_images(param: str, num: int) -> None:
    if num < MIN_CALIB_IMAGES:
        raise InputError(f"{param}={num}: calibration needs at least {MIN_CALIB_IMAGES} images (≥ 100 recommended); "
                         "ranges from fewer are noise", param=param)


def _at_least(param: str, value, low) -> None:
    if value is not None and value < low:
        raise InputError(f"{param}={value}: must be ≥ {low}", param=param)


@dataclass(frozen=True)
class StageConfig:
    """Base of every stage config: ``force`` reruns the stage even when its key says it is up to date;
    ``overwrite`` lets its outputs replace files trtbuild did not write (or that were changed since it wrote them)."""

    force: bool = field(default=False, kw_only=True)
    overwrite: bool = field(default=False, kw_only=True)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in _RUN_FIELDS}


@dataclass(frozen=True)
class ExportConfig(StageConfig):
    """ultralytics → ONNX. ``dynamic`` makes the batch axis dynamic; ``dynamic_hw`` also height and width."""

    imgsz: tuple[int, int] = DEFAULT_IMGSZ
    batch: int = 1
    dynamic: bool = False
    dynamic_hw: bool = False
    opset: int = DEFAULT_OPSET
    seed: int = 0  # seeds the random init of a .yaml model so its export is reproducible
    out_dir: Path = DEFAULT_OUT_DIR
    name: str | None = None  # artifact base name [default: the model file's stem]

    def __post_init__(self):
        object.__setattr__(self, "imgsz", parse_imgsz(self.imgsz))
        _at_least("batch", self.batch, 1)
        _plain_name("name", self.name)
        if self.dynamic_hw and not self.dynamic:
            object.__setattr__(self, "dynamic", True)


@dataclass(frozen=True)
class SimplifyConfig(StageConfig):
    """onnxsim plus a parity check on random input against the unsimplified model."""

    rtol: float = 1e-4  # max |a-b| / max |a| allowed between the two models' outputs
    seed: int = 0
    check_batch: int = 2  # batch used for the parity run when the batch axis is dynamic
    out: Path | None = None  # [default: NAME.sim.onnx beside the input]
    strict: bool = False  # a failed or non-equivalent simplification is an error instead of keeping the original


@dataclass(frozen=True)
class NmsConfig(StageConfig):
    """NMS appended to a detect ONNX: output ``detections`` [B, max_det, 6]."""

    variant: str = "onnx"  # "onnx" (NonMaxSuppression) or "efficient" (EfficientNMS_TRT)
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    out: Path | None = None  # [default: X.nms.onnx / X.nms-efficient.onnx beside the input X.onnx]

    def __post_init__(self):
        _choice("nms", self.variant, NMS_VARIANTS)
        for param, value in (("conf", self.conf), ("iou", self.iou)):
            if not 0 <= value <= 1:
                raise InputError(f"{param}={value}: must lie in [0, 1]", param=param)


@dataclass(frozen=True)
class FP16Config(StageConfig):
    """FP16-typed ONNX: nodes whose values exceed ``max_abs`` on ``images`` (the box decode) stay FP32."""

    images: tuple[Path, ...] = ()  # calibration images; the first ``range_images`` decide what stays FP32
    imgsz: tuple[int, int] | None = None  # None: the model's own size (static input, else its metadata)
    max_abs: float = 512.0
    keep_io_types: bool = True
    range_images: int = 32

    def __post_init__(self):
        object.__setattr__(self, "images", tuple(Path(p) for p in self.images))


@dataclass(frozen=True)
class CalibrateConfig(StageConfig):
    """INT8 activation ranges measured with ONNX Runtime on letterboxed images, and the TensorRT 10 table."""

    images: Path = DEFAULT_CALIB  # folder of calibration images, searched recursively
    num: int = 512
    batch: int = 8
    method: str = "percentile"
    seed: int = 0
    percentile: float = DEFAULT_PERCENTILE
    num_bins: int | None = None  # None: 2048
    tensors: tuple[str, ...] | None = None  # only these activations (None: every float activation)
    imgsz: tuple[int, int] | None = None  # None: the model's own size
    trt_version: str = DEFAULT_TRT_TABLE_VERSION  # TensorRT version named in the table header
    out_dir: Path | None = None  # [default: beside the model]

    def __post_init__(self):
        object.__setattr__(self, "images", Path(self.images))
        if self.tensors is not None:
            object.__setattr__(self, "tensors", tuple(sorted(self.tensors)))
        _choice("method", self.method, CALIB_METHODS)
        _enough_calibration_images("num", self.num)
        _at_least("batch", self.batch, 1)
        if not 0 < self.percentile <= 100:
            raise InputError(f"percentile={self.percentile}: must be in (0, 100]", param="percentile")


@dataclass(frozen=True)
class Int8Config(StageConfig):
    """Q/DQ ONNX from calibration ranges; ``exclude`` names convs kept float (the budget's fallback)."""

    exclude: tuple[str, ...] = ()
    tag: str = "int8"  # NAME.<tag>.onnx: "int8", or "int8fb" for the budget's fallback model
    reconstruct: str = "none"  # adaquant / adaround: learn the int8 weights and activation scales on calibration images
    reconstruct_images: int = 512  # calibration images (of those the ranges were measured on) it fits on
    reconstruct_steps: int = 1200  # optimizer steps (4 windows of 320x320 each)

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(sorted(set(self.exclude))))
        _choice("reconstruct", self.reconstruct, RECONSTRUCT_METHODS)
        _at_least("reconstruct_images", self.reconstruct_images, 1)
        _at_least("reconstruct_steps", self.reconstruct_steps, 0)


@dataclass(frozen=True)
class QatConfig(StageConfig):
    """INT8 quantization-aware training through ultralytics' ``quantize=8`` (NVIDIA ModelOpt fake quantization)."""

    data: Path | None = None  # YOLO data set with a train split (data.yaml or its folder): required
    epochs: int = 10
    imgsz: int = DEFAULT_IMGSZ[0]  # training size (square)
    batch: int = 16
    lr0: float = 0.001  # fine-tuning a trained model: 1/10 of ultralytics' from-scratch default
    fraction: float = 1.0  # share of the train split used
    device: str = "cpu"
    workers: int = 2
    seed: int = 0
    out_dir: Path = DEFAULT_OUT_DIR
    name: str | None = None  # NAME of NAME-qat.pt [default: the model file's stem]

    def __post_init__(self):
        if self.data is None:
            raise InputError("data=None: quantization-aware training needs a labelled data set with a train split "
                             "(a data.yaml or its folder)", param="data")
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        _plain_name("name", self.name)
        for param in ("epochs", "imgsz", "batch"):
            _at_least(param, getattr(self, param), 1)
        _at_least("workers", self.workers, 0)
        if not 0 < self.fraction <= 1:
            raise InputError(f"fraction={self.fraction}: must be in (0, 1]", param="fraction")


@dataclass(frozen=True)
class BuildConfig(StageConfig):
    """Every choice of an engine build; the defaults are what ``trtbuild build`` uses."""

    precision: str = "fp16"
    int8_mode: str = "auto"  # qdq: Q/DQ ONNX; table: implicit INT8 reading the calibration table (10.x);
    #                          calibrate: live IInt8EntropyCalibrator2 (10.x); auto: qdq
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    min_hw: tuple[int, int] | None = None
    opt_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] | None = None
    workspace_mb: int | None = None  # None: 4096, or 1024 on an integrated GPU
    opt_level: int = 3
    hardware_compat: str = "none"
    version_compatible: bool = False
    dla_core: int | None = None
    gpu_fallback: bool = True
    profiling_verbosity: str = "detailed"
    strongly_typed: bool | None = None  # None: decided by the TensorRT version (compat)
    nms: str | None = None  # None, "onnx" (NonMaxSuppression) or "efficient" (EfficientNMS_TRT)
    calib_images: str = str(DEFAULT_CALIB)  # int8_mode "calibrate": the images TensorRT calibrates on
    flavor: str = "auto"  # tensorrt (10.x/11.x), rtx (TensorRT-RTX), auto: tensorrt where it imports, else rtx
    target_cc: tuple[str, ...] | None = None  # rtx: compute capabilities ("8.6", …, "current"); None: portable set
    out_dir: Path = DEFAULT_OUT_DIR
    name: str | None = None  # engine base name [default: the ONNX's model name]

    def __post_init__(self):
        _plain_name("name", self.name)
        _choice("precision", self.precision, PRECISIONS)
        _choice("int8_mode", self.int8_mode, INT8_MODES)
        _choice("hardware_compat", self.hardware_compat, HW_COMPAT)
        _choice("flavor", self.flavor, TRT_FLAVORS)
        if self.target_cc is not None:
            object.__setattr__(self, "target_cc", parse_target_cc(self.target_cc))
        if self.nms is not None:
            _choice("nms", self.nms, NMS_VARIANTS)
        if not 0 <= self.opt_level <= 5:
            raise InputError(f"opt_level={self.opt_level}: TensorRT's builder optimization level is 0..5",
                             param="opt_level")
        for param in ("min_batch", "opt_batch", "max_batch"):
            _at_least(param, getattr(self, param), 1)
        batches = [b for b in (self.min_batch, self.opt_batch, self.max_batch) if b is not None]
        if batches != sorted(batches):
            raise InputError(f"batch profile must satisfy min_batch ≤ opt_batch ≤ max_batch, got {self.min_batch}/"
                             f"{self.opt_batch}/{self.max_batch}")
        for param in ("min_hw", "opt_hw", "max_hw"):
            if getattr(self, param) is not None:
                object.__setattr__(self, param, parse_imgsz(getattr(self, param), param))


@dataclass(frozen=True)
class CheckConfig(StageConfig):
    """The preflight parse: which TensorRT flavor parses the ONNX (``auto``: the one a build would use)."""

    flavor: str = "auto"

    def __post_init__(self):
        _choice("flavor", self.flavor, TRT_FLAVORS)


@dataclass(frozen=True)
class BudgetConfig(StageConfig):
    """The INT8 accuracy budget: convs fall back to float until mAP50-95 drops ≤ ``max_map_drop`` points."""

    data: Path | None = None  # YOLO data set (data.yaml or its folder): required
    split: str = "val"
    max_map_drop: float = 1.0
    images: tuple[Path, ...] | None = None  # held-out images for the sensitivity ranking [default: calibration's]
    sensitivity_images: int = 16
    imgsz: tuple[int, int] | None = None
    limit: int | None = None  # evaluate the first N images only
    candidates: tuple[str, ...] | None = None  # convs that may fall back [default: every quantized conv]
    int8: Int8Config = field(default_factory=Int8Config)  # how NAME.int8.onnx and each fallback are made

    def __post_init__(self):
        if self.data is None:
            raise InputError("data=None: the accuracy budget needs an eval data set (a data.yaml or its folder)",
                             param="data")
        object.__setattr__(self, "data", Path(self.data))
        if self.images is not None:
            object.__setattr__(self, "images", tuple(Path(p) for p in self.images))
        if self.candidates is not None:
            object.__setattr__(self, "candidates", tuple(self.candidates))
        _at_least("max_map_drop", self.max_map_drop, 0)
        _at_least("sensitivity_images", self.sensitivity_images, 1)
        _at_least("limit", self.limit, 1)


@dataclass(frozen=True)
class ReportConfig(StageConfig):
    """The precision report: mAP and output error of every ONNX variant beside the simplified model."""

    data: Path | None = None  # YOLO data set: required
    split: str = "val"
    variants: tuple[tuple[str, Path], ...] | None = None  # (label, path); default: those beside the model
    compare_images: tuple[Path, ...] | None = None  # [default: the first ``num_compare`` images of the split]
    num_compare: int = 8
    limit: int | None = None
    out_prefix: Path | None = None  # writes PREFIX.precision.{json,md,png} [default: NAME beside the model]
    budget_json: Path | None = None  # mAP figures to reuse [default: NAME.budget.json beside the model]

    def __post_init__(self):
        if self.data is None:
            raise InputError("data=None: the precision report needs an eval data set (a data.yaml or its folder)",
                             param="data")
        object.__setattr__(self, "data", Path(self.data))
        if isinstance(self.variants, dict):
            object.__setattr__(self, "variants", tuple((k, Path(v)) for k, v in self.variants.items()))
        if self.compare_images is not None:
            object.__setattr__(self, "compare_images", tuple(Path(p) for p in self.compare_images))
        _at_least("num_compare", self.num_compare, 1)
        _at_least("limit", self.limit, 1)


@dataclass(frozen=True)
class EvalConfig:
    """``trtbuild eval``: ultralytics' val protocol (conf 0.001, IoU 0.7, max_det 300, multi-label NMS) on ``split``
    of the YOLO data set ``data``; ``limit``: the first N images; ``report``: the JSON report's path."""

    data: Path | None = None  # a data.yaml, or a folder holding one: required
    split: str = "val"
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    batch: int | None = None
    limit: int | None = None
    report: Path | None = None
    overwrite: bool = False

    def __post_init__(self):
        if self.data is None:
            raise InputError("data=None: evaluation needs a data set (a data.yaml or its folder)", param="data")
        object.__setattr__(self, "data", Path(self.data))
        if self.report is not None:
            object.__setattr__(self, "report", Path(self.report))
        _at_least("batch", self.batch, 1)
        _at_least("limit", self.limit, 1)
        _at_least("max_det", self.max_det, 1)


@dataclass(frozen=True)
class BenchConfig:
    """``trtbuild bench``: each model at each of ``batches`` (None: 1 plus each static model's own batch), ``warmup``
    untimed then ``iters`` timed calls over ``images`` (None: ultralytics' bus and zidane photos); ``imgsz`` for
    dynamic-H/W models; ``gpu_preprocess``: a TensorRT runner letterboxes on the GPU into its input buffer."""

    batches: tuple[int, ...] | None = None
    warmup: int | None = None  # None: 10 (the Triton load test: 2 per client)
    iters: int = 100
    images: Path | None = None
    imgsz: tuple[int, int] | None = None
    conf: float = 0.25
    iou: float = 0.7
    gpu_preprocess: bool = True

    def __post_init__(self):
        if self.batches is not None:
            object.__setattr__(self, "batches", tuple(int(b) for b in self.batches))
            if not self.batches or min(self.batches) < 1:
                raise InputError(f"batches={self.batches}: batch sizes must be positive integers", param="batches")
        _at_least("warmup", self.warmup, 0)
        _at_least("iters", self.iters, 1)
        if self.images is not None:
            object.__setattr__(self, "images", Path(self.images))
        if self.imgsz is not None:
            object.__setattr__(self, "imgsz", parse_imgsz(self.imgsz))


@dataclass(frozen=True)
class StreamConfig:
    """A streaming run (``trtbuild infer``, ``trtbuild.stream``, ``bench --streams``): thresholds, batching, outputs.

    ``batch``: frames per model call, filled across streams (None: the model's static batch, else the number of
    streams, at most 8); ``max_wait_ms``: how long a batch may wait for more frames; ``buffers``: batch buffers in
    the ring (bounds memory and, for live sources, latency); ``vid_stride``: every n-th frame of a video or live
    source; ``reconnect_s``: how long a lost live source is retried (None: until stopped); ``devices``: one engine
    per GPU and ``contexts`` execution contexts on each (TensorRT); ``keep_frames``: results carry the original
    image (the Python API's drawing; ``save_dir`` implies it)."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    batch: int | None = None
    max_wait_ms: float = 20.0
    buffers: int = 3
    vid_stride: int = 1
    reconnect_s: float | None = None
    devices: tuple[int, ...] | None = None
    contexts: int = 2  # TensorRT: execution contexts per device (batches in flight), sharing one engine
    json_path: Path | None = None
    save_dir: Path | None = None
    keep_frames: bool = False
    overwrite: bool = False

    def __post_init__(self):
        for param, value in (("conf", self.conf), ("iou", self.iou)):
            if not 0 <= value <= 1:
                raise InputError(f"{param}={value}: must lie in [0, 1]", param=param)
        _at_least("max_det", self.max_det, 1)
        _at_least("batch", self.batch, 1)
        _at_least("max_wait_ms", self.max_wait_ms, 0)
        _at_least("buffers", self.buffers, 2)
        _at_least("vid_stride", self.vid_stride, 1)
        _at_least("contexts", self.contexts, 1)
        if self.devices is not None:
            object.__setattr__(self, "devices", tuple(int(d) for d in self.devices))
        for param in ("json_path", "save_dir"):
            if getattr(self, param) is not None:
                object.__setattr__(self, param, Path(getattr(self, param)))


DEPLOY_BACKENDS = ("auto", "tensorrt", "onnxruntime", "python")


@dataclass(frozen=True)
class DeployConfig(StageConfig):
    """A Triton model repository: the detector, a preprocess and a postprocess model, and the ensemble of the three."""

    out: Path = Path("model_repository")
    name: str | None = None  # the detector's model name [default: the model file's base name]
    backend: str = "auto"  # auto: tensorrt (an engine) / onnxruntime (an ONNX); python: trtbuild's ONNX Runtime runner
    max_batch: int | None = None  # Triton's max_batch_size [default: the engine profile's max batch; 8 for an ONNX]
    instances: int = 1  # model instances (per GPU where gpus are given)
    gpus: tuple[int, ...] | None = None
    max_queue_delay_us: int = 500  # how long dynamic batching waits to fill a batch
    preferred_batch: tuple[int, ...] | None = None  # [default: the profile's opt and max batch]
    cuda_graphs: bool = False  # tensorrt_plan: optimization { cuda { graphs: true } }
    warmup: int = 0  # zero-image warm-up requests Triton sends the detector at load
    conf: float = 0.25  # the postprocess model's thresholds (those of `trtbuild infer`)
    iou: float = 0.7
    max_det: int = 300
    config_override: str | None = None  # a config.pbtxt fragment merged into the detector's config

    def __post_init__(self):
        _plain_name("name", self.name)
        object.__setattr__(self, "out", Path(self.out))
        _choice("backend", self.backend, DEPLOY_BACKENDS)
        _at_least("instances", self.instances, 1)
        if self.max_batch is not None:
            _at_least("max_batch", self.max_batch, 1)
        if self.preferred_batch is not None:
            object.__setattr__(self, "preferred_batch", tuple(int(b) for b in self.preferred_batch))
            if not self.preferred_batch or min(self.preferred_batch) < 1:
                raise InputError(f"preferred_batch={self.preferred_batch}: give positive batch sizes, e.g. 4,8",
                                 param="preferred_batch")
        _at_least("max_queue_delay_us", self.max_queue_delay_us, 0)
        _at_least("warmup", self.warmup, 0)
        _at_least("max_det", self.max_det, 1)
        if self.gpus is not None:
            object.__setattr__(self, "gpus", tuple(int(g) for g in self.gpus))
        for param, value in (("conf", self.conf), ("iou", self.iou)):
            if not 0 <= value <= 1:
                raise InputError(f"{param}={value}: must lie in [0, 1]", param=param)


@dataclass(frozen=True)
class UltralyticsConfig(StageConfig):
    """An engine with ultralytics' metadata header, for ``YOLO("x.engine")``."""

    out: Path | None = None  # [default: <engine stem>.ultralytics.engine beside it]

    def __post_init__(self):
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))


@dataclass(frozen=True)
class PipelineConfig:
    """``make engine``: every stage from a model file to engines, as far as this host allows.

    Each stage's own config is nested; the pipeline fills in only what it learns on the way (the model's input
    size, the tensors to calibrate, the batch profile, this host's TensorRT flavor) and the run-wide ``force`` /
    ``overwrite``. ``budget`` and ``report`` (None: skipped) carry the eval data set."""

    model: str = DEFAULT_MODEL
    export: ExportConfig = field(default_factory=ExportConfig)
    simplify: SimplifyConfig = field(default_factory=SimplifyConfig)
    precisions: tuple[str, ...] = ("fp16",)
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)  # images also feed the FP16 range check
    int8: Int8Config = field(default_factory=Int8Config)  # the int8 stage (learned reconstruction: opt-in)
    budget: BudgetConfig | None = None  # the INT8 accuracy budget (needs int8 in precisions)
    report: ReportConfig | None = None  # the precision report
    build: BuildConfig = field(default_factory=BuildConfig)  # flavor, target_cc, …; precision and batch filled in
    strict: bool = False
    force: bool = False
    overwrite: bool = False  # outputs may replace files trtbuild did not write (every stage's ``overwrite``)

    def __post_init__(self):
        for p in self.precisions:
            _choice("precision", p, PRECISIONS)

    @property
    def out_dir(self) -> Path:
        return Path(self.export.out_dir)
