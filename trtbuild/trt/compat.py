"""The one place where TensorRT flavor and version differences are decided.

Two flavors: ``tensorrt`` (standard TensorRT 10.x/11.x, module ``tensorrt``: builds for the GPU of the host it
runs on) and ``rtx`` (TensorRT for RTX 1.x, module ``tensorrt_rtx``: builds ahead of time, with no GPU present,
for a set of compute capabilities, and its engines run on RTX GPUs, Turing/Ampere and later, only — not on
Jetson, not on datacenter GPUs such as Hopper). 11.x and RTX networks are always strongly typed (precision lives
in the ONNX: FP16 tensors, Q/DQ pairs); 10.x still has the FP16/INT8 builder flags and calibrators (weak typing)
and, from 10.12, solid strong typing. What RTX 1.7.1 lacks, as observed on trtbuild's own ONNX files: INT8
calibrators (and so the implicit-INT8 table), DLA, the plugin library (EfficientNMS_TRT: "Plugin not found"), a
runner for ONNX NonMaxSuppression ("no runners that implement it"); its timing cache is a no-op that makes the
builder query for a GPU, so it is not used. Standard TensorRT still loads EfficientNMS_TRT, deprecated since 10.12:
``nms_plugin_notice`` says so from 10.12 and, on 11.x, points to ONNX NonMaxSuppression (INMSLayer).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..version import version_tuple

# --hardware-compat choice -> HardwareCompatibilityLevel member, and the first version whose API list has it
_HW_LEVELS = {"none": ("NONE", (10, 0)), "ampere+": ("AMPERE_PLUS", (10, 0)),
              "same-cc": ("SAME_COMPUTE_CAPABILITY", (10, 13))}


def hardware_compat_level(trt_version: str, choice: str) -> str:
    """The ``HardwareCompatibilityLevel`` member for ``choice`` on ``trt_version`` (InputError if it lacks it)."""
    member, first = _HW_LEVELS[choice]
    if version_tuple(trt_version) < first:
        raise InputError(f"hardware_compat={choice} needs TensorRT ≥ {'.'.join(map(str, first))} "
                         f"(HardwareCompatibilityLevel.{member} is absent from {trt_version}); use ampere+ or none",
                         param="hardware_compat")
    return member


# TensorRT 10.12 deprecated EfficientNMS_TRT (version 1) with no replacement plugin; 11.0 removed other plugins
# (among them the older "nms") but not this one, nor did 11.1-11.5. The way off it is INMSLayer: ONNX
# NonMaxSuppression (nms=onnx).
EFFICIENT_NMS_DEPRECATED = (10, 12)

FLAVORS = ("tensorrt", "rtx")
MODULES = {"tensorrt": "tensorrt", "rtx": "tensorrt_rtx"}
LABELS = {"tensorrt": "TensorRT", "rtx": "TensorRT-RTX"}
RTX_INSTALL_HINT = "pip install tensorrt-rtx (PyPI; or the 'rtx' extra: pip install 'trtbuild[rtx]')"
# --target-cc value -> ComputeCapability member of TensorRT-RTX 1.7.1
RTX_TARGETS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}
RTX_PORTABLE = ("8.6", "8.9", "12.0")  # NVIDIA's default portable set: Ampere, Ada and Blackwell RTX GPUs


@dataclass(frozen=True)
class TensorRTInfo:
    installed: bool
    version: str | None = None
    error: str | None = None
    flavor: str = "tensorrt"

    @property
    def label(self) -> str:
        """``TensorRT 10.13.3.9`` / ``TensorRT-RTX 1.7.1.116`` (or just the name when it is not installed)."""
        return f"{LABELS[self.flavor]} {self.version}" if self.version else LABELS[self.flavor]

    @property
    def rtx(self) -> bool:
        return self.flavor == "rtx"

    @property
    def needs_gpu_to_build(self) -> bool:
        """Standard TensorRT builds for the GPU it runs on; TensorRT-RTX builds ahead of time for targets."""
        return not self.rtx

    @property
    def calibrators(self) -> bool:
        """INT8 calibrators (live calibration, the implicit-INT8 table): TensorRT 10.x only."""
        return self.weak_typing

    @property
    def dla(self) -> bool:
        return not self.rtx

    @property
    def plugins(self) -> bool:
        """The plugin library (EfficientNMS_TRT) and an NMS runner: standard TensorRT only."""
        return not self.rtx

    @property
    def timing_cache(self) -> bool:
        return not self.rtx

    @property
    def major(self) -> int | None:
        return int(self.version.split(".")[0]) if self.version else None

    @property
    def minor(self) -> int | None:
        return int(self.version.split(".")[1]) if self.version and "." in self.version else None

    @property
    def weak_typing(self) -> bool:
        """Builder precision flags and INT8 calibrators exist (standard TensorRT 10.x only)."""
        return not self.rtx and self.major == 10

    @property
    def strong_typing_solid(self) -> bool:
        """Strongly typed builds are the only path (11.x, RTX) or reliable (10.12+)."""
        if self.rtx:
            return self.installed
        return bool(self.major and (self.major >= 11 or (self.major == 10 and (self.minor or 0) >= 12)))

    def typing_summary(self) -> str:
        if not self.installed:
            return "n/a"
        if self.rtx:
            return ("strongly typed only (precision from the ONNX); builds ahead of time, no GPU needed, for "
                    "compute-capability targets; engines run on RTX GPUs only")
        if self.major and self.major >= 11:
            return "strongly typed only (precision from the ONNX: FP16 tensors, INT8 Q/DQ)"
        if self.major == 10:
            strong = "solid" if self.strong_typing_solid else "available, prefer weak typing before 10.12"
            return f"weak typing (FP16/INT8 flags, calibrators) and strong typing ({strong})"
        return f"unsupported major version {self.major}; trtbuild targets 10.x and 11.x"


def tensorrt_info(flavor: str = "tensorrt") -> TensorRTInfo:
    """Whether the flavor's module (``tensorrt`` / ``tensorrt_rtx``) imports here, and its version (never raises)."""
    try:
        trt = trt_module(flavor)
    except ImportError:
        return TensorRTInfo(False, error="not installed", flavor=flavor)
    except Exception as exc:  # a broken install (missing libnvinfer, wrong CUDA) fails in other ways
        return TensorRTInfo(False, error=f"import failed: {type(exc).__name__}: {exc}", flavor=flavor)
    return TensorRTInfo(True, version=getattr(trt, "__version__", None), flavor=flavor)


def trt_module(flavor: str):
    """The TensorRT Python module of ``flavor`` (the one import every TensorRT-facing function goes through)."""
    if flavor == "rtx":
        import tensorrt_rtx as trt
    else:
        import tensorrt as trt
    return trt


def choose_flavor(requested: str, standard: TensorRTInfo, rtx: TensorRTInfo) -> str:
    """``auto``: standard TensorRT where it imports, else TensorRT-RTX (else ``tensorrt``, whose absence the
    caller reports with the install command)."""
    if requested not in ("auto", *FLAVORS):
        raise InputError(f"flavor={requested!r}: one of auto, {', '.join(FLAVORS)}", param="flavor")
    if requested != "auto":
        return requested
    return "rtx" if rtx.installed and not standard.installed else "tensorrt"


def rtx_targets(requested: tuple[str, ...] | None, gpu_cc: str | None) -> tuple[str, ...]:
    """The compute capabilities an RTX engine is built for: ``requested`` (``current``: this host's GPU), else
    the portable set. InputError for a capability TensorRT-RTX does not build for."""
    targets = tuple(requested) if requested else RTX_PORTABLE
    if "current" in targets:
        if gpu_cc is None:
            raise InputError("target_cc=current needs a GPU on this host; name the targets (e.g. 8.6,8.9,12.0) to "
                             "build ahead of time without one", param="target_cc")
        targets = tuple(dict.fromkeys(gpu_cc if t == "current" else t for t in targets))
    bad = [t for t in targets if t not in RTX_TARGETS]
    if bad:
        raise InputError(f"target_cc={','.join(targets)}: TensorRT-RTX builds for RTX GPUs only "
                         f"({', '.join(RTX_TARGETS)}), not {', '.join(bad)}; for a datacenter or Jetson GPU use "
                         "standard TensorRT (flavor=tensorrt)", param="target_cc")
    return targets


def refuse_unsupported(flavor: TensorRTInfo, config) -> None:
    """One-line refusals of what ``flavor`` cannot build (a ``BuildConfig``), each saying what to use instead."""
    if not flavor.rtx:
        if config.target_cc:
            raise InputError("target_cc is TensorRT-RTX's (ahead-of-time builds for compute capabilities); standard "
                             "TensorRT builds for this host's GPU: drop it, or use hardware_compat=ampere+ "
                             "for any Ampere or newer GPU", param="target_cc")
        return
    why = None
    if config.nms:
        why = ("nms", f"nms={config.nms}: {flavor.label} has neither the EfficientNMS_TRT plugin nor a runner for "
                      "ONNX NonMaxSuppression; build the raw model (NMS runs on the host) or use standard TensorRT "
                      "(flavor=tensorrt)")
    elif config.precision == "int8" and config.int8_mode in ("table", "calibrate"):
        why = ("int8_mode", f"int8_mode={config.int8_mode}: {flavor.label} has no INT8 calibrators; it reads INT8 "
                            "only from the Q/DQ ONNX: use int8_mode=qdq (the default)")
    elif config.dla_core is not None:
        why = ("dla_core", f"dla_core={config.dla_core}: {flavor.label} has no DLA (RTX GPUs only); use standard "
                           "TensorRT (flavor=tensorrt) on a Jetson")
    elif config.strongly_typed is False:
        why = ("strongly_typed", f"{flavor.label} builds strongly typed networks only: weak typing (strongly_typed "
                                 "False, --typing weak) is not available; use auto or strong")
    elif config.hardware_compat != "none" or config.version_compatible:
        why = ("hardware_compat", f"{flavor.label} engines are portable by their compute-capability targets "
                                  "(target_cc), not by hardware_compat / version_compatible: drop those")
    if why:
        raise InputError(why[1], param=why[0])


def nms_plugin_notice(info: TensorRTInfo, nms: str | None, param: str = "nms") -> str | None:
    """What to tell someone who builds (or exports for) the EfficientNMS_TRT plugin, ``nms=efficient``, for
    ``info``'s TensorRT: nothing for other NMS choices, for TensorRT-RTX (refused: ``refuse_unsupported``) and
    before 10.12; the deprecation from 10.12; on 11.x also the way off it, ``nms=onnx`` (INMSLayer). With no
    TensorRT here (an export on a CPU host) the deprecation is said for whichever TensorRT will build the file.
    ``param`` is the parameter that chose the plugin (``nms`` of a build, ``variant`` of the NMS stage)."""
    if nms != "efficient" or info.rtx:
        return None
    head = f"{param}=efficient: the EfficientNMS_TRT plugin is deprecated since TensorRT 10.12"
    instead = f"{param}=onnx instead (ONNX NonMaxSuppression, built as TensorRT's INMSLayer; same detections output)"
    if not info.installed or not version_tuple(info.version):
        return f"{head} (no TensorRT on this host to say more): for an engine built with TensorRT 11.x use {instead}"
    if version_tuple(info.version)[:2] < EFFICIENT_NMS_DEPRECATED:
        return None
    if (info.major or 0) >= 11:
        return f"{head}, with no replacement plugin; {info.label} still loads it, but use {instead}"
    return f"{head}; {info.label} still loads it, but a later release may remove it"
