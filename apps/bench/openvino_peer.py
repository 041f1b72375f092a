"""The bench's ``openvino`` section: OpenVINO, the CPU peer a user would compare us with.

The same ONNX files the engine's ort-cpu backend runs (fp32, and the INT8 QDQ file), through
the engine's own ``openvino`` backend (compiled once per hint and precision), the same
preprocessed coins, both models per coin, at the engine's batch size and at batch 1. OpenVINO
runs with its own threading (``INFERENCE_NUM_THREADS`` = the cores onnxruntime gets), fp32
computed as fp32 (``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 units its default
would compute in bf16, a different precision) and both of its performance hints; the faster
hint is its figure. Beside it, onnxruntime as the engine opens it
(:func:`denarius.engine.backends.registry.open_backend`: the same session options).
``engine_vs_openvino`` divides what the engine runs by default at that precision (``auto``:
OpenVINO itself for an INT8 bundle when it is installed, else onnxruntime) by OpenVINO's
figure, so it is 1 where the engine already runs OpenVINO. INT8 top-1 agreement of
OpenVINO with onnxruntime's fp32 is reported: the engine's 98% rule for INT8 applies to any
INT8 runtime.

OpenVINO is optional (``pip install "denarius[openvino]"``); without it the section says so.
"""

from __future__ import annotations

import time

import numpy as np

from denarius.engine.backends.base import GraphFile, physical_cores
from denarius.engine.backends.registry import file_variant, open_backend
from denarius.engine.bundle import Bundle
from denarius.engine.preprocess import preprocess_batch

__all__ = ["bench_openvino"]

MODELS = ("emperor", "ric")


def _per_s(run, *, seconds: float, items: int) -> float:
    """Items per second of ``run()`` over about ``seconds`` (one warm-up call first)."""
    run()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * items / (time.perf_counter() - start)


def _openvino(bundle: Bundle, precision: str, hint: str, *, threads: int, max_batch: int):
    """The engine's OpenVINO backend on both classifiers, with performance hint ``hint``."""
    from denarius.engine.backends.openvino import OpenVinoBackend

    files = {m: GraphFile(path=bundle.file(m, file_variant(bundle, "openvino", m, precision)),
                          input_name=bundle.models[m].input_name, output_name=bundle.models[m].output_name) for m in MODELS}
    return OpenVinoBackend(files, precision=precision, max_batch=max_batch, threads=threads, hint=hint)


def bench_openvino(bundle: Bundle, config, pairs) -> dict:
    """Coins per second, model only, onnxruntime as the engine runs it vs OpenVINO, per precision and batch."""
    try:
        import openvino as ov
    except ImportError:
        return {"skipped": 'openvino is not installed (pip install -e ".[openvino]")'}
    spec = bundle.preprocess
    batch = max(config.batch_sizes)
    inputs = {
        "emperor": preprocess_batch([p[0] for p in pairs[:batch]], spec, side="obverse"),
        "ric": preprocess_batch([p[1] for p in pairs[:batch]], spec, side="reverse"),
    }
    reps = int(np.ceil(batch / len(inputs["emperor"])))
    inputs = {m: np.concatenate([x] * reps)[:batch] for m, x in inputs.items()}
    threads = physical_cores()
    with open_backend(bundle, "auto", max_batch=batch, threads=threads) as default:
        engine_default = {"backend": default.name, "precision": default.precision}
    result: dict = {"openvino": ov.__version__, "threads": threads, "batch": batch, "engine_default": engine_default, "precisions": {}}
    reference_top1 = None
    for precision in ("fp32", "int8"):
        if not all(bundle.has(m, precision) for m in MODELS):
            result["precisions"][precision] = {"skipped": f"the bundle has no {precision} variant"}
            continue
        backend = open_backend(bundle, "ort-cpu", precision, max_batch=batch, threads=threads)
        peers: dict = {}
        try:
            for hint in ("LATENCY", "THROUGHPUT"):
                peers[hint] = _openvino(bundle, precision, hint, threads=threads, max_batch=batch)
            figures: dict = {"files": {m: file_variant(bundle, "ort-cpu", m, precision) for m in MODELS}, "by_batch": {}}
            ort_top1 = np.concatenate([np.argmax(backend.infer(m, inputs[m]), 1) for m in MODELS])
            for size in sorted({1, batch}):
                ort = _per_s(lambda size=size, backend=backend: [backend.infer(m, inputs[m][:size]) for m in MODELS],
                             seconds=config.seconds, items=size)
                hints = {hint: round(_per_s(lambda size=size, peer=peer: [peer.infer(m, inputs[m][:size]) for m in MODELS],
                                            seconds=config.seconds, items=size), 2) for hint, peer in peers.items()}
                best = max(hints, key=lambda h: hints[h])
                engine_runs_openvino = engine_default == {"backend": "openvino", "precision": precision}
                engine = hints["LATENCY"] if engine_runs_openvino else ort  # the backend's own hint is LATENCY
                figures["by_batch"][str(size)] = {
                    "ort_engine_backend_coins_per_s": round(ort, 2), "openvino_coins_per_s": hints[best],
                    "openvino_hint": best, "openvino_by_hint": hints,
                    "engine_backend": "openvino" if engine_runs_openvino else "ort-cpu",
                    "engine_vs_openvino": round(engine / hints[best], 3)}
            ov_top1 = np.concatenate([np.argmax(peers["LATENCY"].infer(m, inputs[m]), 1) for m in MODELS])
            if precision == "fp32":
                reference_top1 = ort_top1
            figures["openvino_top1_agreement_with_ort_fp32"] = (
                None if reference_top1 is None else round(float(np.mean(ov_top1 == reference_top1)), 4))
            figures["openvino_top1_agreement_with_ort_same_precision"] = round(float(np.mean(ov_top1 == ort_top1)), 4)
            result["precisions"][precision] = figures
        finally:
            backend.close()
            for peer in peers.values():
                peer.close()
    return result
