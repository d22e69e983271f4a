"""TensorRT implicit-INT8 calibration table: write it from activation ranges, read it back.

TensorRT 10 (Jetson) builds implicit INT8 from a per-tensor scale table, the bytes an ``IInt8Calibrator``'s
``read_calibration_cache`` returns and ``trtexec --calib=<file>`` reads, so calibration can run here on the
CPU and the table be shipped to the device. The format, as TensorRT's own ``sampleINT8`` README ("Calibration
file") documents it and TensorRT writes it:

    TRT-<version>-<algorithm>          e.g. TRT-100300-EntropyCalibration2
    <tensor name>: <8 hex digits>      one line per tensor

where the hex digits are the big-endian IEEE-754 float32 bit pattern of the tensor's scale,
``amax / 127`` (``amax`` = largest magnitude kept, symmetric INT8). Tensor names are the ONNX tensor names:
TensorRT's ONNX parser names each ``ITensor`` after the ONNX value it comes from (graph input ``images``,
node outputs such as ``/model.0/conv/Conv_output_0``).

``<version>`` is TensorRT's ``NV_TENSORRT_VERSION`` (NvInferVersion.h): major*10000 + minor*100 + patch
from 10.0 on (``100300`` for 10.3.0), major*1000 + minor*100 + patch before (``8601``). TensorRT uses a
table only if its header names the reading calibrator's algorithm (``EntropyCalibration2`` for trtexec) and
a compatible TensorRT version, so the build step should re-render the header for the installed TensorRT
(``retarget_table``); the scales do not depend on it.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...artifacts import write_bytes_atomic
from ...config import DEFAULT_TRT_TABLE_VERSION as DEFAULT_TRT_VERSION
from ...errors import InputError
from ...version import version_tuple

DEFAULT_ALGORITHM = "EntropyCalibration2"  # what trtexec --calib's calibrator (IInt8EntropyCalibrator2) expects
ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")

_HEADER_RE = re.compile(r"^TRT-(\d+)-(\w+)$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{8}$")
_F32_127 = np.float32(127.0)
# Smallest amax written: a tensor that was exactly 0 everywhere gets a tiny positive scale, not 0 (a zero
# scale is not a usable INT8 range).
_MIN_AMAX = np.float32(1e-30)


def trt_version_number(version: str) -> int:
    """``"10.3.0"`` → ``100300``; ``"8.6.1"`` → ``8601`` (TensorRT's ``NV_TENSORRT_VERSION``)."""
    parts = list(version_tuple(str(version)))
    if not parts:
        raise InputError(f"trt_version={version!r}: not a TensorRT version (e.g. 10.3.0)", param="trt_version")
    major, minor, patch = (parts + [0, 0])[:3]
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def table_header(trt_version: str = DEFAULT_TRT_VERSION, algorithm: str = DEFAULT_ALGORITHM) -> str:
    """``TRT-100300-EntropyCalibration2`` for TensorRT 10.3.0 and the entropy-2 calibrator."""
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm={algorithm!r}: unknown calibration algorithm; one of {', '.join(ALGORITHMS)}",
                         param="algorithm")
    return f"TRT-{trt_version_number(trt_version)}-{algorithm}"


DEFAULT_HEADER = table_header()


def scale_to_hex(scale: float) -> str:
    """8 lowercase hex digits: the big-endian float32 bit pattern of ``scale`` (rounded to float32)."""
    return struct.pack(">f", float(np.float32(scale))).hex()


def hex_to_scale(text: str) -> float:
    """Inverse of :func:`scale_to_hex`: the float32 value (as a Python float) of 8 hex digits."""
    if not _HEX_RE.match(text.strip()):
        raise ValueError(f"not 8 hex digits: {text!r}")
    return struct.unpack(">f", bytes.fromhex(text.strip()))[0]


def amax(r) -> float:
    """Largest magnitude of a (min, max) range: what symmetric INT8 keeps."""
    return max(abs(float(r[0])), abs(float(r[1])))


def amax_to_scale(value: float) -> float:
    """The table's scale for ``value``: ``amax / 127`` computed in float32, as TensorRT does."""
    a = max(np.float32(abs(value)), _MIN_AMAX)
    return float(np.float32(a / _F32_127))


def ranges_to_scales(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Per-tensor float32 scales ``amax(r) / 127`` for a ``name -> (min, max)`` mapping, order kept."""
    return {name: amax_to_scale(amax(r)) for name, r in ranges.items()}


def format_table(scales: Mapping[str, float], header: str = DEFAULT_HEADER) -> str:
    """The table text for ``name -> scale`` (header line, then ``name: hex`` lines, final newline)."""
    if not _HEADER_RE.match(header):
        raise ValueError(f"header {header!r} is not of the form TRT-<version>-<algorithm>")
    lines = [header]
    for name, scale in scales.items():
        if not name or "\n" in name:
            raise ValueError(f"tensor name {name!r} cannot be written to a calibration table")
        lines.append(f"{name}: {scale_to_hex(scale)}")
    return "\n".join(lines) + "\n"


def format_ranges_table(ranges: Mapping[str, tuple[float, float]], header: str = DEFAULT_HEADER) -> str:
    """The table text for ``name -> (min, max)`` ranges."""
    return format_table(ranges_to_scales(ranges), header)


def write_table(
    ranges: Mapping[str, tuple[float, float]], path: str | os.PathLike, header: str = DEFAULT_HEADER
) -> Path:
    """Write the calibration table for ``name -> (min, max)`` ranges to ``path`` atomically."""
    return write_bytes_atomic(path, format_ranges_table(ranges, header).encode())


def parse_table_text(text: str, source: str = "<text>") -> tuple[str, dict[str, float]]:
    """``(header, name -> scale)`` from table text; InputError naming ``source`` and the line when malformed."""
    lines = text.splitlines()
    if not lines or not _HEADER_RE.match(lines[0].strip()):
        first = lines[0][:60] if lines else "(empty file)"
        raise InputError(
            f"{source}: not a TensorRT calibration table (first line {first!r}, expected TRT-<version>-<algorithm>); "
            "regenerate it with `trtbuild calibrate`"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")  # names may contain ':'; the value never does
        name = name.strip()
        if not sep or not name or not _HEX_RE.match(value.strip()):
            raise InputError(
                f"{source}: line {number} is not '<tensor name>: <8 hex digits>': {line[:80]!r}; "
                "regenerate the table with `trtbuild calibrate`"
            )
        scales[name] = hex_to_scale(value)
    return lines[0].strip(), scales


def parse_table(path: str | os.PathLike) -> tuple[str, dict[str, float]]:
    """Read a calibration table file: ``(header, name -> scale)``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read calibration table ({type(exc).__name__}); regenerate it with "
                         "`trtbuild calibrate`") from None
    return parse_table_text(text, str(path))


def retarget_table(
    path: str | os.PathLike, trt_version: str, algorithm: str = DEFAULT_ALGORITHM
) -> bytes:
    """The table at ``path`` with its header rewritten for ``trt_version``/``algorithm`` (scales untouched).

    What a TensorRT 10 calibrator's ``read_calibration_cache`` should return on the device.
    """
    _, scales = parse_table(path)
    return format_table(scales, table_header(trt_version, algorithm)).encode()
