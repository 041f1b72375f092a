"""TensorRT: deserialised plans run with pycuda-managed memory and streams.

Imported lazily by the registry only (``import engine`` never imports tensorrt or pycuda).

A plan is specific to a GPU architecture and a TensorRT version, so the bundle stores plans
keyed ``sm{major}{minor}-trt{version}`` and this backend refuses to open a plan built for
another key: it says which keys the bundle has and which this machine needs.

Per graph there is one ``ICudaEngine``; per *thread* that calls ``infer`` there is one
execution context with its own CUDA stream, its own device buffers sized from the
optimisation profile's max shape, and pinned host staging buffers, so threads never share
mutable state. A call sets the input shape, binds the tensor addresses and runs
``execute_async_v3`` on the thread's stream between two async copies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import numpy as np

from denarius.engine.backends.base import Backend, GraphFile
from denarius.engine.errors import BackendUnavailable, BundleError, InputError

__all__ = ["TensorRTBackend", "tensorrt_available", "plan_key"]

logger = logging.getLogger(__name__)


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason): tensorrt and pycuda importable and a CUDA device present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, ("the tensorrt Python package is not installed (TensorRT 10 for CUDA 12: "
                       "pip install 'denarius[gpu,tensorrt]' --extra-index-url https://pypi.nvidia.com)")
    try:
        import pycuda.driver as cuda
    except ImportError:
        return False, "pycuda is not installed (pip install 'denarius[gpu]')"
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return False, "no CUDA device is visible"
    except Exception as error:  # noqa: BLE001 - pycuda raises its own driver errors
        return False, f"the CUDA driver cannot start: {error}"
    return True, ""


def plan_key(device_id: int = 0) -> str:
    """Key of the plans this machine can run: ``sm{major}{minor}-trt{tensorrt version}``."""
    import pycuda.driver as cuda
    import tensorrt as trt

    cuda.init()
    major, minor = cuda.Device(device_id).compute_capability()
    return f"sm{major}{minor}-trt{trt.__version__}"


class _ThreadState:
    """A thread's execution context, stream and buffers for one graph."""

    def __init__(self, engine, io: dict, cuda):
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailable("TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = cuda.Stream()
        self.host_in = cuda.pagelocked_empty(io["max_input"], io["in_dtype"])
        self.host_out = cuda.pagelocked_empty(io["max_output"], io["out_dtype"])
        self.dev_in = cuda.mem_alloc(self.host_in.nbytes)
        self.dev_out = cuda.mem_alloc(self.host_out.nbytes)
        self.context.set_tensor_address(io["input"], int(self.dev_in))
        self.context.set_tensor_address(io["output"], int(self.dev_out))

    def free(self) -> None:
        self.dev_in.free()
        self.dev_out.free()
        self.context = None


class TensorRTBackend(Backend):
    """Runs TensorRT plans (one per classifier graph).

    Args:
        graphs: {name: GraphFile(path=plan file)}.
        precision: label of the plans ("fp32", "fp16" or "int8", as built by export).
        max_batch: clipped to the plans' profile max batch.
        device_id: CUDA device ordinal.
    Raises:
        BackendUnavailable: tensorrt/pycuda missing, no device, or a plan that this GPU /
            TensorRT version cannot deserialise.
    """

    name = "tensorrt"

    @property
    def on_gpu(self) -> bool:
        return True

    def __init__(self, graphs: Mapping[str, GraphFile], *, precision: str = "fp16", max_batch: int = 64, device_id: int = 0):
        super().__init__(graphs, precision=precision, max_batch=max_batch)
        ok, reason = tensorrt_available()
        if not ok:
            raise BackendUnavailable(f"tensorrt backend unavailable: {reason}")
        import pycuda.driver as cuda
        import tensorrt as trt

        self._cuda, self._trt = cuda, trt
        self.device_id = int(device_id)
        self._device_context = cuda.Device(self.device_id).retain_primary_context()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engines, self._io = {}, {}
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._states_lock = threading.Lock()
        self._device_context.push()
        try:
            for graph, spec in self._files.items():
                self._engines[graph], self._io[graph] = self._load(graph, spec)
        finally:
            self._device_context.pop()
        self.max_batch = min([self.max_batch] + [io["max_batch"] for io in self._io.values()])
        logger.info("tensorrt %s: opened %s on cuda:%d, max batch %d", trt.__version__, list(self._engines), self.device_id, self.max_batch)

    def _load(self, graph: str, spec: GraphFile):
        trt = self._trt
        try:
            data = spec.path.read_bytes()
        except OSError as error:
            raise BundleError(f"cannot read TensorRT plan {spec.path}: {error}") from None
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendUnavailable(
                f"TensorRT {trt.__version__} cannot deserialise {spec.path}: the plan was built for another GPU "
                f"or TensorRT version (this machine needs plans keyed {plan_key(self.device_id)!r}); "
                "rebuild it on this machine with `denarius export --trt` or use backend='ort-cuda'"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if spec.input_name not in inputs or spec.output_name not in outputs:
            raise BundleError(
                f"{spec.path}: expected input {spec.input_name!r} and output {spec.output_name!r}; plan has {inputs} -> {outputs}")
        _, _, max_shape = engine.get_tensor_profile_shape(spec.input_name, 0)
        max_shape = tuple(int(d) for d in max_shape)
        classes = int(engine.get_tensor_shape(spec.output_name)[1])
        io = {
            "input": spec.input_name,
            "output": spec.output_name,
            "in_dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(spec.input_name))),
            "out_dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(spec.output_name))),
            "shape": max_shape[1:],
            "max_batch": max_shape[0],
            "max_input": max_shape,
            "max_output": (max_shape[0], classes),
        }
        return engine, io

    def input_shape(self, graph: str) -> tuple[int, ...]:
        self._check_graph(graph)
        return self._io[graph]["shape"]

    def _state(self, graph: str) -> _ThreadState:
        states = getattr(self._local, "states", None)
        if states is None:
            states = self._local.states = {}
        if graph not in states:
            state = _ThreadState(self._engines[graph], self._io[graph], self._cuda)
            states[graph] = state
            with self._states_lock:
                self._states.append(state)
        return states[graph]

    def _infer(self, graph: str, inputs: np.ndarray) -> np.ndarray:
        cuda, io = self._cuda, self._io[graph]
        n = inputs.shape[0]
        self._device_context.push()
        try:
            state = self._state(graph)
            if not state.context.set_input_shape(io["input"], (n, *io["shape"])):
                raise InputError(f"{graph}: batch {n} is outside the TensorRT plan's optimisation profile")
            host_in = state.host_in[:n]
            np.copyto(host_in, inputs, casting="same_kind")
            cuda.memcpy_htod_async(state.dev_in, host_in, state.stream)
            if not state.context.execute_async_v3(state.stream.handle):
                raise BackendUnavailable(f"TensorRT failed to run {graph} (see the TensorRT log above)")
            host_out = state.host_out[:n]
            cuda.memcpy_dtoh_async(host_out, state.dev_out, state.stream)
            state.stream.synchronize()
            return host_out.astype(np.float32)  # a copy: the pinned buffer is reused
        finally:
            self._device_context.pop()

    def _close(self) -> None:
        self._device_context.push()
        try:
            with self._states_lock:
                for state in self._states:
                    state.free()
                self._states.clear()
            self._engines.clear()
        finally:
            self._device_context.pop()
            self._device_context.detach()
