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

from denarius.engine.backends.base import GraphFile, physical_cores
from denarius.engine.backends.ort_base import OrtBackend
from denarius.engine.errors import BackendUnavailable

__all__ = ["OrtCpuBackend", "cpu_session_options"]

logger = logging.getLogger(__name__)

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


class OrtCpuBackend(OrtBackend):
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
            import onnxruntime  # noqa: F401
        except ImportError as error:  # pragma: no cover - onnxruntime is a core dependency
            raise BackendUnavailable(f"ort-cpu needs onnxruntime ({error}); pip install 'denarius[cpu]'") from None
        self.threads = int(threads or physical_cores())
        self._open_sessions(options=cpu_session_options(threads=self.threads, spin=spin), providers=["CPUExecutionProvider"])
        logger.debug("ort-cpu: opened %s (%s, %d threads, spin=%s)", list(self._sessions), precision, self.threads, spin)

    def _infer(self, graph: str, inputs: np.ndarray) -> np.ndarray:
        io = self._classifiers[graph]
        if io.dtype != np.float32:  # an fp16-I/O variant
            inputs = inputs.astype(io.dtype)
        (logits,) = self._sessions[graph].run([io.output], {io.input: inputs})
        return logits if logits.dtype == np.float32 else logits.astype(np.float32)
