"""The live status of a streaming run on a terminal: one line per stream and one for the pipeline, redrawn in place
twice a second; events (a lost source, a skipped file) print above it. Where stderr is not a terminal (a log) the
status is written as plain lines every 30 s instead, so a captured log stays short."""

from __future__ import annotations

import sys
import threading
import time

import click

from ..stream import status_lines

LOG_INTERVAL_S = 30.0


class LiveStatus:
    """``update(snapshot)`` from the run's monitor thread, ``say(line)`` for events, ``close()`` at the end."""

    def __init__(self, enabled: bool = True):
        try:
            self.tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.enabled = enabled
        self._drawn = 0
        self._last_log = time.monotonic()
        self._lock = threading.Lock()

    def _clear(self) -> None:
        if self._drawn:
            click.echo(f"\x1b[{self._drawn}F\x1b[J", err=True, nl=False)  # up to the first line, erase below
            self._drawn = 0

    def update(self, snapshot: dict) -> None:
        if not self.enabled:
            return
        lines = status_lines(snapshot)
        with self._lock:
            if self.tty:
                self._clear()
                click.echo("\n".join(lines), err=True)
                self._drawn = len(lines)
            elif time.monotonic() - self._last_log >= LOG_INTERVAL_S:
                self._last_log = time.monotonic()
                click.echo("\n".join(lines), err=True)

    def say(self, line: str) -> None:
        with self._lock:
            if self.tty:
                self._clear()
            click.echo(line, err=True)

    def close(self) -> None:
        with self._lock:
            if self.tty:
                self._clear()
