"""Triton model configurations, built as ``inference.ModelConfig`` protobufs (the schema ``tritonclient`` ships) and
written as ``config.pbtxt`` only after they parse back against that schema.

Four models per deployment: the detector (``tensorrt_plan`` for an engine, ``onnxruntime_onnx`` for an ONNX, or the
CPU-servable ``python`` variant that runs trtbuild's ONNX Runtime runner), ``NAME_preprocess`` (encoded image bytes →
trtbuild's letterbox), ``NAME_postprocess`` (trtbuild's decode + NMS) and the ensemble ``NAME_e2e`` chaining them:
one encoded image in, ``detections`` [N, 6] (x1, y1, x2, y2, score, class in original pixels) and ``orig_size`` out.
Written with protobuf rather than by hand because the schema, not a template, decides what Triton accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import DependencyMissingError, InputError

TRITON_HINT = "pip install 'tritonclient[grpc,http]' (the 'triton' extra)"
DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
PRE, POST, E2E = "_preprocess", "_postprocess", "_e2e"


def schema():
    """Triton's ``model_config_pb2`` module and protobuf's ``text_format`` (DependencyMissingError without them)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise DependencyMissingError(f"tritonclient is not installed: {TRITON_HINT}") from None
    return model_config_pb2, text_format


@dataclass(frozen=True)
class Detector:
    """What the configs need to know of the model: I/O names, dtypes and dims (without the batch axis)."""

    input_name: str
    input_dtype: str  # "float32" / "float16"
    input_dims: tuple[int, ...]  # (3, H, W); -1 for a dynamic axis
    output_name: str
    output_dtype: str
    output_dims: tuple[int, ...]  # (4 + nc, A)
    max_batch: int
    preferred: tuple[int, ...]
    imgsz: tuple[int, int]  # the size preprocess letterboxes to
    names: dict[int, str]
    end2end: bool


def _tensor(msg, name: str, dtype: str, dims) -> None:
    msg.name = name
    msg.data_type = schema()[0].DataType.Value(dtype)
    msg.dims.extend(int(d) for d in dims)


def _io(config, inputs, outputs) -> None:
    for name, dtype, dims in inputs:
        _tensor(config.input.add(), name, dtype, dims)
    for name, dtype, dims in outputs:
        _tensor(config.output.add(), name, dtype, dims)


def _batching(config, det: Detector, delay_us: int) -> None:
    config.max_batch_size = det.max_batch
    if det.max_batch > 1:
        config.dynamic_batching.max_queue_delay_microseconds = delay_us
        config.dynamic_batching.preferred_batch_size.extend(det.preferred)


def _params(config, values: dict) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = json.dumps(value)  # every value JSON: the models json.loads it


def _instances(config, kind: str, count: int, gpus: tuple[int, ...] | None) -> None:
    pb = schema()[0]
    group = config.instance_group.add()
    group.kind = pb.ModelInstanceGroup.Kind.Value(kind)
    group.count = count
    if gpus:
        group.gpus.extend(gpus)


def detector_config(name: str, det: Detector, backend: str, cfg) -> object:
    """The detector's ``ModelConfig`` (``cfg``: a ``DeployConfig``)."""
    pb, text_format = schema()
    config = pb.ModelConfig()
    config.name = name
    if backend == "tensorrt":
        config.platform = "tensorrt_plan"
    elif backend == "onnxruntime":
        config.platform = "onnxruntime_onnx"
    else:
        config.backend = "python"
    _batching(config, det, cfg.max_queue_delay_us)
    _io(config, [(det.input_name, DTYPES[det.input_dtype], det.input_dims)],
        [(det.output_name, DTYPES[det.output_dtype], det.output_dims)])
    config.output[0].label_filename = "labels.txt"
    gpu = backend in ("tensorrt",) or (backend == "onnxruntime" and cfg.gpus)
    _instances(config, "KIND_GPU" if gpu else "KIND_CPU", cfg.instances, cfg.gpus if gpu else None)
    if cfg.cuda_graphs and backend == "tensorrt":
        config.optimization.cuda.graphs = True
    if cfg.warmup:
        warm = config.model_warmup.add()
        warm.name, warm.batch_size, warm.count = "zeros", 1, cfg.warmup
        data = warm.inputs[det.input_name]
        data.data_type = pb.DataType.Value(DTYPES[det.input_dtype])
        data.dims.extend(d if d > 0 else s for d, s in zip(det.input_dims, (3, *det.imgsz)))
        data.zero_data = True
    if backend == "python":
        _params(config, {"threads": 1})
    if cfg.config_override:
        try:
            text_format.Merge(cfg.config_override, config)
        except text_format.ParseError as exc:
            raise InputError(f"config_override={cfg.config_override!r}: Triton's model config schema rejects it "
                             f"({exc}); see the ModelConfig fields in model_config.proto",
                             param="config_override") from None
    return config


def _python_model(name: str, det: Detector, cfg, inputs, outputs, params: dict) -> object:
    """A batched Python-backend model on CPU instances (pre- and post-processing)."""
    config = schema()[0].ModelConfig()
    config.name, config.backend = name, "python"
    _batching(config, det, cfg.max_queue_delay_us)
    _io(config, inputs, outputs)
    _instances(config, "KIND_CPU", cfg.instances, None)
    _params(config, params)
    return config


def preprocess_config(name: str, det: Detector, cfg) -> object:
    return _python_model(
        name + PRE, det, cfg, [("image", "TYPE_STRING", (1,))],
        [(det.input_name, DTYPES[det.input_dtype], (3, *det.imgsz)), ("orig_size", "TYPE_INT32", (2,))],
        {"imgsz": list(det.imgsz), "dtype": det.input_dtype, "input_name": det.input_name})


def postprocess_config(name: str, det: Detector, cfg) -> object:
    return _python_model(
        name + POST, det, cfg,
        [(det.output_name, DTYPES[det.output_dtype], det.output_dims), ("orig_size", "TYPE_INT32", (2,))],
        [("detections", "TYPE_FP32", (-1, 6)), ("num_detections", "TYPE_INT32", (1,))],
        {"imgsz": list(det.imgsz), "conf": cfg.conf, "iou": cfg.iou, "max_det": cfg.max_det, "end2end": det.end2end,
         "output_name": det.output_name, "names": {str(k): v for k, v in det.names.items()}})


def ensemble_config(name: str, det: Detector, cfg) -> object:
    pb = schema()[0]
    config = pb.ModelConfig()
    config.name, config.platform, config.max_batch_size = name + E2E, "ensemble", det.max_batch
    _io(config, [("image", "TYPE_STRING", (1,))],
        [("detections", "TYPE_FP32", (-1, 6)), ("num_detections", "TYPE_INT32", (1,)),
         ("orig_size", "TYPE_INT32", (2,))])
    steps = [(name + PRE, {"image": "image"}, {det.input_name: "preprocessed", "orig_size": "orig_size"}),
             (name, {det.input_name: "preprocessed"}, {det.output_name: "raw"}),
             (name + POST, {det.output_name: "raw", "orig_size": "orig_size"},
              {"detections": "detections", "num_detections": "num_detections"})]
    for model, inputs, outputs in steps:
        step = config.ensemble_scheduling.step.add()
        step.model_name, step.model_version = model, -1
        step.input_map.update(inputs)
        step.output_map.update(outputs)
    _params(config, {"conf": cfg.conf, "iou": cfg.iou, "max_det": cfg.max_det, "imgsz": list(det.imgsz),
                     "names": {str(k): v for k, v in det.names.items()}, "detector": name})
    return config


def render(config, where: str) -> str:
    """``config.pbtxt`` text for ``config``, after it parsed back against the schema (InputError naming ``where``
    otherwise) and names a model, inputs and outputs."""
    pb, text_format = schema()
    text = text_format.MessageToString(config)
    try:
        parsed = text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise InputError(f"{where}: Triton's model config schema rejects the generated config ({exc})") from None
    if not parsed.name or not parsed.input or not parsed.output:
        raise InputError(f"{where}: a model config needs a name, inputs and outputs")
    return text


def parse(text: str, where: str) -> object:
    """A ``config.pbtxt`` parsed against the schema (InputError naming ``where`` when it does not)."""
    pb, text_format = schema()
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise InputError(f"{where}: not a Triton model config ({exc})") from None
