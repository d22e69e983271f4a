"""Console helpers: progress bars, capture native (C/C++) stderr chatter, human-readable sizes and tables."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator, Sequence


QUIET_INTERVAL = 30.0  # seconds between progress updates when stderr is not a terminal (a log file, CI)


class LogLines:
    """tqdm's output made fit for a log file: each update a line of its own, without the carriage returns and the
    cursor moves (``ESC[A``) tqdm uses to redraw nested bars in place on a terminal."""

    _ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for part in self._ESCAPES.sub("", text).replace("\n", "\r").split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar on stderr with the rate and ETA; where stderr is not a terminal it writes one line at most every
    ``QUIET_INTERVAL`` seconds instead of a redraw per step, so a captured log stays a few lines long."""
    from tqdm import tqdm

    try:
        interactive = sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        kwargs.setdefault("file", LogLines(sys.stderr))
        kwargs.setdefault("mininterval", QUIET_INTERVAL)
        kwargs.setdefault("maxinterval", QUIET_INTERVAL * 4)
        kwargs.setdefault("ncols", 100)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)


class CapturedLines:
    def __init__(self) -> None:
        self.lines: list[str] = []


@contextlib.contextmanager
def capture_fd_stderr() -> Iterator[CapturedLines]:
    """Redirect file descriptor 2 (where C++ libraries print) into a buffer for the duration.

    Python-level exceptions still propagate; the captured lines are available afterwards.
    """
    captured = CapturedLines()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded interpreters): capture nothing
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.lines = tmp.read().decode(errors="replace").splitlines()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain left-aligned text table (numbers right-aligned)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(_is_number(r[i]) for r in cells[1:]) for i in range(len(header))]

    def fmt(row):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return False
