"""The library's side of the contract with its callers, checked on the source: a message raised outside ``cli/``
names Python parameters (``max_batch=16``), never command-line flags (the CLI maps one to the other, in one place:
``cli/common.py``), and every parameter such a message names is one the CLI knows how to spell as a flag."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import trtbuild
from trtbuild.cli.common import PARAMS, error_line
from trtbuild.errors import InputError

PACKAGE = Path(trtbuild.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def _raised_messages():
    """(file:line, source text) of every ``raise X(...)`` expression outside cli/."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        src = path.read_text()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", ast.get_source_segment(src, node.exc) or ""


def test_no_library_message_names_a_command_line_flag():
    offenders = [(where, FLAG.findall(text)) for where, text in _raised_messages() if FLAG.search(text)]
    assert not offenders, offenders


def test_every_parameter_a_library_message_names_has_a_flag():
    named = {m for _, text in _raised_messages() for m in re.findall(r"(?<![\w.{])([a-z][a-z0-9_]*)=", text)}
    named -= {"param", "hint"}  # keyword arguments of the error classes themselves
    python_only = {"streams", "use_graph", "algorithm"}  # parameters of Python-only APIs (Executor, table writer)
    unknown = sorted(n for n in named if n not in PARAMS | python_only)
    assert not unknown, unknown


def test_the_cli_spells_parameters_as_flags():
    assert error_line(InputError("x.onnx: fixed batch; export with dynamic=True, max_batch=8")) == \
        "error: x.onnx: fixed batch; export with --dynamic, --max-batch 8"
    assert error_line(InputError("rebuild it (force=True)")) == "error: rebuild it (--force)"
