"""``trtbuild engine`` / ``make engine``: run every stage whose inputs changed, as far as this host allows.

Each stage is hash-keyed (``artifacts.run_stage``), so a second run with nothing changed only re-hashes files.
The model's geometry is read once, from the simplified ONNX, and handed to every stage after it. On a host
without TensorRT or a GPU the engine build is skipped with one line saying why (an error with ``strict``), after
every stage that can run here has run. Progress goes to ``on_result(label, result)``: a ``StageResult`` per stage,
or a line of text (a warning, the skip); the CLI turns them into its one-line-per-stage output.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..artifacts import StageResult
from ..config import CheckConfig, FP16Config, PipelineConfig
from ..data.images import select_images
from ..errors import DependencyMissingError, TrtbuildError
from ..onnx.graph import load_onnx
from ..onnx.modelinfo import ModelInfo
from ..stages.export import export
from ..stages.precision.calibrate import calibrate
from ..stages.precision.fp16 import fp16
from ..stages.precision.int8 import int8, qdq_tensors
from ..stages.precision.qdq import prequantized_report
from ..stages.simplify import simplify
from ..trt.builder import build
from ..trt.buildspec import choose_source
from ..trt.check import check, require_ok
from ..trt.host import Host, probe_host
from .budget import fit_budget
from .report import precision_report

OnResult = Callable[[str, "StageResult | str"], None]


@dataclass
class PipelineResult:
    """Every stage's result by label (export, simplify, fp16, calibrate, int8, budget, report), the engines by
    precision, and why the build was skipped (None when it ran)."""

    stages: dict[str, StageResult] = field(default_factory=dict)
    engines: dict[str, StageResult] = field(default_factory=dict)
    engine_skipped: str | None = None

    def __getitem__(self, label: str) -> StageResult:
        return self.stages[label]


def _calibration_images(cfg: PipelineConfig) -> list[Path]:
    """The calibration images FP16 measures ranges on (none when the folder is missing and INT8 not asked)."""
    if not cfg.calibrate.images.is_dir():
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the calibrate stage reports a small set in its own words
            return select_images(cfg.calibrate.images, cfg.calibrate.num, cfg.calibrate.seed)[0]
    except TrtbuildError:
        if "int8" in cfg.precisions:
            raise
        return []


def _run(cfg: PipelineConfig) -> dict:
    """What every stage of the pipeline shares: rerun (``force``) and replace-what-is-not-ours (``overwrite``)."""
    return {"force": cfg.force, "overwrite": cfg.overwrite}


def _precision_stages(cfg: PipelineConfig, sim: Path, info: ModelInfo, out: PipelineResult,
                      on_result: OnResult, progress: bool) -> None:
    """FP16 typed ONNX, INT8 (ranges, TensorRT table, Q/DQ ONNX, budget) and the report, as requested."""
    def done(label: str, res: StageResult) -> None:
        out.stages[label] = res
        on_result(label, res)

    if not ({"fp16", "int8"} & set(cfg.precisions)) and not cfg.report:
        return
    hw = info.run_hw()
    if "fp16" in cfg.precisions:
        images = _calibration_images(cfg)
        done("fp16", fp16(sim, FP16Config(images=tuple(images), imgsz=hw, **_run(cfg))))
    if "int8" in cfg.precisions and prequantized_report(load_onnx(sim, check=False)) is not None:
        done("int8", int8(sim, None, replace(cfg.int8, **_run(cfg))))  # QAT: its own Q/DQ, no calibration
        if cfg.budget:
            on_result("budget", "budget    skipped: the model was quantization-aware trained (its Q/DQ are kept "
                                "as trained; no conv falls back)")
    elif "int8" in cfg.precisions:
        cal = replace(cfg.calibrate, tensors=tuple(qdq_tensors(sim)), imgsz=hw, **_run(cfg))
        ranges = calibrate(sim, cal, progress=progress)
        done("calibrate", ranges)
        if ranges.report.get("warning"):
            on_result("calibrate", f"calibrate warning: {ranges.report['warning']}")
        done("int8", int8(sim, ranges.output, replace(cfg.int8, **_run(cfg)), progress=progress))
        if cfg.budget:
            budget = replace(cfg.budget, imgsz=hw, int8=cfg.int8, **_run(cfg))
            done("budget", fit_budget(sim, ranges.output, budget, progress=progress))
    if cfg.report:
        done("report", precision_report(sim, replace(cfg.report, **_run(cfg)), progress=progress))


def run_pipeline(cfg: PipelineConfig, host: Host | None = None, on_result: OnResult = lambda label, res: None,
                 progress: bool = True) -> PipelineResult:
    """Run the stages for ``cfg`` on ``host`` (default: probe this one); see the module docstring."""
    host = host or probe_host()
    out = PipelineResult()
    exp = export(cfg.model, replace(cfg.export, **_run(cfg)))
    out.stages["export"] = exp
    on_result("export", exp)
    sim = simplify(exp.output, replace(cfg.simplify, strict=cfg.strict, **_run(cfg)))
    out.stages["simplify"] = sim
    on_result("simplify", sim)
    info = ModelInfo.of_onnx(sim.output)  # the geometry every later stage uses
    _precision_stages(cfg, sim.output, info, out, on_result, progress)
    blocker = host.build_blocker(cfg.build.flavor)
    if blocker:
        message = f"build skipped ({','.join(cfg.precisions)}): {blocker}"
        if cfg.strict:
            raise DependencyMissingError(f"engine {message} [STRICT=1 makes this an error]")
        out.engine_skipped = blocker
        on_result("engine", f"engine    {message}; the ONNX artifacts above are ready for a TensorRT host")
        return out
    flavor = host.flavor(cfg.build.flavor)
    configs = {p: replace(cfg.build, precision=p, max_batch=cfg.export.batch if info.dynamic_batch else None,
                          opt_hw=info.run_hw() if info.dynamic_hw else None, flavor=flavor, out_dir=cfg.out_dir,
                          **_run(cfg))
               for p in cfg.precisions}
    for source in dict.fromkeys(choose_source(sim.output, c, host.info(flavor))[0] for c in configs.values()):
        checked = check(source, CheckConfig(flavor, **_run(cfg)), host=host)  # what this TensorRT makes of it
        out.stages[f"check {source.name}"] = checked
        on_result("check", checked)
        require_ok(checked)
    for p, options in configs.items():  # one engine per precision, cached by key: a no-op when nothing changed
        out.engines[p] = build(sim.output, options, host=host, progress=progress)
        on_result("engine", out.engines[p])
    return out
