"""onnxruntime on the CPU: the fallback every machine has and every test uses.

Session options are set for throughput on a small machine that also decodes images:

- ``intra_op_num_threads`` = physical cores (hyper-threads only contend for the FMA units);
- sequential execution (AlexNet is a chain; the inter-op pool would only add threads);
- ``ORT_ENABLE_ALL`` graph optimisation (conv+relu fusion, QDQ folding for the INT8 variant);
- memory pattern + CPU arena on (the same shapes recur, so allocations are planned once);
- intra-op spinning OFF by default: spinning workers burn whole cores between runs, which
  starves the preprocessing threads that decode the next batch while this one runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from denarius.engine.backends.base import Backend, GraphFile, physical_cores
from denarius.engine.errors import BackendUnavailable, BundleError

__all__ = ["OrtCpuBackend", "cpu_session_options"]

logger = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


def cpu_session_options(*, threads: int | None = None, spin: bool = False):
    """The tuned ``onnxruntime.SessionOptions`` used by this backend (see module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or physical_cores())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = True
    options.enable_cpu_mem_arena = True
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3  # errors only; ORT's warnings are about fusions it skipped
    return options


class OrtCpuBackend(Backend):
    """onnxruntime ``CPUExecutionProvider``.

    Args:
        graphs: {name: GraphFile} to open, e.g. {"emperor": GraphFile(bundle.file("emperor"))}.
        precision: label of the variant the files hold ("fp32" or "int8"; "fp16" runs but is
            slow on CPUs).
        max_batch: larger ``infer`` calls are split (keeps the arena's peak bounded).
        threads: intra-op threads; default: physical cores.
        spin: let idle intra-op threads spin (lower latency when nothing else runs).
    """

    name = "ort-cpu"

    def __init__(
        self,
        graphs: Mapping[str, GraphFile],
        *,
        precision: str = "fp32",
        max_batch: int = 64,
        threads: int | None = None,
        spin: bool = False,
    ):
        super().__init__(graphs, precision=precision, max_batch=max_batch)
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover - onnxruntime is a core dependency
            raise BackendUnavailable(f"ort-cpu needs onnxruntime ({error}); pip install 'denarius[cpu]'") from None
        self.threads = int(threads or physical_cores())
        options = cpu_session_options(threads=self.threads, spin=spin)
        self._sessions = {}
        self._io = {}
        for graph, spec in self._files.items():
            try:
                session = ort.InferenceSession(str(spec.path), sess_options=options, providers=["CPUExecutionProvider"])
            except Exception as error:  # onnxruntime raises its own untyped errors
                raise BundleError(f"onnxruntime cannot load {spec.path}: {error}") from None
            self._sessions[graph] = session
            self._io[graph] = _describe(session, spec)
        logger.debug("ort-cpu: opened %s (%s, %d threads, spin=%s)", list(self._sessions), precision, self.threads, spin)

    def input_shape(self, graph: str) -> tuple[int, ...]:
        self._check_graph(graph)
        return self._io[graph]["shape"]

    def session(self, graph: str):
        """The underlying ``onnxruntime.InferenceSession`` (for benchmarks and tools)."""
        self._check_graph(graph)
        return self._sessions[graph]

    def _infer(self, graph: str, inputs: np.ndarray) -> np.ndarray:
        io = self._io[graph]
        if io["dtype"] != np.float32:  # an fp16-I/O variant
            inputs = inputs.astype(io["dtype"])
        (logits,) = self._sessions[graph].run([io["output"]], {io["input"]: inputs})
        return logits if logits.dtype == np.float32 else logits.astype(np.float32)

    def _run(self, graph: str, feeds: dict, outputs: list[str] | None) -> dict[str, np.ndarray]:
        session = self._sessions[graph]
        names = outputs or [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))

    def _close(self) -> None:
        self._sessions.clear()


def _describe(session, spec: GraphFile) -> dict:
    """Input/output names, input dtype and (3, S, S) shape of a classifier session."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if spec.input_name not in inputs:
        # Gradient graphs and other multi-input graphs are used through run(); infer() is
        # refused for them by the shape check below.
        first = next(iter(inputs.values()))
        return {"input": first.name, "output": next(iter(outputs)), "dtype": np.float32, "shape": tuple(first.shape[1:])}
    node = inputs[spec.input_name]
    if spec.output_name not in outputs:
        raise BundleError(f"{spec.path}: no output named {spec.output_name!r}; outputs: {sorted(outputs)}")
    shape = tuple(node.shape[1:])
    if len(shape) != 3 or not all(isinstance(d, int) for d in shape):
        raise BundleError(f"{spec.path}: input {node.name!r} has shape {node.shape}, expected (N, 3, S, S)")
    return {"input": node.name, "output": spec.output_name, "dtype": _ORT_TYPES.get(node.type, np.float32), "shape": shape}
