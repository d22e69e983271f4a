"""TensorRT's logger and progress monitor, shared by the builder and the engine loader.

The logger keeps errors (for the one-line failure message) and prints each warning once, between progress bars;
the monitor turns TensorRT's ``IProgressMonitor`` phases into tqdm bars.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from ..console import progress_bar
from .compat import trt_module


def make_logger(flavor: str = "tensorrt"):
    """A TensorRT logger that keeps errors (for the one-line failure message) and prints warnings once."""
    trt = trt_module(flavor)

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.seen: set[str] = set()

        def log(self, severity, msg):
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.WARNING and msg not in self.seen:
                self.seen.add(msg)
                tqdm.write(f"TensorRT warning: {msg}", file=sys.stderr)  # between progress bars, not through them

    return Logger()


def progress_monitor(flavor: str = "tensorrt"):
    """tqdm bars fed by TensorRT's IProgressMonitor (one per build phase, nested by depth)."""
    trt = trt_module(flavor)

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, tqdm] = {}
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            depth = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.depth[phase_name] = depth
            if depth < 2:
                self.bars[phase_name] = progress_bar(total=num_steps, desc=("  " * depth) + phase_name, leave=False,
                                             position=depth, unit="step")

        def step_complete(self, phase_name, step):
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True  # never cancel

        def phase_finish(self, phase_name):
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return Monitor()
