"""Choosing and opening a backend for a bundle.

``open_backend(bundle)`` picks the best backend this machine can run, tensorrt > ort-cuda >
openvino > ort-cpu, logs the choice and why the better ones were skipped, and opens the
bundle's two classifiers at the backend's default precision:

- ort-cpu: ``int8`` when the bundle has an INT8 variant of both models whose recorded top-1
  agreement with fp32 is >= 0.98 (``ModelInfo.agreement["int8"]["top1_agreement"]``), else fp32;
  ort-cpu runs the "int8-cpu" file (uint8 activations) for int8 when the bundle has it;
- openvino: the same rule and the same files; ``auto`` takes it only when that rule gives
  ``int8`` (OpenVINO ran INT8 faster than onnxruntime here, fp32 not: see
  ``engine/backends/openvino.py``) and never for gradient graphs;
- ort-cuda: ``fp16`` under the same rule for the fp16 variant, else fp32;
- tensorrt: whatever precision the plans were built with (read from the plan file name,
  ``*.fp16.plan`` / ``*.int8.plan`` / ``*.fp32.plan``; fp16 when it does not say).

Asking for a backend that cannot run here raises ``BackendUnavailable`` naming the reason
and the backends that are available.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from denarius.engine.backends.base import PRECISIONS, Backend, GraphFile
from denarius.engine.errors import BackendUnavailable, ConfigError

__all__ = ["BACKENDS", "AGREEMENT_THRESHOLD", "available_backends", "backend_status", "default_precision", "open_backend"]

logger = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "ort-cuda", "openvino", "ort-cpu")  # preference order of backend="auto"
AGREEMENT_THRESHOLD = 0.98
CLASSIFIERS = ("emperor", "ric")
_SUPPORTED = {"ort-cpu": ("fp32", "int8", "fp16"), "ort-cuda": ("fp32", "fp16"), "openvino": ("fp32", "int8"), "tensorrt": PRECISIONS}
_CPU_FILES = ("ort-cpu", "openvino")  # backends that run the "int8-cpu" file for int8
_CLASSIFIERS_ONLY = ("tensorrt", "openvino")  # backends that cannot run the gradient graphs


def backend_status(bundle=None, *, device_id: int = 0) -> dict[str, str | None]:
    """{backend: None if it can run here, else the reason it cannot}.

    With a bundle, tensorrt also needs plans for this GPU + TensorRT version.
    """
    status: dict[str, str | None] = {}
    from denarius.engine.backends.tensorrt import plan_key, tensorrt_available

    ok, reason = tensorrt_available()
    if ok and bundle is not None:
        key = plan_key(device_id)
        missing = [m for m in CLASSIFIERS if bundle.plan(m, key) is None]
        if missing:
            have = sorted({k for m in CLASSIFIERS for k in bundle.models[m].plans})
            ok, reason = False, (
                f"the bundle has no TensorRT plan for this machine ({key}) for {missing}; it has plans for "
                f"{have or 'no GPU'} (build one here with `denarius export --trt`)"
            )
    status["tensorrt"] = None if ok else reason
    from denarius.engine.backends.ort_cuda import cuda_provider_available

    status["ort-cuda"] = None if cuda_provider_available() else (
        "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu: pip install 'denarius[gpu]')"
    )
    from denarius.engine.backends.openvino import openvino_available

    status["openvino"] = openvino_available()[1]
    try:
        import onnxruntime  # noqa: F401

        status["ort-cpu"] = None
    except ImportError:
        status["ort-cpu"] = "onnxruntime is not installed (pip install 'denarius[cpu]')"
    return status


def available_backends(bundle=None) -> list[str]:
    """Backends that can run here (for ``bundle``, if given), best first."""
    return [name for name, reason in backend_status(bundle).items() if reason is None]


def _agreement(bundle, model: str, variant: str) -> float | None:
    record = bundle.models[model].agreement.get(variant)
    if isinstance(record, dict):
        record = record.get("top1_agreement")
    return None if record is None else float(record)


def file_variant(bundle, backend: str, model: str, precision: str) -> str:
    """The bundle file variant ``backend`` runs for ``precision``: on ort-cpu and openvino, int8
    means the "int8-cpu" file (uint8 activations, faster on x86) when the bundle has one."""
    if backend in _CPU_FILES and precision == "int8" and bundle.has(model, "int8-cpu"):
        return "int8-cpu"
    return precision


def default_precision(bundle, backend: str) -> str:
    """The precision ``backend`` uses for ``bundle`` when none is asked for (module docstring)."""
    if backend == "tensorrt":
        return _plan_precision(bundle, None)
    reduced = {"ort-cpu": "int8", "openvino": "int8", "ort-cuda": "fp16"}[backend]
    variants = {m: file_variant(bundle, backend, m, reduced) for m in CLASSIFIERS}
    agreements = [_agreement(bundle, m, variants[m]) if bundle.has(m, variants[m]) else None for m in CLASSIFIERS]
    if all(a is not None and a >= AGREEMENT_THRESHOLD for a in agreements):
        return reduced
    if any(bundle.has(m, reduced) for m in CLASSIFIERS):
        logger.info(
            "%s: not using the %s variant by default: top-1 agreement with fp32 %s is below %.2f or unrecorded",
            backend, reduced, agreements, AGREEMENT_THRESHOLD,
        )
    return "fp32"


def _plan_precision(bundle, key: str | None) -> str:
    for model in CLASSIFIERS:
        plans = bundle.models[model].plans
        for plan_name, relative in plans.items():
            if key is None or plan_name == key:
                for precision in PRECISIONS:
                    if f".{precision}." in str(relative):
                        return precision
    return "fp16"


def open_backend(
    bundle,
    backend: str = "auto",
    precision: str | None = None,
    *,
    graphs: Sequence[str] = CLASSIFIERS,
    max_batch: int = 64,
    threads: int | None = None,
    device_id: int = 0,
) -> Backend:
    """Open a backend on a bundle's graphs.

    Args:
        bundle: an ``denarius.engine.bundle.Bundle``.
        backend: "auto", "tensorrt", "ort-cuda", "openvino" or "ort-cpu".
        precision: None for the backend's default (module docstring), or "fp32"/"fp16"/"int8".
        graphs: which graphs to open: "emperor", "ric", and the gradient graphs
            "emperor.grad" / "ric.grad" (always fp32, onnxruntime only, use ``Backend.run``).
        threads: ort-cpu intra-op threads / openvino inference threads (default: physical cores).
        max_batch: the backend splits larger ``infer`` calls.
        device_id: CUDA device of the GPU backends.
    Raises:
        ConfigError: unknown backend/precision/graph name (valid choices listed).
        BackendUnavailable: the backend cannot run here (reason + available backends listed).
        BundleError: the bundle lacks the variant asked for.
    """
    choices = ("auto", *BACKENDS)
    if backend not in choices:
        raise ConfigError(f"unknown backend {backend!r}; choose from {list(choices)}")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {list(PRECISIONS)}")
    for graph in graphs:
        if graph.removesuffix(".grad") not in CLASSIFIERS:
            raise ConfigError(f"unknown graph {graph!r}; choose from emperor, ric, emperor.grad, ric.grad")
    gradients = any(g.endswith(".grad") for g in graphs)
    status = backend_status(bundle, device_id=device_id)
    available = [name for name, reason in status.items() if reason is None]

    if backend == "auto":
        chosen, skipped = None, {}
        for name in BACKENDS:
            reason = status[name]
            if reason is None and name in _CLASSIFIERS_ONLY and gradients:
                reason = "gradient graphs run on onnxruntime only"
            if reason is None and precision is not None and precision not in _SUPPORTED[name]:
                reason = f"it does not run {precision}"
            if reason is None and name == "tensorrt" and precision is not None and precision != _trt_precision(bundle, device_id):
                reason = f"its plans are not {precision}"
            if reason is None and name == "openvino" and (runs := precision or default_precision(bundle, name)) != "int8":
                reason = f"it is chosen for int8 only (onnxruntime ran fp32 as fast here); this bundle runs {runs}"
            if reason is None:
                chosen = name
                break
            logger.debug("backend auto: skipping %s: %s", name, reason)
            skipped[name] = reason
        if chosen is None:
            raise BackendUnavailable(f"no backend can run precision {precision!r} here; available: {available}; reasons: {status}")
        logger.info("backend auto: chose %s%s", chosen, f" (skipped: {skipped})" if skipped else "")
        backend = chosen
    elif status[backend] is not None:
        raise BackendUnavailable(f"backend {backend!r} is not available here: {status[backend]}. Available backends: {available}")

    requested = precision
    if precision is None:
        precision = default_precision(bundle, backend)
    elif precision not in _SUPPORTED[backend]:
        raise ConfigError(f"backend {backend} does not run {precision}; it runs {list(_SUPPORTED[backend])}")

    if backend in _CLASSIFIERS_ONLY and gradients:
        raise ConfigError("gradient graphs run on onnxruntime only; open them with backend='ort-cpu' or 'ort-cuda'")
    if backend == "tensorrt":
        from denarius.engine.backends.tensorrt import TensorRTBackend, plan_key

        built = _trt_precision(bundle, device_id)
        if requested is not None and requested != built:
            raise ConfigError(f"the bundle's TensorRT plans for this GPU are {built}, not {precision}; re-export or omit precision")
        key = plan_key(device_id)
        files = {g: _graph_file(bundle, g, bundle.plan(g, key)) for g in graphs}
        return TensorRTBackend(files, precision=built, max_batch=max_batch, device_id=device_id)

    files = {}
    for graph in graphs:
        model, _, grad = graph.partition(".")
        files[graph] = _graph_file(bundle, graph, bundle.file(model, "grad" if grad else file_variant(bundle, backend, model, precision)))
    if backend == "openvino":
        from denarius.engine.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(files, precision=precision, max_batch=max_batch, threads=threads)
    if backend == "ort-cuda":
        from denarius.engine.backends.ort_cuda import OrtCudaBackend

        return OrtCudaBackend(files, precision=precision, max_batch=max_batch, device_id=device_id)
    from denarius.engine.backends.ort_cpu import OrtCpuBackend

    return OrtCpuBackend(files, precision=precision, max_batch=max_batch, threads=threads)


def _trt_precision(bundle, device_id: int) -> str:
    from denarius.engine.backends.tensorrt import plan_key

    return _plan_precision(bundle, plan_key(device_id))


def _graph_file(bundle, graph: str, path) -> GraphFile:
    info = bundle.models[graph.partition(".")[0]]
    return GraphFile(path=path, input_name=info.input_name, output_name=info.output_name)
