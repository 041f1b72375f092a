"""The landmark sections of `denarius bench`: cost per image of each method in process, and
Landmarks throughput over gRPC with searches alone or sharing optimiser runs.

Both take ``(bundle, config, pairs)`` like every section of :mod:`denarius.apps.bench.suite`.
"""

from __future__ import annotations

import concurrent.futures as futures
import time

import numpy as np

from denarius.apps.bench.config import BenchConfig
from denarius.engine.bundle import Bundle

__all__ = ["AT_CAP_IMAGES", "bench_landmarks", "bench_grpc_landmarks"]

AT_CAP_IMAGES = (1, 2, 8)  # images per optimiser run for the landmarks' worst-case timing


def bench_landmarks(bundle: Bundle, config: BenchConfig, pairs) -> dict:
    """Cost per image of each landmark method on reverse crops, 11x11 windows, stride 3.

    Occlusion and saliency cost the same per image however many images a call holds
    (occlusion batches 64 occluded copies of one image). The optimiser's images share each
    forward/backward pass, so its worst case (held to the 100-iteration cap) is also timed
    with 1, 2 and 8 images per run: a run of one image reads the classifier's weights
    twice per iteration for one image, a run of eight for eight.
    """
    from denarius.engine.landmarks.service import LandmarkService

    images = 1 if config.quick else 2
    cap_images = (1,) if config.quick else AT_CAP_IMAGES
    cap_images = tuple(n for n in cap_images if n <= len(pairs))
    count = max(images, *cap_images)
    with LandmarkService.open(bundle, backend="ort-cpu", models=("ric",)) as service:
        crops = np.stack([service.crop(r, side="reverse") for _, r in pairs[:count]])
        return _bench_methods(service, crops, images=images, cap_images=cap_images)


def _bench_methods(service, crops: np.ndarray, *, images: int, cap_images: tuple[int, ...]) -> dict:
    """The timings of :func:`bench_landmarks` on (N, S, S, 3) uint8 reverse crops."""
    from denarius.engine.landmarks import LandmarkConfig, OptimizerConfig

    model = service.model("ric")  # its forward-equivalent counter measures the cost
    spec = model.spec
    result = {"images": images, "input_size": spec.crop, "window": 11, "stride": 3, "methods": {}, "at_cap_by_images_per_run": {}}
    # A weak model is vacuous for any epsilon (the blurred image keeps its tiny p(c)) and
    # its default run stops early, so two more runs explain, for each image, the class the
    # detail supports most (largest p(c | image) - p(c | blurred image)) with epsilon half
    # that gap, where the constraint binds: "optimized_binding" with default settings, and
    # "optimized_at_cap" held to the 100-iteration cap (patience = cap), the worst case.
    reference = service.reference(crops, "blur")
    gap = service.probabilities(crops, model="ric") - service.probabilities(reference, model="ric")
    binding_targets = gap.argmax(axis=1)
    binding_epsilon = float(np.clip(gap[:images].max(axis=1).min() / 2, 1e-4, 1.0))
    windows = {"window": 11, "stride": 3}
    at_cap = LandmarkConfig(method="optimized", epsilon=binding_epsilon, optimizer=OptimizerConfig(patience=100), **windows)
    variants = {
        "optimized": (LandmarkConfig(method="optimized", **windows), None),
        "optimized_binding": (LandmarkConfig(method="optimized", epsilon=binding_epsilon, **windows), binding_targets[:images]),
        "occlusion": (LandmarkConfig(method="occlusion", **windows), None),
        "saliency": (LandmarkConfig(method="saliency", **windows), None),
    }

    def timed(landmark_config, n: int, targets) -> dict:
        before = model.forward_equivalents
        start = time.perf_counter()
        maps = service.compute(crops[:n], model="ric", config=landmark_config, targets=targets)
        seconds = time.perf_counter() - start
        optimized = landmark_config.method == "optimized"
        return {
            "epsilon": landmark_config.epsilon if optimized else None,
            "seconds_per_image": round(seconds / n, 4),
            "forward_equivalents_per_image": round((model.forward_equivalents - before) / n, 1),
            "iterations": [m.iterations for m in maps] if optimized else None,
        }

    for method, (landmark_config, targets) in variants.items():
        result["methods"][method] = timed(landmark_config, images, targets)
    # "optimized_at_cap" is the cap run with `images` per run: timed once, listed in both places.
    for n in sorted({*cap_images, images}):
        run = timed(at_cap, n, binding_targets[:n])
        if n in cap_images:
            result["at_cap_by_images_per_run"][str(n)] = run
        if n == images:
            result["methods"]["optimized_at_cap"] = run
    return result


def bench_grpc_landmarks(bundle: Bundle, config: BenchConfig, pairs, *, callers: int = 4) -> dict:
    """Optimised Landmarks calls from ``callers`` clients at once, default settings, against
    a server whose one landmark worker runs each search alone (``landmark_batch=1``) and
    one whose queued searches share optimiser runs (``landmark_batch=8``)."""
    from denarius.serving.client import CoinClient
    from denarius.serving.server import BackgroundServer, ServerConfig

    searches = callers * (1 if config.quick else 3)
    result = {"callers": callers, "searches": searches}
    for label, batch in (("alone", 1), ("shared", 8)):
        server_config = ServerConfig(bundle=bundle.path, port=0, metrics_port=None, backend="ort-cpu",
                                     landmark_workers=1, landmark_queue=searches, landmark_batch=batch)
        with BackgroundServer(server_config) as server, CoinClient(f"127.0.0.1:{server.port}") as client:
            client.landmarks(pairs[0][1], side="reverse", method="saliency", timeout=600)  # open the models

            def one(i, client=client):
                return client.landmarks(pairs[i % len(pairs)][1], side="reverse", timeout=600)

            start = time.perf_counter()
            with futures.ThreadPoolExecutor(callers) as pool:
                answers = list(pool.map(one, range(searches)))
            elapsed = time.perf_counter() - start
        result[label] = {"landmark_batch": batch, "seconds": round(elapsed, 3), "searches_per_s": round(searches / elapsed, 3),
                         "iterations": [a.iterations for a in answers]}
    return result
