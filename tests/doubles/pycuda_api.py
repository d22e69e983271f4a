"""Name checking for the pycuda double (tests/doubles/pycuda/): the list from pycuda's sdist and the checked base.

tests/pycuda_api/pycuda-2026.1.txt is made by scripts/pycuda_api_list.py from the real pycuda 2026.1 sources; names
are prefixed by their module (``driver.Stream.synchronize``). ``Checked`` classes check every public attribute read
on the class (``driver.Context.pop``) or an instance (``stream.handle``) against it, ``checked_module`` every
module attribute; an absent name raises AttributeError as the real pycuda would, and every checked name is
recorded in ``TOUCHED``. Dunder methods are not checked (the lists record only some).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from ..apicheck import ApiList

LIST = Path(__file__).resolve().parents[1] / "pycuda_api" / "pycuda-2026.1.txt"
TOUCHED: set[str] = set()


def load_pycuda_api(path: Path = LIST) -> ApiList:
    api, section = ApiList(path.stem.partition("-")[2]), None
    for line in path.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#") and section == "qualified":
            api.qualified.add(line)
        elif line and not line.startswith("#") and section == "bases":
            cls, *bases = line.split()
            api.bases[cls] = bases
    return api


API = load_pycuda_api()


def check(qualified: str, what: str) -> None:
    if qualified not in API:
        raise AttributeError(f"{what} has no attribute '{qualified.rsplit('.', 1)[-1]}' (pycuda.{qualified} is not "
                             f"in tests/pycuda_api/{LIST.name})")
    TOUCHED.add(qualified)


class _CheckedMeta(type):
    def __getattribute__(cls, name):
        if not name.startswith("_"):
            pq = type.__getattribute__(cls, "_pq")
            check(f"{pq}.{name}", f"type object 'pycuda.{pq}'")
        return type.__getattribute__(cls, name)


class Checked(metaclass=_CheckedMeta):
    """Base of the double's classes; ``_pq`` is the qualified name (``"driver.Stream"``)."""

    _pq = ""

    def __getattribute__(self, name):
        if not name.startswith("_"):
            pq = type(self)._pq
            check(f"{pq}.{name}", f"'pycuda.{pq}' object")
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            raise AttributeError(f"'pycuda.{type(self)._pq}' object attribute '{name}' is read-only")
        object.__setattr__(self, name, value)


class _CheckedModule(types.ModuleType):
    def __getattribute__(self, name):
        if not name.startswith("_"):
            prefix = types.ModuleType.__getattribute__(self, "__name__").rsplit(".", 1)[-1]
            check(f"{prefix}.{name}", f"module 'pycuda.{prefix}'")
        return types.ModuleType.__getattribute__(self, name)


def checked_module(name: str) -> None:
    """Make module ``name`` (already in sys.modules) check its public attributes."""
    sys.modules[name].__class__ = _CheckedModule
