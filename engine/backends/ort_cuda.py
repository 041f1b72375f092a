"""onnxruntime with the CUDA execution provider, fed through IOBinding.

Without IOBinding every ``run`` allocates device memory for the input, copies, runs and
copies back through ORT's generic path. Here each (graph, batch size) gets a device-resident
input and output ``OrtValue`` once; a call copies the host batch into the input buffer with
``update_inplace`` (one host->device copy, no allocation), runs with the binding and reads
the (N, C) logits back. fp16 variants take float16 inputs, so the host batch is cast before
the copy (half the PCIe traffic).

Needs ``onnxruntime-gpu`` (``pip install 'denarius[gpu]'``) and a visible CUDA device.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from denarius.engine.backends.base import GraphFile
from denarius.engine.backends.ort_base import OrtBackend
from denarius.engine.backends.sessions import ORT_TYPES
from denarius.engine.errors import BackendUnavailable

__all__ = ["OrtCudaBackend", "cuda_provider_available"]

logger = logging.getLogger(__name__)

# Device buffers kept per graph: batch sizes beyond this many distinct values evict the
# least recently used pair (each pair is at most max_batch * 3 * S * S * 4 bytes).
_CACHED_SHAPES = 8


def _version(text: str) -> tuple[int, ...]:
    """"1.18.1" -> (1, 18); anything unparsable -> (0,)."""
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return (0,)


def cuda_provider_available() -> bool:
    """True when this onnxruntime build has the CUDA execution provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


class OrtCudaBackend(OrtBackend):
    """onnxruntime ``CUDAExecutionProvider`` with IOBinding to device buffers.

    Args:
        graphs: {name: GraphFile} of ONNX files (fp32 or fp16 variants).
        precision: "fp32" or "fp16" (label of the files given).
        max_batch: larger ``infer`` calls are split.
        device_id: CUDA device ordinal.
    Raises:
        BackendUnavailable: no CUDA provider in this onnxruntime, or the session fell back
            to the CPU (no device, driver/CUDA mismatch).
    """

    name = "ort-cuda"

    def __init__(self, graphs: Mapping[str, GraphFile], *, precision: str = "fp32", max_batch: int = 64, device_id: int = 0):
        super().__init__(graphs, precision=precision, max_batch=max_batch)
        if not cuda_provider_available():
            raise BackendUnavailable(
                "ort-cuda needs onnxruntime-gpu with the CUDA execution provider; this onnxruntime "
                "has none (pip install 'denarius[gpu]' instead of 'denarius[cpu]')"
            )
        import onnxruntime as ort

        self.device_id = int(device_id)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        cuda_options = {"device_id": self.device_id, "cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": True}
        if precision == "fp32" and _version(ort.__version__) >= (1, 18):
            # TF32 (on by default since onnxruntime 1.18, Ampere and later) rounds conv
            # inputs to 10 mantissa bits: fp32 here means fp32 (the gradient graphs are
            # checked against ort-cpu to 1e-4 relative).
            cuda_options["use_tf32"] = 0
        provider = ("CUDAExecutionProvider", cuda_options)
        self._open_sessions(options=options, providers=[provider, "CPUExecutionProvider"])
        self._buffers: dict[str, OrderedDict] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._classes: dict[str, int] = {}
        self._out_dtypes: dict[str, np.dtype] = {}
        for graph, session in self._sessions.items():
            if "CUDAExecutionProvider" not in session.get_providers():
                raise BackendUnavailable(
                    f"onnxruntime could not start the CUDA provider on device {self.device_id} "
                    f"(no GPU visible, or a CUDA/cuDNN version mismatch); session providers: {session.get_providers()}"
                )
            io = self._classifiers.get(graph)
            if io is not None:
                out = {o.name: o for o in session.get_outputs()}[io.output]
                self._out_dtypes[graph] = ORT_TYPES.get(out.type, np.dtype(np.float32))
                self._classes[graph] = int(out.shape[1])
            self._buffers[graph] = OrderedDict()
            # One binding + buffer pair per graph in flight at a time: calls from several
            # threads serialise per graph (the GPU runs one kernel stream per session anyway).
            self._locks[graph] = threading.Lock()
        logger.info("ort-cuda: opened %s on cuda:%d (%s)", list(self._sessions), self.device_id, precision)

    @property
    def on_gpu(self) -> bool:
        return True

    def _device_buffers(self, graph: str, batch: int):
        import onnxruntime as ort

        cache = self._buffers[graph]
        if batch in cache:
            cache.move_to_end(batch)
            return cache[batch]
        io = self._classifiers[graph]
        image = ort.OrtValue.ortvalue_from_shape_and_type((batch, *io.shape), io.dtype, "cuda", self.device_id)
        logits = ort.OrtValue.ortvalue_from_shape_and_type((batch, self._classes[graph]), self._out_dtypes[graph], "cuda", self.device_id)
        binding = self._sessions[graph].io_binding()
        binding.bind_ortvalue_input(io.input, image)
        binding.bind_ortvalue_output(io.output, logits)
        cache[batch] = (image, logits, binding)
        while len(cache) > _CACHED_SHAPES:
            cache.popitem(last=False)
        return cache[batch]

    def _infer(self, graph: str, inputs: np.ndarray) -> np.ndarray:
        io = self._classifiers[graph]
        host = inputs if io.dtype == np.float32 else inputs.astype(io.dtype)
        with self._locks[graph]:
            image, logits, binding = self._device_buffers(graph, host.shape[0])
            image.update_inplace(host)  # host -> device into the existing buffer
            self._sessions[graph].run_with_iobinding(binding)
            out = logits.numpy()  # device -> host, a fresh array
        return out.astype(np.float32, copy=False)

    def _close(self) -> None:
        for cache in self._buffers.values():
            cache.clear()
        super()._close()
