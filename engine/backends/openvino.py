"""OpenVINO on the CPU: the engine's INT8 backend where it is installed.

Measured on the 2-core dev box (README, "Speed"), on the same INT8 QDQ files onnxruntime
runs: OpenVINO ran both classifiers 1.4-1.8x faster at batch 32, while onnxruntime ran fp32
as fast or faster. So ``backend="auto"`` picks ``openvino`` only when the bundle's INT8
variant passes the engine's agreement rule (top-1 agreement with fp32 >= 0.98, recorded at
export) and onnxruntime otherwise; asking for ``openvino`` by name runs fp32 too.

Settings, each on purpose:

- ``INFERENCE_NUM_THREADS`` = physical cores, as ort-cpu (hyper-threads only contend);
- ``PERFORMANCE_HINT=LATENCY`` (the default of ``hint``): one stream, so a batch uses every
  thread (the THROUGHPUT hint splits the cores into streams meant for many parallel
  requests; slower here, and the bench keeps measuring both);
- ``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 units OpenVINO would otherwise compute
  fp32 graphs (and the non-quantised parts of INT8 ones) in bf16, a precision the bundle's
  agreement figures never measured.

Thread safety: a compiled model is shared; each calling thread gets its own infer request.
openvino is imported inside the constructor: importing this module costs nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Mapping

import numpy as np

from denarius.engine.backends.base import Backend, GraphFile, physical_cores
from denarius.engine.errors import BackendUnavailable, BundleError, ConfigError

__all__ = ["OpenVinoBackend", "openvino_available", "preload_openvino"]

logger = logging.getLogger(__name__)


def openvino_available() -> tuple[bool, str | None]:
    """(True, None) when openvino is installed, else (False, why). Finds it without importing it."""
    if importlib.util.find_spec("openvino") is None:
        return False, "openvino is not installed; pip install 'denarius[openvino]'"
    return True, None


def preload_openvino() -> None:
    """Import openvino now if it is installed.

    Its import runs a helper process (a fork); in a process whose gRPC threads already run,
    gRPC then logs a line about skipped fork handlers (plain text, even with
    ``--log-format json``). A server that may open this backend imports it before gRPC starts.
    """
    if openvino_available()[0]:
        import openvino  # noqa: F401


class OpenVinoBackend(Backend):
    """OpenVINO ``CPU`` device, classifier graphs (``infer``) only.

    Args:
        graphs: {name: GraphFile} of classifier ONNX files.
        precision: what the files hold ("fp32" or "int8": the QDQ file).
        max_batch: larger ``infer`` calls are split.
        threads: inference threads; default: physical cores.
        hint: OpenVINO's ``PERFORMANCE_HINT``, "LATENCY" (the engine's) or "THROUGHPUT".
    Raises:
        BackendUnavailable: openvino is not installed.
        BundleError: a file OpenVINO cannot read or compile (its message kept).
    """

    name = "openvino"

    def __init__(self, graphs: Mapping[str, GraphFile], *, precision: str = "fp32", max_batch: int = 64, threads: int | None = None,
                 hint: str = "LATENCY"):
        super().__init__(graphs, precision=precision, max_batch=max_batch)
        if hint not in ("LATENCY", "THROUGHPUT"):
            raise ConfigError(f"hint must be 'LATENCY' or 'THROUGHPUT', got {hint!r}")
        try:
            import openvino as ov
        except ImportError as error:
            raise BackendUnavailable(f"openvino cannot be imported ({error}); pip install 'denarius[openvino]'") from None

        self.threads = int(threads or physical_cores())
        self.hint = hint
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32"}
        core = ov.Core()
        self._compiled, self._shapes = {}, {}
        for name, spec in self._files.items():
            try:
                model = core.read_model(str(spec.path))
                compiled = core.compile_model(model, "CPU", config)
            except Exception as error:  # noqa: BLE001 - openvino raises its own untyped errors
                raise BundleError(f"openvino cannot load {spec.path}: {error}") from None
            shape = compiled.input(0).get_partial_shape()
            self._shapes[name] = tuple(int(d.get_length()) for d in list(shape)[1:])
            self._compiled[name] = compiled
        self._local = threading.local()
        logger.debug("openvino: compiled %s (%s, %d threads)", list(self._compiled), precision, self.threads)

    def input_shape(self, graph: str) -> tuple[int, ...]:
        return self._shapes[graph]

    def _request(self, graph: str):
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        if graph not in requests:
            requests[graph] = self._compiled[graph].create_infer_request()
        return requests[graph]

    def _infer(self, graph: str, inputs: np.ndarray) -> np.ndarray:
        request = self._request(graph)
        request.infer({0: inputs})
        # The output tensor is the request's own buffer, rewritten by its next call: copy it.
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _close(self) -> None:
        self._compiled.clear()
