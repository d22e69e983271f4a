"""Runtime buffer planning without CUDA: concrete I/O shapes, profile checks and a grow-only buffer pool.

The TensorRT runner asks three questions before every batch: what shape and byte size does each I/O tensor
have now (``plan_buffers``), is the requested input inside the engine's optimization profile
(``check_profile``, so the user gets a one-line fix instead of a TensorRT error), and which device/pinned
buffers must be (re)allocated (``BufferPool.request``). Keeping the answers here, in plain Python, lets them be
tested on every host; the pycuda side only allocates what the pool says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..iospec import IOSpec

ALIGN = 256  # allocation granularity in bytes (CUDA's own allocation alignment)

Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max) shapes of one input


def _is_static(dim) -> bool:
    return isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim > 0


def _dtype_name(name: str, dtype) -> str:
    try:
        return np.dtype(dtype).name
    except TypeError:
        raise InputError(f"tensor {name!r} has dtype {dtype!r}, which has no NumPy equivalent; rebuild the engine "
                         "with float32/float16/int32/int8/bool I/O") from None


@dataclass(frozen=True)
class TensorPlan:
    """One I/O tensor at concrete dims: name, direction, shape and NumPy dtype name."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize


@dataclass(frozen=True)
class BufferPlan:
    """Every I/O tensor of one call: inputs first, then outputs, each in the engine's I/O order."""

    tensors: tuple[TensorPlan, ...]

    @property
    def inputs(self) -> tuple[TensorPlan, ...]:
        return tuple(t for t in self.tensors if t.is_input)

    @property
    def outputs(self) -> tuple[TensorPlan, ...]:
        return tuple(t for t in self.tensors if not t.is_input)

    def __getitem__(self, name: str) -> TensorPlan:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"no tensor {name!r} in the plan (tensors: {', '.join(t.name for t in self.tensors)})")

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def bytes_by_name(self) -> dict[str, int]:
        """``{name: nbytes}``: e.g. the plan at the profile's max shapes gives ``BufferPool(max_bytes=...)``."""
        return {t.name: t.nbytes for t in self.tensors}


def _fix(index: int, ndim: int, too_big: bool, shape: tuple[int, ...]) -> str:
    """The build option that makes a profile cover ``shape`` at axis ``index`` of a [B,3,H,W] input."""
    if shape[index] == 0:
        return "feed a non-empty array"
    if ndim == 4 and index == 0:
        return f"rebuild with --{'max' if too_big else 'min'}-batch {shape[0]}"
    if ndim == 4 and index in (2, 3):
        return f"rebuild with --{'max' if too_big else 'min'}-hw {shape[2]},{shape[3]}"
    return "feed a shape within the profile or rebuild the engine for it"


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def check_profile(name: str, shape: Sequence[int], profile: Profile) -> None:
    """Raise InputError unless ``min <= shape <= max`` on every axis of ``profile`` (min, opt, max)."""
    shape = tuple(int(d) for d in shape)
    lo, _, hi = (tuple(int(d) for d in s) for s in profile)
    if len(shape) != len(lo):
        raise InputError(f"input {name!r}: shape {_fmt(shape)} has {len(shape)} dims but the engine's profile has "
                         f"{len(lo)} (min {_fmt(lo)}, max {_fmt(hi)}); feed a {len(lo)}-D array")
    for i, (d, mn, mx) in enumerate(zip(shape, lo, hi)):
        if d < mn or d > mx:
            raise InputError(f"input {name!r}: shape {_fmt(shape)} is outside the engine's profile (min {_fmt(lo)}, "
                             f"max {_fmt(hi)}); {_fix(i, len(shape), d > mx, shape)}")


def _resolve(spec: IOSpec, given: Sequence[int] | None, role: str) -> tuple[int, ...]:
    """The concrete shape of ``spec``: the spec itself when static, else ``given`` checked against the spec."""
    if given is None:
        if all(_is_static(d) for d in spec.shape):
            return tuple(int(d) for d in spec.shape)
        raise InputError(f"{role} {spec.name!r} has dynamic shape {tuple(spec.shape)} and no concrete shape was "
                         "given; pass its shape in `shapes`")
    shape = tuple(given)
    if len(shape) != len(spec.shape):
        raise InputError(f"{role} {spec.name!r}: shape {_fmt(shape)} has {len(shape)} dims, the engine's tensor "
                         f"{tuple(spec.shape)} has {len(spec.shape)}")
    for i, (d, want) in enumerate(zip(shape, spec.shape)):
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:  # 0: an empty (NMS) output
            raise InputError(f"{role} {spec.name!r}: shape {_fmt(shape)} has an invalid dim at axis {i}; "
                             "every dim must be a non-negative integer")
        if _is_static(want) and int(d) != int(want):
            raise InputError(f"{role} {spec.name!r}: shape {_fmt(shape)} differs from the engine's fixed dim "
                             f"{want} at axis {i} (tensor shape {tuple(spec.shape)})")
    return tuple(int(d) for d in shape)


def plan_buffers(inputs: Sequence[IOSpec], outputs: Sequence[IOSpec], shapes: Mapping[str, Sequence[int]],
                 profiles: Mapping[str, Profile] | None = None) -> BufferPlan:
    """Concrete shape, dtype and byte size of every I/O tensor for one call.

    ``shapes`` holds the shape of each tensor with a dynamic dim (inputs as requested, outputs as the backend
    reports them once the input shapes are set); static tensors may be listed too but must match. Inputs are
    checked against ``profiles`` (``{name: (min, opt, max)}``) where one is given.
    """
    tensors = []
    for specs, is_input in ((inputs, True), (outputs, False)):
        role = "input" if is_input else "output"
        for spec in specs:
            shape = _resolve(spec, shapes.get(spec.name), role)
            if is_input and profiles and spec.name in profiles:
                check_profile(spec.name, shape, profiles[spec.name])
            tensors.append(TensorPlan(spec.name, is_input, shape, _dtype_name(spec.name, spec.dtype)))
    return BufferPlan(tuple(tensors))


def _round_up(n: int) -> int:
    return max(ALIGN, -(-n // ALIGN) * ALIGN)


class BufferPool:
    """Byte capacity per tensor name; decides what to (re)allocate for a new plan.

    Buffers only grow: a smaller shape reuses the buffer it has. A growing tensor gets ``growth`` times its old
    capacity (at least what it needs), so a slowly rising batch does not reallocate on every call, but never
    more than ``max_bytes[name]`` (the size at the profile's max shapes), so a dynamic engine never holds more
    than its largest call needs. Sizes are multiples of ``ALIGN`` except where the cap cuts them.
    """

    def __init__(self, growth: float = 1.5, max_bytes: Mapping[str, int] | None = None):
        if growth < 1:
            raise ValueError(f"growth must be >= 1, got {growth}")
        self.growth = growth
        self.max_bytes = dict(max_bytes or {})
        self.capacities: dict[str, int] = {}

    def _capped(self, name: str, size: int, need: int) -> int:
        cap = self.max_bytes.get(name)
        return max(need, min(size, cap)) if cap is not None else size

    def request(self, plan: BufferPlan) -> dict[str, int]:
        """``{name: bytes}`` of the tensors that need a new, bigger allocation; the others keep theirs."""
        grown = {}
        for t in plan.tensors:
            need = t.nbytes
            old = self.capacities.get(t.name)
            if old is not None and old >= need:
                continue
            size = _round_up(need) if old is None else _round_up(max(need, math.ceil(old * self.growth)))
            grown[t.name] = self.capacities[t.name] = self._capped(t.name, size, need) or ALIGN
        return grown

    def preallocate_max(self) -> dict[str, int]:
        """Allocate ``max_bytes`` for every named tensor at once (the "max" policy); returns what grew."""
        grown = {}
        for name, size in self.max_bytes.items():
            size = size or ALIGN
            if self.capacities.get(name, -1) < size:
                grown[name] = self.capacities[name] = size
        return grown
