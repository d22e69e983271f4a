"""Filling a batch that the images do not fill: the one place each policy is named, with its reason.

* ``pad_batch(..., "zeros")``: the unused slots of a static-batch model get black images and their outputs are
  dropped (runners, the Predictor) — nothing is computed from them;
* ``pad_batch(..., "repeat")``: calibration repeats the group's own images — range statistics must never see
  invented pixels;
* ``full_batches``: TensorRT's calibrator takes exactly ``size`` images per call — the remainder is dropped;
* ``cycle_batch``: a benchmark cycles through a few photos to make as many batches as it times.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from ..console import human_bytes
from ..errors import InputError

T = TypeVar("T")
PAD_POLICIES = ("zeros", "repeat")


def pad_batch(part: np.ndarray, size: int, how: str = "zeros", out: np.ndarray | None = None) -> np.ndarray:
    """``part`` ([n, ...], n ≤ size) brought to ``size`` rows by ``how`` ("zeros" or "repeat").

    With ``out`` (an array of ``size`` rows whose first n already hold ``part``), the padding is written into it."""
    n = len(part)
    if n > size:
        raise InputError(f"a batch of {n} does not fit a batch of {size}")
    if how not in PAD_POLICIES:
        raise ValueError(f"padding {how!r}: one of {', '.join(PAD_POLICIES)}")
    if out is not None:
        out[n:size] = 0 if how == "zeros" else np.resize(part, (size - n, *part.shape[1:]))
        return out[:size]
    if n == size:
        return part
    if how == "zeros":
        return np.concatenate([part, np.zeros((size - n, *part.shape[1:]), part.dtype)])
    return np.resize(part, (size, *part.shape[1:]))


def full_batches(items: Sequence[T], size: int) -> list[T]:
    """The first ``len(items) - len(items) % size`` items (at least one whole batch; InputError with fewer)."""
    if len(items) < size:
        raise InputError(f"{len(items)} item(s), fewer than one batch of {size}")
    return list(items[: len(items) - len(items) % size])


def cycle_batch(items: Sequence[T], index: int, size: int) -> list[T]:
    """Batch number ``index`` of an endless cycle through ``items``."""
    return [items[(index * size + k) % len(items)] for k in range(size)]


def check_batch_memory(batch: int, hw: tuple[int, int], model, buffers: int = 1) -> None:
    """InputError when ``buffers`` batches of letterboxed inputs alone would take more than half of this host's
    memory."""
    need = buffers * batch * 3 * hw[0] * hw[1] * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > total // 2:
        what = f"{buffers} batches" if buffers > 1 else "one batch"
        verb = "need" if buffers > 1 else "needs"
        raise InputError(f"batch={batch}: {what} of {hw[0]}x{hw[1]} inputs for {model} {verb} {human_bytes(need)} "
                         f"of memory, this host has {human_bytes(total)}; use a smaller batch (e.g. 8-32)",
                         param="batch")
