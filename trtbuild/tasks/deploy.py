"""``trtbuild deploy``: a model as a Triton model repository, or an engine with ultralytics' metadata header.

``deploy_triton`` writes four models (see ``serve.triton_config``): the detector, ``_preprocess``,
``_postprocess`` and the ``_e2e`` ensemble, plus ``labels.txt``, and records each deployment in
``trtbuild-deploy.json`` (what was deployed, from what, with which settings). The four folders are written into a
temporary folder beside ``out`` and moved in only when every ``config.pbtxt`` has parsed back against Triton's
schema: a failed deploy leaves nothing. A repository may hold other models and files: deploy touches only its
four folders of that name (replaced with ``force``, and only while they hold nothing but trtbuild's unchanged
files; see ``owned``) and ``trtbuild-deploy.json``.

``deploy_ultralytics`` prepends the header ultralytics' exporter writes (4-byte little-endian length + JSON
metadata) so ``YOLO("x.engine")`` loads the engine; trtbuild itself keeps plain engines everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .. import owned
from ..artifacts import (StageResult, current_umask, deferred_interrupts, output_folders, read_json, sha256_file, temp_prefix,
                         write_bytes_atomic, write_json_atomic)
from ..config import DeployConfig, UltralyticsConfig
from ..errors import InputError
from ..layout import model_name, sidecar_path, ultralytics_engine
from ..onnx.graph import parse_literal
from ..onnx.modelinfo import DEFAULT_IMGSZ, DEFAULT_STRIDE, ModelInfo
from ..runtime.open import ENGINE_SUFFIXES
from ..serve import triton_config as tc
from ..serve.triton_server import stub_paths
from ..trt.sidecar import read_sidecar
from ..version import __version__

DEFAULT_MAX_BATCH = 8  # Triton's max_batch_size for a dynamic-batch ONNX
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHIM = '''"""Written by `trtbuild deploy triton`: Triton's Python backend stub does not inherit PYTHONPATH, so this puts
the environment trtbuild was deployed from on sys.path (paths missing on this host are skipped), then names the
model class. Serving on another host: install trtbuild there and edit PATHS."""
import os
import sys

PATHS = {paths!r}
sys.path[:0] = [p for p in PATHS if os.path.isdir(p) and p not in sys.path]

from trtbuild.serve.triton_models import {cls} as TritonPythonModel  # noqa: E402,F401
'''


def _dims(shape) -> tuple[int, ...]:
    return tuple(int(d) if isinstance(d, int) and d > 0 else -1 for d in shape)


def _dtype(dtype: str, where: Path) -> str:
    if dtype not in tc.DTYPES:
        raise InputError(f"{where}: input/output dtype {dtype} is not served; export a float32 or float16 model")
    return dtype


def _preferred(cfg: DeployConfig, max_batch: int, profile_opt: int | None) -> tuple[int, ...]:
    preferred = cfg.preferred_batch or tuple(sorted({b for b in (profile_opt, max_batch) if b}))
    bad = [b for b in preferred if b > max_batch]
    if bad:
        raise InputError(f"preferred_batch={','.join(map(str, preferred))}: {bad[0]} exceeds max_batch={max_batch}",
                         param="preferred_batch")
    return preferred


def onnx_detector(model: Path, cfg: DeployConfig, backend: str) -> tc.Detector:
    info = ModelInfo.of_onnx(model)
    if info.task != "detect":
        raise InputError(f"{model}: a {info.task} model; trtbuild deploys YOLOv8 detect models")
    if not info.end2end:
        info.require_detect(model)
    if info.batch is not None and (backend != "python" or info.batch != 1):
        raise InputError(f"{model}: static batch {info.batch}; Triton batches requests itself, so export with a "
                         "dynamic batch (dynamic=True)" +
                         ("" if info.batch != 1 else ", or serve it with backend=python"))
    max_batch = cfg.max_batch or DEFAULT_MAX_BATCH
    out = info.outputs[0]
    out_dims = _dims(out.shape[1:])
    if not info.end2end and out_dims[0] == -1:  # a symbolic channel axis (ultralytics' dynamic export): 4 + nc
        out_dims = (4 + len(info.names), *out_dims[1:])
    return tc.Detector(
        input_name=info.input.name, input_dtype=_dtype(info.input.dtype, model), input_dims=_dims(info.input.shape[1:]),
        output_name=out.name, output_dtype=_dtype(out.dtype, model), output_dims=out_dims,
        max_batch=max_batch, preferred=_preferred(cfg, max_batch, None), imgsz=info.run_hw(),
        names=info.names, end2end=info.end2end)


def engine_sidecar(engine: Path, loader: str, way_out: str) -> dict:
    """The sidecar of a standard TensorRT ``engine`` that ``loader`` will deserialize; InputError when it is
    missing, when the engine's size differs from the one it records, or for a TensorRT-RTX engine."""
    meta = read_sidecar(engine)
    if meta is None:
        raise InputError(f"{engine}: no sidecar {engine.name}.json beside it (I/O, profile, class names); "
                         "build the engine with `trtbuild build` or `trtbuild engine`")
    if meta.get("engine_bytes") not in (None, engine.stat().st_size):
        raise InputError(f"{engine}: {engine.stat().st_size} bytes, but its sidecar records {meta['engine_bytes']}: "
                         "the engine is truncated or replaced; rebuild it (force=True)")
    recorded = (meta.get("outputs") or {}).get(engine.name)
    if recorded is None or recorded != sha256_file(engine):
        raise InputError(f"{engine}: its sha256 is not the one its sidecar {engine.name}.json records "
                         f"({'none recorded' if recorded is None else 'the file was changed or replaced'}): it is not "
                         "the engine that was built; rebuild it (force=True)")
    if meta.get("flavor", "tensorrt") != "tensorrt":
        raise InputError(f"{engine}: a TensorRT-RTX engine; {loader} loads standard TensorRT engines only: "
                         f"{way_out}")
    return meta


def engine_detector(engine: Path, cfg: DeployConfig) -> tuple[tc.Detector, dict]:
    meta = engine_sidecar(engine, "Triton's TensorRT backend",
                          "build one on the serving GPU host (--flavor tensorrt), or deploy the ONNX")
    io = meta.get("io") or []
    inputs = [e for e in io if e.get("mode") == "input"]
    outputs = [e for e in io if e.get("mode") == "output"]
    if len(inputs) != 1 or not outputs:
        raise InputError(f"{engine}: its sidecar lists {len(inputs)} input(s) and {len(outputs)} output(s); "
                         "trtbuild deploys one-image-input YOLOv8 detectors")
    inp, out = inputs[0], outputs[0]
    profile = (meta.get("profiles") or {}).get(inp["name"])
    if not profile or inp["shape"][0] != -1:
        raise InputError(f"{engine}: static batch {inp['shape'][0]}; Triton batches requests itself, so build from "
                         "a dynamic-batch export (dynamic=True, max_batch=8)")
    (min_b, *_), (opt_b, *_), (max_b, *_) = profile
    if min_b != 1:
        raise InputError(f"{engine}: its profile starts at batch {min_b}; Triton sends batches from 1 up, so build "
                         "with min_batch=1")
    if cfg.max_batch and cfg.max_batch > max_b:
        raise InputError(f"max_batch={cfg.max_batch}: the engine's profile ends at batch {max_b}; rebuild with "
                         f"max_batch={cfg.max_batch} or deploy with max_batch={max_b}", param="max_batch")
    max_batch = cfg.max_batch or max_b
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    det = tc.Detector(
        input_name=inp["name"], input_dtype=_dtype(inp["dtype"], engine), input_dims=_dims(inp["shape"][1:]),
        output_name=out["name"], output_dtype=_dtype(out["dtype"], engine), output_dims=_dims(out["shape"][1:]),
        max_batch=max_batch, preferred=_preferred(cfg, max_batch, min(opt_b, max_batch)),
        imgsz=tuple(meta.get("imgsz") or DEFAULT_IMGSZ), names=names, end2end=bool(meta.get("end2end")))
    return det, meta


def _backend(model: Path, requested: str) -> str:
    engine = model.suffix.lower() in ENGINE_SUFFIXES
    if engine and requested not in ("auto", "tensorrt"):
        raise InputError(f"backend={requested}: {model} is an engine, served by Triton's TensorRT backend only; "
                         "deploy the ONNX for backend=onnxruntime or python", param="backend")
    if not engine and requested == "tensorrt":
        raise InputError(f"backend=tensorrt: {model} is an ONNX; build an engine first (trtbuild build) and "
                         "deploy that", param="backend")
    if requested == "auto":
        return "tensorrt" if engine else "onnxruntime"
    return requested


DEPLOY_RECORD = "trtbuild-deploy.json"


def _model_dirs(name: str) -> list[str]:
    return [name, name + tc.PRE, name + tc.POST, name + tc.E2E]


def _check_out(out: Path, model: Path, name: str, force: bool, overwrite: bool) -> None:
    """What ``deploy`` may touch in ``out``: its four model folders of ``name`` and ``trtbuild-deploy.json``, and
    nothing else. Refused: ``out`` that is a file or the folder holding ``model``; a model folder that exists
    (without ``force``), or that holds a file trtbuild did not write or that was changed since (without
    ``overwrite``); a ``trtbuild-deploy.json`` that is not trtbuild's."""
    if out.exists() and not out.is_dir():
        raise InputError(f"out={out}: is a file, not a folder; pass a folder for the model repository", param="out")
    for given in (model, sidecar_path(model)):
        if not given.exists():
            continue
        if (out.exists() and owned.same_file(given.parent, out)) or any(owned.inside(given, out / d)
                                                                         for d in _model_dirs(name)):
            raise InputError(f"out={out}: holds the model being deployed ({given}); deploy into a repository "
                             "folder of its own (e.g. out=model_repository)", param="out")
    for d in _model_dirs(name):
        folder = out / d
        if not folder.exists():
            continue
        if not force:
            raise InputError(f"out={out}: already holds a model {d}/; pass force=True to replace it (only "
                             f"{', '.join(x + '/' for x in _model_dirs(name))} and {DEPLOY_RECORD} are replaced), "
                             "or another out or name", param="force")
        if overwrite:
            continue
        if not folder.is_dir():
            raise owned.NotOursError(folder, "exists and is not a model folder trtbuild wrote")
        for f in sorted(folder.rglob("*")):
            if f.is_file() and not owned.is_ours(f):
                why = "changed since trtbuild wrote it" if owned.record_of(f) else "was not written by trtbuild"
                raise owned.NotOursError(f, f"{why}, and force=True would replace the folder {d}/ that holds it")
    owned.check_replaceable(out / DEPLOY_RECORD, overwrite)


def _swap_in(tmp: Path, out: Path, dirs: list[str]) -> None:
    """Move each finished model folder from ``tmp`` into ``out``; an old one of that name goes into ``tmp`` (removed
    with it). On failure every folder moved so far goes back where it was."""
    moved: list[tuple[Path, Path]] = []
    try:
        for d in dirs:
            if (out / d).exists():
                os.replace(out / d, tmp / f"old-{d}")
                moved.append((tmp / f"old-{d}", out / d))
            os.replace(tmp / d, out / d)
            moved.append((out / d, tmp / d))
    except BaseException:
        for now, before in reversed(moved):
            os.replace(now, before)
        raise


def _write(folder: Path, name: str, config, files: dict[str, bytes | Path]) -> None:
    """``folder/name/config.pbtxt`` (after it parsed back against the schema) and ``name/1/<files>``."""
    text = tc.render(config, f"{name}/config.pbtxt")
    (folder / name / "1").mkdir(parents=True)
    (folder / name / "config.pbtxt").write_text(text)
    for fname, data in files.items():
        dest = folder / name / "1" / fname
        if isinstance(data, Path):
            shutil.copyfile(data, dest)
        else:
            dest.write_bytes(data)


def deploy_triton(model: str | os.PathLike, cfg: DeployConfig = DeployConfig()) -> StageResult:
    """Write ``model`` (an engine or an ONNX) into the Triton model repository ``cfg.out`` as four models. The result's
    output is the repository, its report this deployment's entry of ``trtbuild-deploy.json`` (``models``,
    ``backend``, ``ensemble``, ``detector``, …). Everything else in ``cfg.out`` stays as it is (see ``_check_out`` for
    what ``cfg.force`` and ``cfg.overwrite`` allow)."""
    force, overwrite = cfg.force, cfg.overwrite
    model = Path(model)
    if not model.is_file():
        raise InputError(f"{model}: no such model file; pass an .engine (built by trtbuild) or an .onnx")
    backend = _backend(model, cfg.backend)
    name = cfg.name or model_name(model)
    if not NAME_RE.match(name):
        raise InputError(f"name={name!r}: Triton model names here are letters, digits, '_', '.', '-'", param="name")
    if backend == "tensorrt":
        det, meta = engine_detector(model, cfg)
    else:
        det, meta = onnx_detector(model, cfg, backend), None
    out = Path(cfg.out)
    _check_out(out, model, name, force, overwrite)
    dirs = _model_dirs(name)
    configs = {
        name: tc.detector_config(name, det, backend, cfg),
        name + tc.PRE: tc.preprocess_config(name, det, cfg),
        name + tc.POST: tc.postprocess_config(name, det, cfg),
        name + tc.E2E: tc.ensemble_config(name, det, cfg),
    }
    paths = stub_paths()
    shim = lambda cls: SHIM.format(paths=paths, cls=cls).encode()  # noqa: E731
    files = {
        name: ({"model.plan": model} if backend == "tensorrt" else
               {"model.onnx": model} if backend == "onnxruntime" else {"model.onnx": model, "model.py": shim("Detector")}),
        name + tc.PRE: {"model.py": shim("Preprocess")},
        name + tc.POST: {"model.py": shim("Postprocess")},
        name + tc.E2E: {},
    }
    entry = {"trtbuild_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "source": str(model.resolve()), "source_sha256": sha256_file(model), "backend": backend,
             "models": dirs, "ensemble": name + tc.E2E, "settings": cfg.to_dict(),
             "engine": {k: meta.get(k) for k in ("precision", "tensorrt_version", "gpu")} if meta else None}
    with output_folders(out):  # checked first; not left behind empty when writing fails
        root = out.resolve()
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(root.name or "repository"), dir=root.parent))
        try:
            for model_dir, config in configs.items():
                _write(tmp, model_dir, config, files[model_dir])
            labels = "".join(f"{det.names.get(i, i)}\n" for i in range(max(det.names, default=-1) + 1))
            (tmp / name / "labels.txt").write_text(labels)
            for d in dirs:
                os.chmod(tmp / d, 0o777 & ~current_umask())
            record = read_json(root / DEPLOY_RECORD) if (root / DEPLOY_RECORD).is_file() else None
            deployed = dict((record or {}).get("deployments") or {})
            deployed[name] = entry
            with deferred_interrupts():  # the folders and their record change together
                _swap_in(tmp, root, dirs)
                try:
                    write_json_atomic(root / DEPLOY_RECORD, {"deployments": deployed}, overwrite)
                    owned.forget([p for p in owned.recorded_files(root) if p.relative_to(root).parts[0] in dirs], root)
                    owned.record([f for d in dirs for f in (root / d).rglob("*") if f.is_file()], root)
                except BaseException:
                    for d in dirs:  # back to how it was: the new folders out, the old ones (if any) in
                        os.replace(root / d, tmp / f"new-{d}")
                        if (tmp / f"old-{d}").exists():
                            os.replace(tmp / f"old-{d}", root / d)
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return StageResult(out, out / DEPLOY_RECORD, {**entry, "stage": "deploy-triton", "detector": det}, skipped=False)


ULTRALYTICS_LITERALS = ("stride", "batch", "imgsz", "names", "args", "channels", "end2end", "kpt_shape")


def ultralytics_metadata(meta: dict) -> dict:
    """The header JSON ultralytics' exporter writes, from the sidecar: the ONNX metadata ultralytics put there,
    its Python-literal values parsed back to JSON types, plus ``dla`` for a DLA engine."""
    src = meta.get("metadata") or {}
    keep = ("description", "author", "date", "version", "license", "docs", "stride", "task", "head", "batch",
            "imgsz", "names", "args", "channels", "end2end", "kpt_shape")
    header = {k: parse_literal(src[k]) if k in ULTRALYTICS_LITERALS else src[k] for k in keep if k in src}
    header.setdefault("names", {int(k): v for k, v in (meta.get("names") or {}).items()})
    header.setdefault("imgsz", list(meta.get("imgsz") or DEFAULT_IMGSZ))
    header.setdefault("stride", int(meta.get("stride") or DEFAULT_STRIDE))
    header.setdefault("task", "detect")
    header.setdefault("end2end", bool(meta.get("end2end")))
    if isinstance(header.get("imgsz"), int):
        header["imgsz"] = [header["imgsz"]] * 2
    if meta.get("dla_core") is not None:
        header["dla"] = int(meta["dla_core"])
    return header


def deploy_ultralytics(engine: str | os.PathLike, cfg: UltralyticsConfig = UltralyticsConfig()) -> StageResult:
    """``cfg.out`` (default ``<engine stem>.ultralytics.engine`` beside it) = ultralytics' header + the engine bytes.
    The result's output is that file; it has no report file of its own (``report_path`` is the output), the report
    is the header written and the sizes."""
    out, force, overwrite = cfg.out, cfg.force, cfg.overwrite
    engine = Path(engine)
    if not engine.is_file():
        raise InputError(f"{engine}: no such engine file; build one with `trtbuild build` or `trtbuild engine`")
    if engine.suffix.lower() not in ENGINE_SUFFIXES:
        raise InputError(f"{engine}: not an engine ({', '.join(ENGINE_SUFFIXES)}); build one with `trtbuild build`")
    data = engine.read_bytes()
    if data[:4] and 0 < int.from_bytes(data[:4], "little") <= len(data) - 4 and data[4:5] == b"{":
        raise InputError(f"{engine}: already starts with a metadata header (an ultralytics export?); "
                         "trtbuild engines are plain")
    meta = engine_sidecar(engine, "ultralytics (with standard TensorRT)",
                          "build with --flavor tensorrt on the target GPU host")
    out = Path(out) if out else ultralytics_engine(engine)
    if out.resolve() == engine.resolve():
        raise InputError(f"out={out}: the same file as the engine; pick another path", param="out")
    if out.exists() and not force:
        raise InputError(f"out={out}: exists; pass force=True to replace it", param="force")
    owned.check_replaceable(out, overwrite)
    header = ultralytics_metadata(meta)
    blob = json.dumps(header).encode()
    write_bytes_atomic(out, len(blob).to_bytes(4, "little", signed=True) + blob + data, overwrite)
    return StageResult(out, out, {"stage": "deploy-ultralytics", "metadata": header, "engine_bytes": len(data),
                                  "header_bytes": 4 + len(blob)}, skipped=False)
