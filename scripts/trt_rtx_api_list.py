"""Write the Python API names of the installed ``tensorrt_rtx`` module to tests/trt_api/, for tests/apicheck.py.

Why: TensorRT-RTX installs from PyPI and its pybind11 module imports on a CPU-only host (unlike standard
TensorRT's, read statically by scripts/trt_api_lists.py), so its names are read by introspection: every public
module attribute, every public member of each class (and nested class, ``ILogger.Severity``), enum members, and
each class's Python bases. The list has the same sections as the others: ``[qualified]``, ``[bases]``, an empty
``[bare]`` (nothing is read from bytes), and ``[absent]``: the probe names (defaults plus the parts of
``API_USES`` in tests/api_uses.py) that no class or module attribute has.

Usage: python scripts/trt_rtx_api_list.py [--out tests/trt_api]   (with tensorrt-rtx installed)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import inspect
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP_DUNDER = ("__init__", "__call__", "__enter__", "__exit__")
PROBES = ["FP16", "INT8", "IInt8EntropyCalibrator2", "IInt8Calibrator", "int8_calibrator", "set_calibration_profile",
          "platform_has_fast_fp16", "platform_has_fast_int8", "EfficientNMS_TRT"]


def _public(name: str) -> bool:
    return not name.startswith("_") or name in KEEP_DUNDER


def names_of(trt) -> tuple[set[str], dict[str, list[str]]]:
    """(qualified names, {class: its Python bases}) of a pybind11 module."""
    qualified, bases = set(), {}

    def walk(obj, prefix: str, depth: int = 0):
        for name in dir(obj):
            if not _public(name) or (depth and name in ("name", "value") and prefix.count(".") > 2):
                continue
            try:
                value = getattr(obj, name)
            except Exception:  # a property that raises on the class
                continue
            q = f"{prefix}{name}"
            qualified.add(q)
            if inspect.isclass(value) and value.__module__.startswith(trt.__name__) and depth < 2 \
                    and value.__qualname__.endswith(name):
                own = [b.__name__ for b in value.__bases__ if b.__module__.startswith(trt.__name__)]
                if own:
                    bases[q] = own
                walk(value, q + ".", depth + 1)

    walk(trt, "")
    if hasattr(trt, "__version__"):
        qualified.add("__version__")
    return qualified, bases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "trt_api")
    args = ap.parse_args(argv)
    trt = importlib.import_module("tensorrt_rtx")
    version = trt.__version__
    qualified, bases = names_of(trt)
    sys.path.insert(0, str(ROOT))
    from tests.api_uses import API_USES

    probes = set(PROBES) | {part for name in API_USES for part in name.split(".")}
    leaves = {q.rsplit(".", 1)[-1] for q in qualified}
    absent = sorted(p for p in probes if p not in leaves)
    binding = Path(trt.__file__).resolve().parent
    so = sorted(binding.parent.glob("tensorrt_rtx_bindings/*.so")) or sorted(binding.glob("*.so"))
    so_sha = hashlib.sha256(so[0].read_bytes()).hexdigest() if so else "n/a"
    head = [f"TensorRT-RTX {version} Python API names (tensorrt_rtx module), for tests/apicheck.py",
            f"package: tensorrt-rtx {metadata.version('tensorrt-rtx')} from PyPI",
            f"so: {so[0].name if so else 'n/a'} sha256 {so_sha}",
            f"date: {_dt.date.today().isoformat()}",
            "method: scripts/trt_rtx_api_list.py: the module imports here (no GPU needed), so its names are",
            "  read by introspection: public module attributes, members of classes and nested classes.",
            f"counts: qualified {len(qualified)}, bare 0, absent {len(absent)}",
            "[qualified] names present; [bases] class and its Python bases; [bare] unused here;",
            "[absent] probe names no class or module attribute of tensorrt_rtx has."]
    body = ["[qualified]", *sorted(qualified), "[bases]", *(f"{c} {' '.join(b)}" for c, b in sorted(bases.items())),
            "[bare]", "[absent]", *absent]
    path = args.out / f"tensorrt_rtx-{version}.txt"
    path.write_text("".join(f"# {h}\n" for h in head) + "\n".join(body) + "\n")
    print(f"wrote {path}: {len(qualified)} names, {len(absent)} absent probes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
