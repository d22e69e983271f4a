"""A pycuda double for CPU tests — NOT pycuda (see driver.py); its names are checked against pycuda 2026.1's list.

``install(monkeypatch)`` puts it in ``sys.modules`` as ``pycuda`` / ``pycuda.driver`` for one test.
"""

from __future__ import annotations

import sys


def install(monkeypatch):
    """Make ``import pycuda.driver`` give the double for the rest of the test; returns the driver module."""
    from . import driver

    monkeypatch.setitem(sys.modules, "pycuda", sys.modules[__name__])
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return driver
