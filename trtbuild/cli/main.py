"""The ``trtbuild`` command group: every command, and the one error path.

Any ``TrtbuildError`` a command meets ends as ``error: <message>`` on one line (the parameter it names spelled as
its flag) and the error's exit code; usage errors are click's (exit 2).
"""

from __future__ import annotations

import click

from ..errors import TrtbuildError
from ..version import __version__
from .common import error_line
from .data import synth_cmd
from .deploy import deploy_cmd, serve_cmd
from .engine import build_cmd, check_cmd, inspect_cmd
from .model import doctor_cmd, engine_cmd, export_cmd, simplify_cmd
from .precision import budget_cmd, calibrate_cmd, report_cmd
from .run import bench_cmd, eval_cmd, infer_cmd


class _Group(click.Group):
    """Turns every ``TrtbuildError`` into ``error: <message>`` on stderr and the error's exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TrtbuildError as exc:
            click.echo(error_line(exc), err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trtbuild")
def cli():
    """Compile a YOLOv8 detector into TensorRT engines and run it fast.

    Pipeline: export (.pt/.yaml → ONNX) → simplify (onnxsim) → precision → build → run.
    `trtbuild engine` runs every stage this host can; `trtbuild doctor` says which those are.
    """


for command in (export_cmd, simplify_cmd, doctor_cmd, engine_cmd, infer_cmd, eval_cmd, bench_cmd, calibrate_cmd,
                budget_cmd, report_cmd, build_cmd, check_cmd, inspect_cmd, synth_cmd, deploy_cmd, serve_cmd):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="trtbuild")


if __name__ == "__main__":
    main()
