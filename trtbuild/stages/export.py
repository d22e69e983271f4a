"""Stage 1: a YOLOv8 ``.pt`` checkpoint or ``.yaml`` config → ONNX through ultralytics' own exporter.

We only drive ultralytics (offline, no auto-installs, ``simplify=False``: simplification is our next stage)
and add what it does not do: hash-keyed skipping, atomic output, batch-only dynamic axes, clear errors
and provenance metadata (source hash, versions) in ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path

import onnx

from ..artifacts import Outputs, StageResult, package_version, run_stage, sha256_file, sha256_json, temp_prefix
from ..config import ExportConfig
from ..errors import ExportError, InputError, UnsupportedModelError
from ..layout import Layout, model_stem
from ..onnx.graph import anchor_count, get_metadata, io_specs, op_histogram, set_metadata
from ..version import __version__

STAGE = "export"
STAGE_VERSION = 1
SUPPORTED_TASKS = ("detect",)
_MODEL_SUFFIXES = (".pt", ".yaml", ".yml")


def _quiet_ultralytics_env() -> None:
    """Never let ultralytics probe the network or pip-install behind the user's back."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")


def resolve_model(model: str | os.PathLike) -> tuple[Path, str]:
    """(file whose content defines the model, kind 'pt' | 'yaml').

    A ``.yaml`` that is not a local file is looked up among ultralytics' bundled configs, the way
    ultralytics itself resolves ``yolov8n.yaml`` (scale letter → ``yolov8.yaml``), without importing it.
    """
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix not in _MODEL_SUFFIXES:
        raise InputError(f"{model}: expected a YOLOv8 .pt checkpoint or a .yaml model config")
    if path.is_file():
        if path.stat().st_size == 0:
            raise InputError(f"{path}: file is empty; pass a YOLOv8 .pt checkpoint or .yaml config")
        return path, "pt" if suffix == ".pt" else "yaml"
    if suffix == ".pt" or path.parent != Path("."):
        raise InputError(f"{model}: no such file (trtbuild never downloads weights; pass a local path)")
    spec = find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{model}: not a local file and ultralytics is not installed to provide it")
    cfg_root = Path(list(spec.submodule_search_locations)[0]) / "cfg" / "models"
    candidates = [path.name]
    unscaled = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", path.stem)  # yolov8n-seg → yolov8-seg at scale n
    if unscaled != path.stem:
        candidates.append(unscaled + suffix)
    for name in candidates:
        found = sorted(cfg_root.rglob(name))
        if found:
            return found[0], "yaml"
    raise InputError(f"{model}: no such file, nor a config bundled with ultralytics (e.g. yolov8n.yaml)")


@contextlib.contextmanager
def _chdir(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _ultralytics_log_level(level: int):
    from ultralytics.utils import LOGGER

    old = LOGGER.level
    LOGGER.setLevel(level)
    try:
        yield
    finally:
        LOGGER.setLevel(old)


def _family(config: Path) -> str:
    """``"an RT-DETR model, "`` for a config whose head is RT-DETR's decoder, else ``""``."""
    try:
        text = config.read_text(errors="replace") if config.suffix.lower() in (".yaml", ".yml") else ""
    except OSError:
        text = ""
    return "an RT-DETR model, " if "RTDETRDecoder" in text else ""


def _load_yolo(model: str, source: Path, kind: str, workdir: Path, seed: int):
    """Instantiate ``ultralytics.YOLO`` from a private copy, so the export never writes beside the source."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(seed)
    try:
        if kind == "pt":
            local = workdir / source.name
            shutil.copyfile(source, local)
            return YOLO(str(local))
        return YOLO(str(source) if Path(model).is_file() else str(model))
    except NotImplementedError:  # ultralytics' YOLO class refuses other families (RT-DETR, …) this way
        raise UnsupportedModelError(f"{model}: {_family(source)}not a model ultralytics' YOLO class loads; trtbuild "
                                    f"supports these tasks: {', '.join(SUPPORTED_TASKS)} (YOLOv8, YOLO11, YOLO26 "
                                    ".pt or .yaml)") from None
    except Exception as exc:
        # ultralytics names the private copy: say the user's path instead
        first = (str(exc).replace(str(workdir / source.name), str(source)).strip().splitlines() or [""])[0][:200]
        raise InputError(
            f"{model}: not a YOLO {'checkpoint' if kind == 'pt' else 'model config'} that ultralytics can "
            f"load ({type(exc).__name__}: {first}); pass a YOLOv8 detect .pt or .yaml"
        ) from None


def _fix_dynamic_axes(onnx_model, cfg: ExportConfig, num_classes: int) -> None:
    """ultralytics makes batch, H and W dynamic together; keep H and W static unless asked otherwise.

    The channel axis of the head output (4 + classes) is never dynamic, whatever the exporter wrote.
    """
    for out in onnx_model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) == 3 and not dims[1].HasField("dim_value"):
            dims[1].Clear()
            dims[1].dim_value = 4 + num_classes
    if not cfg.dynamic or cfg.dynamic_hw:
        return
    h, w = cfg.imgsz
    inp = onnx_model.graph.input[0].type.tensor_type.shape.dim
    for axis, value in ((2, h), (3, w)):
        inp[axis].Clear()
        inp[axis].dim_value = value
    for out in onnx_model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) == 3 and not dims[2].HasField("dim_value"):
            dims[2].Clear()
            dims[2].dim_value = anchor_count(h, w)


def export_key(model: str, source: Path, cfg: ExportConfig) -> str:
    return sha256_json(
        {
            "stage": STAGE,
            "stage_version": STAGE_VERSION,
            "model": Path(model).name,
            "source_sha256": sha256_file(source),
            "config": cfg.to_dict(),
            "ultralytics": package_version("ultralytics"),
            "torch": package_version("torch"),
            "onnx": package_version("onnx"),
        }
    )


def export(model: str | os.PathLike = "yolov8n.yaml", config: ExportConfig = ExportConfig()) -> StageResult:
    """Export ``model`` to ``<out_dir>/<name>.onnx`` (+ ``<name>.export.json``); skipped when up to date."""
    cfg = config
    model = str(model)
    source, kind = resolve_model(model)
    layout = Layout(Path(cfg.out_dir), cfg.name or model_stem(model))
    out = layout.onnx

    def make(outputs: Outputs) -> dict:
        _quiet_ultralytics_env()
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=temp_prefix("export"), dir=out.parent) as tmp:
            onnx_model = _export_in(Path(tmp).resolve(), model, source, kind, cfg)
        onnx.save(onnx_model, str(outputs.path(out, ".onnx")))
        inputs, outs = io_specs(onnx_model)
        meta = get_metadata(onnx_model)
        return {
            "model": model,
            "source": str(source),
            "source_sha256": meta["source_sha256"],
            "config": cfg.to_dict(),
            "output": str(out),
            "file_size": outputs.path(out).stat().st_size,
            "inputs_spec": [vars(s) for s in inputs],
            "outputs_spec": [vars(s) for s in outs],
            "nodes": len(onnx_model.graph.node),
            "ops": op_histogram(onnx_model),
            "metadata": meta,
            "versions": {p: package_version(p) for p in ("trtbuild", "ultralytics", "torch", "onnx")},
        }

    return run_stage(STAGE, export_key(model, source, cfg), layout.export_report, out, make, cfg.force,
                     inputs={"model": source}, overwrite=cfg.overwrite)


def _export_in(workdir: Path, model: str, source: Path, kind: str, cfg: ExportConfig) -> onnx.ModelProto:
    """ultralytics' export run in ``workdir`` (its cwd: it writes beside the model), with our metadata added."""
    with _ultralytics_log_level(logging.WARNING):
        yolo = _load_yolo(model, source, kind, workdir, cfg.seed)
        task = getattr(yolo, "task", None)
        if task not in SUPPORTED_TASKS:
            raise UnsupportedModelError(
                f"{model}: a '{task}' model; trtbuild supports these tasks: {', '.join(SUPPORTED_TASKS)}"
            )
        try:
            with _chdir(workdir):
                produced = yolo.export(format="onnx", imgsz=list(cfg.imgsz), batch=cfg.batch, dynamic=cfg.dynamic,
                                       opset=cfg.opset, simplify=False, half=False, device="cpu")
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ExportError(f"{model}: ultralytics export failed ({type(exc).__name__}: {first})") from None
        produced = workdir / produced if not Path(produced).is_absolute() else Path(produced)
    onnx_model = onnx.load(str(produced))
    _fix_dynamic_axes(onnx_model, cfg, len(yolo.names))
    set_metadata(
        onnx_model,
        {
            "trtbuild_version": __version__,
            "source": Path(model).name,
            "source_sha256": sha256_file(source),
            "ultralytics_version": package_version("ultralytics") or "unknown",
            "imgsz": list(cfg.imgsz),
            "dynamic_batch": cfg.dynamic,
            "dynamic_hw": cfg.dynamic_hw,
        },
    )
    onnx.checker.check_model(onnx_model)
    return onnx_model
