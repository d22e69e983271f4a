"""Every exception class trtbuild raises on purpose: one per failure class, each message naming the file and the fix.

Library messages name the Python parameter (``max_batch=0: …``) and carry it in ``param``; the CLI rewrites
``max_batch=`` to the flag (``--max-batch``), prints ``error: <message>`` on one line and exits with ``exit_code``.
"""

from __future__ import annotations

INSTALL_HINT = (
    "install the 'gpu' extra on a CUDA host with NVIDIA's index: "
    "pip install --extra-index-url https://pypi.nvidia.com 'trtbuild[gpu]'"
)


class TrtbuildError(Exception):
    """Base of every error trtbuild raises on purpose (never a bug)."""

    exit_code = 1

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param  # the parameter the message names as ``param=value``, if any


class InputError(TrtbuildError):
    """A file or option given by the user is missing, unreadable or of the wrong kind."""

    exit_code = 2


class UnsupportedModelError(InputError):
    """The model is readable but not something trtbuild compiles (e.g. a segmentation checkpoint)."""


class ExportError(TrtbuildError):
    """ultralytics could not export the model to ONNX."""


class ParityError(TrtbuildError):
    """Two models that should compute the same thing do not (beyond the tolerance)."""


class BuildError(TrtbuildError):
    """TensorRT could not parse or build the network."""


class EngineMismatchError(TrtbuildError):
    """An engine (by its sidecar) was built for another TensorRT version or GPU than this host has."""


class EngineRunError(TrtbuildError):
    """TensorRT or CUDA failed while loading or running an engine (not a user input problem)."""


class ServerError(TrtbuildError):
    """An inference server could not be reached, stopped answering, or refused a request."""


class ServerGoneError(ServerError):
    """No server answers at the address (never started, stopped, killed, unreachable)."""


class DependencyMissingError(TrtbuildError):
    """An optional dependency (TensorRT, pycuda, a CUDA driver) is not available on this host."""

    exit_code = 3


class FewImagesWarning(UserWarning):
    """Fewer calibration images than recommended: the measured ranges may not be stable."""


class DeprecatedPluginWarning(UserWarning):
    """The build uses a TensorRT plugin that this TensorRT has deprecated (EfficientNMS_TRT since 10.12): it still
    builds, and the message names the parameter value to use instead where there is one."""
