"""The command line: the only layer that imports click. ``trtbuild`` is ``cli.main:main``."""

from .main import cli, main

__all__ = ["cli", "main"]
