"""TensorRT calibration table: float32 scales as big-endian hex, header, exact round trip, malformed input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from trtbuild.errors import InputError
from trtbuild.stages.precision.table import (
    DEFAULT_HEADER,
    amax,
    format_table,
    hex_to_scale,
    parse_table,
    ranges_to_scales,
    retarget_table,
    scale_to_hex,
    table_header,
    write_table,
)

from ..helpers import files_in


def _bits(x: float) -> bytes:
    return struct.pack(">f", x)


def test_known_hex_values_match_struct():
    for value in (1 / 127, 1.0, 0.5, 2.0 / 127, 1e-8, 123.456):
        expected = struct.pack(">f", value).hex()
        assert scale_to_hex(value) == expected
        assert _bits(hex_to_scale(expected)) == struct.pack(">f", value)
    assert scale_to_hex(1 / 127) == "3c010204"  # amax 1 (the 0..1 image input)
    assert scale_to_hex(1.0) == "3f800000"
    assert hex_to_scale("3F800000") == 1.0


def test_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    ranges = {f"/model.{i}/conv/Conv_output_0": (float(-a / 3), float(a)) for i, a in
              enumerate(np.exp(rng.uniform(-20, 6, 50)).astype(np.float32))}
    ranges["images"] = (0.0, 1.0)
    ranges["odd: name with colon"] = (-7.5, 3.0)
    ranges["zero"] = (0.0, 0.0)
    path = write_table(ranges, tmp_path / "m.calib.cache")
    assert files_in(tmp_path) == {"m.calib.cache", ".trtbuild-files.json"}  # atomic write leaves no temp file
    header, scales = parse_table(path)
    assert header == DEFAULT_HEADER
    assert list(scales) == list(ranges)
    want = ranges_to_scales(ranges)
    for name, scale in scales.items():
        assert _bits(scale) == _bits(want[name])
    for name in ("images", "odd: name with colon"):
        expected = np.float32(np.float32(amax(ranges[name])) / np.float32(127))
        assert _bits(scales[name]) == _bits(float(expected))
    assert scales["zero"] > 0  # an all-zero tensor still gets a usable (tiny) scale
    first = "/model.0/conv/Conv_output_0"
    assert path.read_text().splitlines()[1] == f"{first}: {scale_to_hex(want[first])}"


def test_header_line():
    assert DEFAULT_HEADER == "TRT-100300-EntropyCalibration2"
    assert table_header("10.13.2", "MinMaxCalibration") == "TRT-101302-MinMaxCalibration"
    assert table_header("8.6.1") == "TRT-8601-EntropyCalibration2"
    assert format_table({"images": 1 / 127}).splitlines() == ["TRT-100300-EntropyCalibration2", "images: 3c010204"]
    with pytest.raises(InputError, match="Magic"):
        table_header("10.3.0", "Magic")


def test_retarget_rewrites_only_the_header(tmp_path):
    path = write_table({"images": (0.0, 1.0), "x": (-2.0, 1.0)}, tmp_path / "t.cache")
    text = retarget_table(path, "10.16.0").decode()
    assert text.splitlines()[0] == "TRT-101600-EntropyCalibration2"
    assert text.splitlines()[1:] == path.read_text().splitlines()[1:]


@pytest.mark.parametrize(
    "text, match",
    [
        ("TRT-100300-EntropyCalibration2\nimages: 3c010204\nbroken line\n", "line 3"),
        ("TRT-100300-EntropyCalibration2\nimages: 3c0102\n", "line 2"),
        ("TRT-100300-EntropyCalibration2\n: 3c010204\n", "line 2"),
        ("images: 3c010204\n", "not a TensorRT calibration table"),
        ("", "not a TensorRT calibration table"),
    ],
)
def test_malformed_table_is_an_input_error(tmp_path, text, match):
    path = tmp_path / "bad.cache"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        parse_table(path)
    assert str(path) in str(err.value)
