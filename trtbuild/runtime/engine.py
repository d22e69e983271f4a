"""TensorRT backend of the ``Runner`` interface: an engine file run through the pycuda ``Executor`` (cuda/).

Opening: the sidecar is checked against this host first (engine_file.check_engine: wrong TensorRT or GPU is
refused with a rebuild command, before TensorRT is even imported), then the engine is deserialized inside
the device's primary CUDA context. Each ``infer``: set the input shape when it changed (dynamic engines),
ask TensorRT for the output shapes, plan the buffers (cuda/plan.py: profile check, grow-only pool), then one
Executor call — async H2D, ``execute_async_v3``, async D2H, one synchronize — with per-stage CUDA events.

Thread model: a runner belongs to the thread that uses it (TensorRT execution contexts are not thread
safe); open one runner per thread, each with its own stream and buffers — or ``clone()`` one: the clone shares the
engine (its weights are in device memory once) and has an execution context, a stream and buffers of its own, for
another thread (the streaming pipeline runs one per batch in flight). The buffers are made by the thread that calls
``infer`` first; ``release_thread()`` frees them from that same thread when it is done.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cuda.context import CudaContext, require_pycuda
from ..cuda.executor import Executor
from ..cuda.letterbox import make_letterboxer
from ..cuda.plan import BufferPlan, check_profile, plan_buffers
from ..errors import EngineRunError
from ..iospec import IOSpec
from ..layout import Layout
from ..trt.compat import trt_module
from ..trt.engine_file import RuntimeCache, check_engine, deserialize, engine_flavor, execution_contexts
from ..trt.host import Host, probe_host
from .base import Runner


def _dims(shape) -> tuple:
    return tuple(int(d) if int(d) >= 0 else None for d in shape)


class TrtRunner(Runner):
    """Runs a TensorRT or TensorRT-RTX engine; ``streams`` > 1 enables the pipelined mode of ``infer_many``.

    TensorRT-RTX engines compile their kernels for this GPU when loaded (JIT): the result is kept in a runtime cache
    beside the engine (``<engine>.runtime.cache``), loaded next time; ``rtx_cuda_graphs`` turns on RTX's own
    whole-graph CUDA capture (the pycuda ``use_graph`` capture is the standard-TensorRT one)."""

    takes_frames = True  # infer_frames: GPU letterbox straight into the engine's input buffer

    def __init__(self, path: str | Path, device: int = 0, streams: int = 1, use_graph: bool = False,
                 mapped: bool | None = None, host: Host | None = None, rtx_cuda_graphs: bool = False):
        self.path = Path(path)
        host = host or probe_host()
        meta = check_engine(self.path, host)  # refuses a mismatched engine before TensorRT is imported
        self.flavor = engine_flavor(self.path, meta)
        host.require_tensorrt(self.flavor)
        trt = trt_module(self.flavor)
        require_pycuda()
        self.sidecar = meta or {}
        self.metadata = dict(self.sidecar.get("metadata") or {})
        self.ctx = CudaContext(device)
        self.mapped = self.ctx.integrated if mapped is None else mapped  # Jetson: zero-copy host memory
        self.streams, self.use_graph = streams, use_graph
        self._backend = f"{host.info(self.flavor).label} ({self.ctx.name}{', mapped' if self.mapped else ''})"
        self.runtime_cache: RuntimeCache | None = None
        with self.ctx:
            self._runtime, loaded = deserialize(self.path, host, self.flavor)
            engine: trt.ICudaEngine = loaded
            self.engine: trt.ICudaEngine = loaded
            if self.flavor == "rtx":
                self.runtime_cache = RuntimeCache(engine, Layout.of(self.path).runtime_cache(self.path),
                                                  rtx_cuda_graphs)
            # one execution context per stream: a context must not run on two streams at once
            self.contexts: list[trt.IExecutionContext] = execution_contexts(engine, self.flavor, streams,
                                                                            self.runtime_cache)
        self.context: trt.IExecutionContext = self.contexts[0]
        self._slot_context: dict[int, object] = {}
        self._inputs: list[IOSpec] = []
        self._outputs: list[IOSpec] = []
        self.profiles: dict = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            spec = IOSpec(name, _dims(engine.get_tensor_shape(name)),
                          np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(spec)
                if spec.is_dynamic:
                    self.profiles[name] = tuple(tuple(int(d) for d in s)
                                                for s in engine.get_tensor_profile_shape(name, 0))
            else:
                self._outputs.append(spec)
        self._executor = None
        self._letterbox = None
        self._shape: tuple | None = None
        self._plan: BufferPlan | None = None
        self._owner: TrtRunner | None = None  # set on clones: the runner whose engine they share

    def clone(self) -> TrtRunner:
        """A runner on the same engine (no second copy of its weights) with its own execution context, stream and
        buffers, for another thread; closing it leaves the engine to this runner."""
        other = object.__new__(TrtRunner)
        other.__dict__.update({k: v for k, v in self.__dict__.items()
                               if k in ("path", "flavor", "sidecar", "metadata", "ctx", "mapped", "streams",
                                        "use_graph", "_backend", "runtime_cache", "_runtime", "engine", "_inputs",
                                        "_outputs", "profiles")})
        with self.ctx:
            other.contexts = execution_contexts(self.engine, self.flavor, 1, self.runtime_cache)
        other.context = other.contexts[0]
        other._slot_context, other._executor, other._letterbox = {}, None, None
        other._shape = other._plan = None
        other._owner = self
        return other

    def release_thread(self) -> None:
        """Free the buffers, streams and letterbox the calling thread made (the thread that ran ``infer``)."""
        if getattr(self, "ctx", None) is None:
            return
        with self.ctx:
            if self._letterbox is not None:
                self._letterbox.close()
            if self._executor is not None:
                self._executor.close()
        self._letterbox = self._executor = None
        self._shape = self._plan = None

    @property
    def input_specs(self) -> list[IOSpec]:
        return self._inputs

    @property
    def output_specs(self) -> list[IOSpec]:
        return self._outputs

    @property
    def backend_name(self) -> str:
        return self._backend

    def _plan_for(self, shape: tuple) -> BufferPlan:
        """Set the input shape on the context (dynamic engines) and plan every tensor's buffer."""
        name = self._inputs[0].name
        shapes = {name: shape}
        if self._inputs[0].is_dynamic:
            check_profile(name, shape, self.profiles[name])  # one-line fix instead of a TensorRT error
            for context in self.contexts:
                if not context.set_input_shape(name, shape):
                    raise EngineRunError(f"{self.path}: TensorRT refused input shape {shape} for {name!r}")
            for out in self._outputs:
                shapes[out.name] = tuple(int(d) for d in self.context.get_tensor_shape(out.name))
        return plan_buffers(self._inputs, self._outputs, shapes, self.profiles or None)

    def _enqueue(self, stream, buffers) -> None:
        """Executor callback: bind this buffer set's device pointers, then enqueue the engine on ``stream``."""
        context = self._slot_context.get(id(buffers))
        if context is None:  # first call on this buffer set: it gets the next free execution context
            context = self._slot_context[id(buffers)] = self.contexts[len(self._slot_context)]
        for spec in (*self._inputs, *self._outputs):
            context.set_tensor_address(spec.name, buffers.device_ptr(spec.name))
        if not context.execute_async_v3(stream.handle):
            raise EngineRunError(f"{self.path}: TensorRT could not enqueue the engine (see its log above)")

    def _ready(self, shape: tuple) -> None:
        shape = tuple(int(d) for d in shape)
        if shape == self._shape:
            return
        if self._executor is None:
            max_bytes = self._max_bytes()  # before planning `shape`: it sets the profile's max shape
            plan = self._plan_for(shape)
            self._executor = Executor(plan, self._enqueue, streams=self.streams, mapped=self.mapped,
                                      context=self.ctx, max_bytes=max_bytes)
        else:
            plan = self._plan_for(shape)
            self._executor.set_plan(plan)
        self._shape, self._plan = shape, plan

    def _max_bytes(self) -> dict[str, int] | None:
        """Buffer caps from the profile's largest shapes, so a dynamic engine never over-allocates."""
        if not self.profiles:
            return None
        name = self._inputs[0].name
        return self._plan_for(self.profiles[name][2]).bytes_by_name()

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for ``batch`` (copied out of the pinned buffers, so they survive the next call)."""
        dtype = np.dtype(self._inputs[0].dtype)
        if batch.dtype != dtype:
            batch = batch.astype(dtype)
        with self.ctx:
            self._ready(batch.shape)
            out = self._executor.run({self._inputs[0].name: batch}, copy=True,
                                     use_graph=self.use_graph and not self._inputs[0].is_dynamic)
        return [out[o.name] for o in self._outputs]

    def infer_many(self, batches):
        """Pipelined: yields the outputs of each batch in order; copies of batch k+1 overlap compute of batch k."""
        dtype = np.dtype(self._inputs[0].dtype)
        name = self._inputs[0].name
        batches = [np.ascontiguousarray(b, dtype) for b in batches]
        if not batches:
            return
        if len({b.shape for b in batches}) != 1:
            raise EngineRunError("infer_many needs batches of one shape; group them by shape first")
        with self.ctx:
            self._ready(batches[0].shape)
            for out in self._executor.run_pipelined(({name: b} for b in batches), copy=True):
                yield [out[o.name] for o in self._outputs]

    def infer_frames(self, frames: list[np.ndarray], hw: tuple[int, int] | None = None) -> tuple[list[np.ndarray],
                                                                                                 list]:
        """uint8 BGR frames → GPU letterbox written straight into the engine's input buffer → one Executor call.

        Returns (outputs, LetterboxInfo per frame). ``hw``: the size of a dynamic-H/W engine (default: the model's
        own). Falls back to the CPU letterbox into the pinned input buffer where the kernel cannot be compiled."""
        spec = self._inputs[0]
        hw = self.info.run_hw(hw)
        if self._letterbox is not None and tuple(self._letterbox.dst_hw) != tuple(hw):
            with self.ctx:
                self._letterbox.close()
            self._letterbox = None
        with self.ctx:
            self._ready((len(frames), 3, *hw))
            if self._letterbox is None:
                self._letterbox = make_letterboxer(hw, prefer_gpu=True, dtype=spec.dtype, context=self.ctx)
            ex = self._executor
            if self._letterbox.backend == "gpu":
                ptr = ex.device_ptr(spec.name)
                infos = [self._letterbox(f, ptr, i, stream=ex.stream) for i, f in enumerate(frames)]
                out = ex.run(None, copy=True, on_device={spec.name})
            else:
                host = ex.host(spec.name)
                infos = [self._letterbox(f, host, i) for i, f in enumerate(frames)]
                out = ex.run(None, copy=True)
        return [out[o.name] for o in self._outputs], infos

    def stage_times(self) -> dict[str, float] | None:
        return self._executor.last_times() if self._executor is not None else None

    def device_memory(self) -> int | None:
        activations = int(self.engine.device_memory_size_v2)
        return activations + (self._plan.total_bytes if self._plan is not None else 0)

    def close(self) -> None:
        if getattr(self, "ctx", None) is None:
            return
        if self._owner is not None:  # a clone: its own context and buffers go; the engine stays with its owner
            self.release_thread()
            with self.ctx:
                del self.context, self.contexts
            self.ctx = None
            return
        self.release_thread()
        with self.ctx:
            if self.runtime_cache is not None:  # what the JIT compiled on this GPU, for the next run
                self.runtime_cache.save()
            del self.context, self.contexts, self._slot_context, self.engine, self._runtime, self.runtime_cache
        self.ctx.close()
        self.ctx = None

