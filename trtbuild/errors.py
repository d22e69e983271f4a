"""One exception type per failure class; each message names the file involved and the fix.

The CLI prints ``error: <message>`` on one line and exits with the class's ``exit_code``.
"""

from __future__ import annotations


class TrtbuildError(Exception):
    """Base of every error trtbuild raises on purpose (never a bug)."""

    exit_code = 1


class InputError(TrtbuildError):
    """A file or option given by the user is missing, unreadable or of the wrong kind."""

    exit_code = 2


class UnsupportedModelError(InputError):
    """The model is readable but not something trtbuild compiles (e.g. a segmentation checkpoint)."""


class ExportError(TrtbuildError):
    """ultralytics could not export the model to ONNX."""


class SimplifyError(TrtbuildError):
    """The simplified ONNX could not be produced or verified."""


class ParityError(TrtbuildError):
    """Two models that should compute the same thing do not (beyond the tolerance)."""


class DependencyMissingError(TrtbuildError):
    """An optional dependency (TensorRT, pycuda, a CUDA driver) is not available on this host."""

    exit_code = 3
