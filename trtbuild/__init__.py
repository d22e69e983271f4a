"""trtbuild: compile YOLOv8 detectors into TensorRT engines and run them fast.

The Python API is the CLI's: every stage is ``stage(input artifact(s), config) -> StageResult`` with its typed config
in ``trtbuild.config``; the tasks (infer, evaluate, bench, budget, report, doctor, the pipeline), ``stream`` (video and
cameras) and ``open_runner`` sit on top. Heavy dependencies (torch, ultralytics, TensorRT, pycuda, onnxruntime, matplotlib) are imported only
by the functions that need them, so ``import trtbuild`` works on any host.
"""

from __future__ import annotations

from .artifacts import StageResult
from .config import (
    BenchConfig,
    BudgetConfig,
    BuildConfig,
    CalibrateConfig,
    CheckConfig,
    DeployConfig,
    EvalConfig,
    ExportConfig,
    FP16Config,
    Int8Config,
    NmsConfig,
    PipelineConfig,
    QatConfig,
    ReportConfig,
    SimplifyConfig,
    StreamConfig,
    UltralyticsConfig,
)
from .runtime.base import Runner
from .runtime.open import open_runner
from .stages.export import export
from .stages.nms import nms_stage as nms
from .stages.precision.calibrate import calibrate
from .stages.precision.fp16 import fp16
from .stages.precision.int8 import int8
from .stages.simplify import simplify
from .stream import StreamResult, stream
from .tasks.bench import run_bench as bench
from .tasks.bench_triton import run_bench_triton as bench_triton
from .tasks.budget import fit_budget as budget
from .tasks.deploy import deploy_triton, deploy_ultralytics
from .tasks.doctor import doctor
from .tasks.evaluate import evaluate
from .tasks.infer import run_infer as infer
from .tasks.pipeline import run_pipeline
from .tasks.predictor import Predictor
from .tasks.qat import qat
from .tasks.report import precision_report as report
from .trt.builder import build
from .trt.check import check
from .trt.host import Host, probe_host
from .version import __version__

__all__ = [
    "__version__", "StageResult", "Host", "probe_host",
    "ExportConfig", "SimplifyConfig", "NmsConfig", "FP16Config", "CalibrateConfig", "Int8Config", "BuildConfig",
    "CheckConfig", "UltralyticsConfig", "EvalConfig", "BenchConfig",
    "BudgetConfig", "ReportConfig", "PipelineConfig", "DeployConfig", "StreamConfig", "StreamResult", "QatConfig",
    "export", "simplify", "nms", "fp16", "calibrate", "int8", "build", "budget", "report", "check", "run_pipeline", "qat",
    "Runner", "open_runner", "Predictor", "infer", "stream", "evaluate", "bench", "doctor",
    "deploy_triton", "deploy_ultralytics", "bench_triton",
]
