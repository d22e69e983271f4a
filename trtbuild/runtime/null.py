"""``RecordedRunner``: a runner that answers at once with a real model's outputs, to measure all but the model.

It runs the real model once (on a letterboxed real frame) when it is made and then returns that output for every
image of every batch, without computing anything: a streaming run over it measures the host's side — decoding,
letterbox, batching, postprocess (on real model outputs: the decode and NMS do their real work) and the sinks —
i.e. how fast this host could feed a model that took no time. ``bench --streams`` reports it as the host capacity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..iospec import IOSpec
from .base import Runner


class RecordedRunner(Runner):
    """``runner``'s specs and metadata, and one recorded output per model output, replayed for any batch size."""

    def __init__(self, runner: Runner, example: np.ndarray):
        """``example``: a letterboxed input batch [n, 3, H, W] the real ``runner`` is run on once."""
        self.path = Path(f"{runner.path} (recorded outputs)")
        self.metadata = dict(runner.metadata)
        self._inputs, self._outputs = list(runner.input_specs), list(runner.output_specs)
        self._name = f"recorded outputs of {runner.backend_name}"
        batch = np.ascontiguousarray(example[: runner.static_batch or len(example)], np.float32)
        self._recorded = [np.asarray(o)[:1].copy() for o in runner.infer(batch)]

    @property
    def input_specs(self) -> list[IOSpec]:
        return self._inputs

    @property
    def output_specs(self) -> list[IOSpec]:
        return self._outputs

    @property
    def backend_name(self) -> str:
        return self._name

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        n = len(batch)
        return [np.broadcast_to(o, (n, *o.shape[1:])) for o in self._recorded]
