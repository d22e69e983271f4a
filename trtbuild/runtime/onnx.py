"""ONNX Runtime backend of the ``Runner`` interface: the CPU reference every engine is compared with."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..artifacts import package_version
from ..errors import InputError
from ..iospec import IOSpec
from .base import Runner

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
}


def _spec(arg) -> IOSpec:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
    return IOSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


class OnnxRunner(Runner):
    """Runs an ONNX model (a file, or an in-memory ``onnx.ModelProto``) with ONNX Runtime (CPU by default)."""

    def __init__(self, path, providers: list[str] | None = None, threads: int | None = None,
                 spinning: bool = True):
        """``threads``: ONNX Runtime's intra-op threads (default: its own choice, or $TRTBUILD_ORT_THREADS);
        ``spinning`` False stops idle worker threads from busy-waiting, leaving the cores to other threads of the
        process (the streaming pipeline's decoders)."""
        import onnxruntime as ort

        in_memory = not isinstance(path, (str, Path))
        self.path = Path("<in-memory model>") if in_memory else Path(path)
        source = path.SerializeToString() if in_memory else str(self.path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads or os.environ.get("TRTBUILD_ORT_THREADS"):
            opts.intra_op_num_threads = int(threads or os.environ["TRTBUILD_ORT_THREADS"])
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(source, opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise InputError(f"{self.path}: ONNX Runtime cannot load it ({first}); re-export the model") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._inputs = [_spec(a) for a in self.session.get_inputs()]
        self._outputs = [_spec(a) for a in self.session.get_outputs()]
        self._input_dtype = np.dtype(self._inputs[0].dtype)

    @property
    def input_specs(self) -> list[IOSpec]:
        return self._inputs

    @property
    def output_specs(self) -> list[IOSpec]:
        return self._outputs

    @property
    def backend_name(self) -> str:
        providers = ", ".join(p.removesuffix("ExecutionProvider") for p in self.session.get_providers())
        return f"ONNX Runtime {package_version('onnxruntime')} ({providers})"

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for ``batch``, cast to the model's input type (float16 inputs of a typed model too)."""
        if batch.dtype != self._input_dtype:
            batch = batch.astype(self._input_dtype)
        return self.session.run(None, {self._inputs[0].name: batch})
