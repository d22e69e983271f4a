"""What every command shares: error handling (library errors → one line and the exit code, parameter names →
flags), option callbacks, and the export options used by ``export`` and ``engine``."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import warnings

import click

from .. import config
from ..config import DEFAULT_OPSET, DEFAULT_OUT_DIR, TRT_FLAVORS, parse_imgsz
from ..errors import TrtbuildError
from ..trt.host import Host, probe_host

# library parameter → CLI flag, where the flag is not just "--" + the parameter with dashes
FLAGS = {"images": "--images", "calib_images": "--calib", "strongly_typed": "--typing", "batches": "--batch",
         "sensitivity_images": "--num-images", "variant": "--nms", "trt_version": "--trt-version",
         "max_queue_delay_us": "--queue-delay-us", "save_dir": "--save", "json_path": "--json"}


def flag_for(param: str) -> str:
    return FLAGS.get(param, "--" + param.replace("_", "-"))


# every parameter a library message may name as ``param=value``: the fields of the stage configs
PARAMS = {f.name for c in (config.ExportConfig, config.SimplifyConfig, config.NmsConfig, config.FP16Config,
                           config.CalibrateConfig, config.Int8Config, config.BuildConfig, config.BudgetConfig,
                           config.ReportConfig, config.PipelineConfig, config.DeployConfig, config.CheckConfig,
                           config.StreamConfig, config.QatConfig) for f in dataclasses.fields(c)}
PARAMS |= set(FLAGS) | {"imgsz", "batches", "warmup", "iters", "max_det", "conf", "iou", "batch", "triton",
                        "concurrency", "requests", "overwrite", "save_dir", "json_path", "train", "val"}
_PARAM_RE = re.compile(r"(?<![\w.-])([a-z][a-z0-9_]*)=(True\b)?")


def with_flags(message: str, param: str | None = None) -> str:
    """``message`` with every parameter it names as ``param=`` spelled as its flag (``param=True`` of an on/off
    option: the flag alone): ``nms=onnx`` → ``--nms onnx``."""
    def flag(m: re.Match) -> str:
        if m.group(1) not in PARAMS | {param}:
            return m.group(0)
        return flag_for(m.group(1)) if m.group(2) else f"{flag_for(m.group(1))} "

    return _PARAM_RE.sub(flag, message)


def error_line(exc: TrtbuildError) -> str:
    """``error: <message>`` with the parameters it names spelled as flags."""
    return f"error: {with_flags(str(exc), exc.param)}"


@contextlib.contextmanager
def warning_lines(*categories: type[Warning]):
    """Warnings of ``categories`` raised inside (e.g. ``DeprecatedPluginWarning``) become ``warning: <message>``
    lines on stderr, parameters spelled as flags, each message once; yields the list of messages shown (so the same
    text in a stage's notes need not be printed again). Other warnings pass through unchanged."""
    shown: list[str] = []
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            for category in categories:
                warnings.simplefilter("always", category)
            yield shown
    finally:  # also when the command fails: what was said before the error is still shown
        for w in caught:
            if not issubclass(w.category, categories):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            elif str(w.message) not in shown:
                shown.append(str(w.message))
                click.echo(f"warning: {with_flags(str(w.message))}", err=True)


def current_host(pycuda: bool = False) -> Host:
    """The host the command runs on: the ``Host`` a caller passed as click's ``obj`` (tests: ``CliRunner().invoke(cli,
    args, obj=Host(...))``), else this machine, probed once per command."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Host):
        root.obj = probe_host(pycuda=pycuda)
    return root.obj


def imgsz_option(ctx, param, value):
    """click callback: ``640`` or ``H,W`` → (H, W); None stays None."""
    if value is None:
        return None
    try:
        return parse_imgsz(value, param.name)
    except TrtbuildError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


def with_options(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


def option_names(options) -> list[str]:
    """The Python names click gives ``options`` (``--max-det`` → ``max_det``)."""
    def probe():
        pass

    for opt in options:
        probe = opt(probe)
    return [p.name for p in getattr(probe, "__click_params__", [])]


def config_group(param: str, options, build):
    """An option group shared between commands: ``options`` on the command line, one object in Python — the
    command function receives ``build(**those options' values)`` as its parameter ``param`` instead of the loose
    values (``build`` is typically a config class, or a function of the values)."""
    names = option_names(options)

    def deco(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            kwargs[param] = build(**{n: kwargs.pop(n) for n in names})
            return f(*args, **kwargs)

        return with_options(options)(command)

    return deco


DETECT_OPTIONS = [
    click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1), help="Score threshold."),
    click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold."),
    click.option("--max-det", default=300, show_default=True, type=click.IntRange(min=1), help="Boxes per image."),
]


FLAVOR_OPTIONS = [
    click.option("--flavor", type=click.Choice(TRT_FLAVORS), default="auto", show_default=True,
                 help="tensorrt: standard TensorRT 10.x/11.x, builds for this host's GPU; rtx: TensorRT-RTX, builds "
                      "ahead of time without a GPU, engines run on RTX GPUs only; auto: tensorrt where it is "
                      "installed, else rtx."),
    click.option("--target-cc", default=None,
                 help="TensorRT-RTX: compute capabilities to build for, e.g. 8.6,8.9,12.0 (7.5 8.0 8.6 8.9 12.0 "
                      "12.1, or current: this host's GPU) [default: 8.6,8.9,12.0, NVIDIA's portable set]."),
]


OVERWRITE_OPTION = click.option(
    "--overwrite", is_flag=True,
    help="Let outputs replace files trtbuild did not write, or ones changed since it wrote them (refused without).")


EXPORT_OPTIONS = [
    click.option("--imgsz", default="640", callback=imgsz_option, show_default=True,
                 help="Input size: one integer, or H,W (multiples of 32)."),
    click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1),
                 help="Batch size (the static batch, or the example batch when --dynamic)."),
    click.option("--dynamic", is_flag=True, help="Dynamic batch axis."),
    click.option("--dynamic-hw", is_flag=True, help="Also make height and width dynamic (implies --dynamic)."),
    click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=click.IntRange(13, 23),
                 help="ONNX opset (17 parses on TensorRT 10.3 / JetPack 6 and newer)."),
    click.option("--out-dir", default=str(DEFAULT_OUT_DIR), show_default=True, type=click.Path(file_okay=False),
                 help="Where artifacts and reports go."),
    click.option("--name", default=None, help="Artifact base name [default: the model file's stem]."),
    click.option("--force", is_flag=True, help="Rerun even when the inputs are unchanged."),
    OVERWRITE_OPTION,
]
