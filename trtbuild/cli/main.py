"""The ``trtbuild`` command group: every command, and the one error path.

Whatever a command meets ends as one line on stderr and an exit code, never a traceback (``--debug`` shows one):
a ``TrtbuildError`` as ``error: <message>`` (the parameter it names spelled as its flag) and its code (2 bad input,
3 missing dependency, 1 otherwise); a usage error (unknown option, bad value) as one line and 2; an ``OSError``
(permission, full disk) naming its file, 1; Ctrl-C or SIGTERM as ``error: interrupted``, 130, after every stage
removed its temporary files; anything else as an internal error, 1.
"""

from __future__ import annotations

import errno
import signal
import sys

import click

from ..errors import TrtbuildError
from ..version import __version__
from .common import error_line
from .data import clean_cmd, synth_cmd
from .deploy import deploy_cmd, serve_cmd
from .engine import build_cmd, check_cmd, engine_cmd, inspect_cmd
from .model import doctor_cmd, export_cmd, simplify_cmd
from .precision import budget_cmd, calibrate_cmd, qat_cmd, report_cmd
from .run import bench_cmd, eval_cmd, infer_cmd


OS_ADVICE = {errno.EACCES: "choose a folder you can write (--out-dir / --out) or fix its permissions",
             errno.EPERM: "choose a folder you can write (--out-dir / --out) or fix its permissions",
             errno.EROFS: "the file system is read-only: choose another folder (--out-dir / --out)",
             errno.ENOSPC: "the disk is full: free space or choose another folder (--out-dir / --out)",
             errno.EDQUOT: "the disk quota is exceeded: free space or choose another folder (--out-dir / --out)",
             errno.ENOENT: "check the path",
             errno.ENOTDIR: "choose a folder, not a file"}


def os_error_line(exc: OSError) -> str:
    where = exc.filename or "a file"
    what = exc.strerror or str(exc)
    return f"error: {where}: {what}; {OS_ADVICE.get(exc.errno, 'check the path and the disk')}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


class _Group(click.Group):
    """The one error path (see the module docstring)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TrtbuildError as exc:
            if ctx.meta.get("trtbuild.debug"):
                raise
            click.echo(error_line(exc), err=True)
            ctx.exit(exc.exit_code)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):  # SIGTERM: stages clean up as for Ctrl-C
            try:
                previous[signum] = signal.signal(signum, _interrupt)
            except ValueError:  # not the main thread
                pass
        try:
            code = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
            code = code if isinstance(code, int) else 0
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else (prog_name or "trtbuild")
            click.echo(f"error: {exc.format_message()} (see: {command} --help)", err=True)
            code = 2
        except (click.Abort, KeyboardInterrupt) as exc:
            if debug:
                raise
            cause = exc.__cause__ if isinstance(exc, click.Abort) else exc  # click wraps the KeyboardInterrupt
            why = f" ({cause})" if cause is not None and str(cause) else ""
            click.echo(f"error: interrupted{why}; temporary files were removed, rerun the command to finish",
                       err=True)
            code = 130
        except OSError as exc:
            if debug:
                raise
            click.echo(os_error_line(exc), err=True)
            code = 1
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            code = exc.exit_code
        except Exception as exc:  # noqa: BLE001 - the last resort: a bug, said in one line
            if debug:
                raise
            click.echo(f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback "
                       "and report it", err=True)
            code = 1
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trtbuild")
@click.option("--debug", is_flag=True, help="Show the traceback of an error instead of its one line.")
@click.pass_context
def cli(ctx, debug):
    """Compile a YOLOv8 detector into TensorRT engines and run it fast.

    Pipeline: export (.pt/.yaml → ONNX) → simplify (onnxsim) → precision → build → run.
    `trtbuild engine` runs every stage this host can; `trtbuild doctor` says which those are.

    \b
    Examples:
      trtbuild engine --model models/shapes-yolov8n.pt --precision all --data datasets/shapes
      trtbuild infer engines/shapes-yolov8n.fp16.engine photos/ --json dets.jsonl
      trtbuild doctor
    """
    ctx.meta["trtbuild.debug"] = debug


for command in (export_cmd, simplify_cmd, doctor_cmd, engine_cmd, infer_cmd, eval_cmd, bench_cmd, calibrate_cmd,
                budget_cmd, report_cmd, qat_cmd, build_cmd, check_cmd, inspect_cmd, synth_cmd, clean_cmd, deploy_cmd,
                serve_cmd):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="trtbuild")


if __name__ == "__main__":
    main()
