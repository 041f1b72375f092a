"""The engine as the server sees it: open/warm up/close, requests in, protos out.

``Runtime`` owns one ``engine.Engine`` (and through it the dynamic batcher) and converts
between protos and engine objects, so ``serving/servicer.py`` stays a thin async layer and
the in-process CLI (``denarius identify --bundle``) produces the very same response protos.

A server swaps runtimes when it reloads its bundle (``serving/server.py``): every request
takes the current runtime once, at its start, with :meth:`Runtime.acquire` and gives it back
with :meth:`Runtime.release`; a swapped-out runtime is :meth:`Runtime.retire`-d, refuses new
requests and closes in a thread of its own once the last request holding it has finished.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from denarius.engine.errors import ConfigError, InputError
from denarius.engine.landmarks.result import coin_overlay
from denarius.engine.landmarks.service import LandmarkService
from denarius.serving.denarius.v1 import coins_pb2, tensor_pb2

__all__ = ["Runtime", "SERVER_VERSION"]

log = logging.getLogger(__name__)

SERVER_VERSION = "0.1.0"
SIDE_NAMES = {coins_pb2.OBVERSE: "obverse", coins_pb2.REVERSE: "reverse"}
METHOD_NAMES = {
    coins_pb2.METHOD_UNSPECIFIED: "optimized",
    coins_pb2.OPTIMIZED: "optimized",
    coins_pb2.OCCLUSION: "occlusion",
    coins_pb2.SALIENCY: "saliency",
}
REFERENCE_NAMES = {coins_pb2.REFERENCE_UNSPECIFIED: "blur", coins_pb2.REFERENCE_BLUR: "blur", coins_pb2.REFERENCE_BLACK: "black"}
METHOD_ENUMS = {"optimized": coins_pb2.OPTIMIZED, "occlusion": coins_pb2.OCCLUSION, "saliency": coins_pb2.SALIENCY}
MAX_ITERATIONS = 1000
MAX_TOP_REGIONS = 100
MAX_SUPERPIXELS = 2000


class Runtime:
    """An opened engine plus the proto conversions. Thread-safe (the engine is).

    ``landmark_batcher``: the :class:`~denarius.engine.landmarks.batcher.LandmarkBatcher` over
    :attr:`landmarks` that a server runs this runtime's searches on (None until one is set);
    :meth:`close` closes it first, letting its running searches finish.
    """

    def __init__(self, engine, *, max_message_bytes: int = 0, stream_window: int = 0):
        self.engine = engine
        self.bundle = engine.bundle
        self.max_message_bytes = max_message_bytes
        self.stream_window = stream_window
        # Shares the engine's backend; the gradient graphs open on first use (they cost memory).
        self.landmarks = LandmarkService.from_engine(engine)
        self.landmark_batcher: Any = None
        self._users = 0  # requests holding this runtime (acquire/release)
        self._retired = False  # refuses new requests: swapped out or closing
        self._users_changed = threading.Condition()
        self._close_lock = threading.Lock()  # held for the whole close: a second caller waits for it
        self._closed = False

    @classmethod
    def open(
        cls,
        bundle: str | Path,
        *,
        backend: str = "auto",
        precision: str | None = None,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        eager_dispatch: bool = True,
        preprocess_workers: int = 2,
        threads: int | None = None,
        max_pixels: int | None = None,
        warmup: bool = True,
        on_batch: Callable[[int], None] | None = None,
        max_message_bytes: int = 0,
        stream_window: int = 0,
        verify_key=None,
    ) -> Runtime:
        """Load and verify the bundle, open the engine, optionally warm it up.

        Args:
            max_pixels: lowers/raises the bundle's per-image pixel limit (checked on the
                header before decoding), up to ``MAX_PIXELS_CEILING``; None keeps the bundle's.
            on_batch: called with the size of every batch the dynamic batcher runs.
            verify_key: the Ed25519 public key (PEM path, PEM bytes or 32 raw bytes) the
                bundle's manifest must be signed with; None serves unsigned bundles.
        Raises:
            BundleError, BackendUnavailable, ConfigError: from the engine; BundleError also
                for a missing or wrong signature when ``verify_key`` is given.
        """
        from denarius.engine.bundle import load_bundle
        from denarius.engine.engine import Engine

        loaded = load_bundle(bundle, verify_key=verify_key)
        if loaded.signed_by:
            log.info("bundle %s: manifest signature verified (key %s)", bundle, loaded.signed_by)
        if max_pixels is not None:
            loaded = dataclasses.replace(
                loaded, preprocess=dataclasses.replace(loaded.preprocess, max_pixels=int(max_pixels)))
        engine = Engine(loaded, backend=backend, precision=precision, max_batch=max_batch,
                        max_wait_ms=max_wait_ms, queue_size=max_queue, eager_dispatch=eager_dispatch,
                        preprocess_workers=preprocess_workers, threads=threads)
        runtime = cls(engine, max_message_bytes=max_message_bytes, stream_window=stream_window)
        try:
            if warmup:
                runtime.warmup()
            if on_batch is not None:
                # Set after the warm-up so the metrics count client batches only.
                engine.batcher.on_batch = lambda size, _depth, _seconds: on_batch(size)
        except BaseException:
            engine.close()
            raise
        return runtime

    def warmup(self) -> None:
        """One full batch through both models and one request through the batcher."""
        started = time.perf_counter()
        size = self.engine.spec.crop
        blank = np.zeros((3, size, size), np.float32)
        from denarius.engine.engine import CoinPair

        self.engine.identify([CoinPair(obverse=blank, reverse=blank)] * self.engine.max_batch, top_k=1)
        self.engine.submit(CoinPair(obverse=blank, reverse=blank), top_k=1).result(timeout=60)
        log.info("warm-up done in %.0f ms", 1000 * (time.perf_counter() - started))

    def queue_depth(self) -> int:
        return self.engine.queue_depth

    def close(self) -> None:
        """Finish running landmark searches and queued requests, then release the landmark
        batcher, the landmark service and the engine. Idempotent; a second caller returns
        once the first has finished closing."""
        with self._users_changed:
            self._retired = True
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self.landmark_batcher is not None:
                self.landmark_batcher.close()
            self.landmarks.close()
            self.engine.close(drain=True)

    # -- lifetime across a swap ------------------------------------------------------------
    def acquire(self) -> bool:
        """Hold this runtime for one request; False once it is retired (take the current one instead)."""
        with self._users_changed:
            if self._retired:
                return False
            self._users += 1
            return True

    def release(self) -> None:
        """The request that acquired this runtime is done with it."""
        with self._users_changed:
            self._users -= 1
            if self._users <= 0:
                self._users_changed.notify_all()

    @property
    def users(self) -> int:
        """Requests holding this runtime now."""
        return self._users

    @property
    def retired(self) -> bool:
        return self._retired

    def retire(self, *, timeout: float, on_closed: Callable[[Runtime, float], None] | None = None) -> threading.Thread:
        """Refuse new requests, and close in a daemon thread once the last request holding this
        runtime has released it, or after ``timeout`` seconds whatever still holds it (logged).

        ``on_closed(runtime, seconds)`` is called on that thread after the close, with the
        seconds from the retirement. Returns the thread.
        """
        with self._users_changed:
            self._retired = True
        retired_at = time.monotonic()

        def close_when_idle() -> None:
            with self._users_changed:
                idle = self._users_changed.wait_for(lambda: self._users <= 0, timeout)
                left = self._users
            if not idle:
                log.warning("bundle %s (version %s): %d requests still hold it %.0f s after it was swapped out; "
                            "closing it under them", self.bundle.path, self.bundle.version, left, timeout)
            self.close()
            seconds = time.monotonic() - retired_at
            log.info("bundle %s (version %s) closed %.2f s after it was swapped out", self.bundle.path,
                     self.bundle.version, seconds)
            if on_closed is not None:
                on_closed(self, seconds)

        thread = threading.Thread(target=close_when_idle, name="denarius-retire", daemon=True)
        thread.start()
        return thread

    # -- Identify --------------------------------------------------------------------------
    def pair_from_request(self, request: coins_pb2.IdentifyRequest):
        """IdentifyRequest -> engine CoinPair (images stay encoded: the batcher decodes).

        Raises:
            InputError: neither side present.
        """
        from denarius.engine.engine import CoinPair

        has_obverse, has_reverse = request.HasField("obverse"), request.HasField("reverse")
        if not has_obverse and not has_reverse:
            raise InputError("the request has neither an obverse nor a reverse image; send at least one side")
        return CoinPair(
            obverse=request.obverse if has_obverse else None,
            reverse=request.reverse if has_reverse else None,
            coin_id=request.request_id or None,
        )

    def submit(self, pair, *, top_k: int, deadline: float | None, on_stages: Callable[[Any], None] | None = None) -> Future:
        """Queue on the dynamic batcher. Raises Overloaded when the queue is full.

        ``on_stages`` gets the request's :class:`denarius.engine.batcher.StageTimes` once it is identified."""
        return self.engine.submit(pair, top_k=top_k, deadline=deadline, on_stages=on_stages)

    def identify_now(self, pair, *, top_k: int):
        """In-process identification without the batcher (CLI). Raises the coin's InputError."""
        [result] = self.engine.identify([pair], top_k=top_k)
        if result.error is not None:
            raise result.error
        return result

    @staticmethod
    def identification_response(result, *, request_id: str, received: float) -> coins_pb2.IdentifyResponse:
        """engine Identification -> IdentifyResponse. Raises the coin's InputError if it failed."""
        if result.error is not None:
            raise result.error
        response = coins_pb2.IdentifyResponse(
            request_id=request_id, model_version=result.model_version, mode=result.mode, unknown=result.unknown)
        if result.open_set_score is not None:
            response.open_set_score = result.open_set_score
        for rank, candidate in enumerate(result.candidates, start=1):
            item = response.candidates.add(
                rank=rank, ric=candidate.ric or "", emperor=candidate.emperor, score=candidate.score,
                obverse_description=candidate.obverse_description,
                reverse_description=candidate.reverse_description,
            )
            if candidate.p_ric is not None:
                item.p_ric = candidate.p_ric
            if candidate.p_emperor is not None:
                item.p_emperor = candidate.p_emperor
        response.timing.total_ms = 1000.0 * (time.perf_counter() - received)
        return response

    # -- Landmarks -------------------------------------------------------------------------
    def landmark_job(self, request: coins_pb2.LandmarksRequest):
        """Validate a LandmarksRequest (cheaply, no decoding) and describe its work.

        Returns:
            an :class:`denarius.engine.landmarks.batcher.LandmarkJob` for a
            :class:`~denarius.engine.landmarks.batcher.LandmarkBatcher` on :attr:`landmarks`
            (the engine's :class:`~denarius.engine.landmarks.service.LandmarkService`). Its
            ``prepare`` has the service decode and crop the image; its result is
            ``(LandmarkMap, probabilities (C,) float64, classes, overlay PNG bytes)``.

        Raises:
            InputError: no side, an image whose header is unusable, an unknown target label.
            ConfigError: epsilon outside (0, 1], negative or non-finite sparsity, out-of-range settings.
        """
        from denarius.engine.imageio import read_header
        from denarius.engine.landmarks import LandmarkConfig, OptimizerConfig
        from denarius.engine.landmarks.batcher import LandmarkJob

        side = SIDE_NAMES.get(request.side)
        if side is None:
            raise InputError("side is required: OBVERSE or REVERSE")
        if request.method not in METHOD_NAMES:
            raise ConfigError(f"unknown method {request.method}; valid: OPTIMIZED, OCCLUSION, SALIENCY")
        if request.reference not in REFERENCE_NAMES:
            raise ConfigError(f"unknown reference {request.reference}; valid: BLUR, BLACK")
        try:
            read_header(request.image)  # empty, text, truncated header: answer before queueing
        except InputError as error:
            raise InputError(error.reason, side=side) from None
        service = self.landmarks
        model_name = service.model_name(side)
        classes = service.classes(model_name)
        target = service.check_target(model_name, request.target or None, side=side)
        optimizer: dict[str, Any] = {}
        if request.HasField("sparsity"):
            optimizer["lam"] = float(request.sparsity)
        if request.max_iterations:
            if request.max_iterations > MAX_ITERATIONS:
                raise ConfigError(f"max_iterations must be <= {MAX_ITERATIONS}, got {request.max_iterations}")
            optimizer["max_iterations"] = int(request.max_iterations)
        settings: dict[str, Any] = {
            "method": METHOD_NAMES[request.method],
            "reference": REFERENCE_NAMES[request.reference],
            "optimizer": OptimizerConfig(**optimizer),
        }
        if request.HasField("epsilon"):
            settings["epsilon"] = float(request.epsilon)
        if request.WhichOneof("regions") == "superpixels":
            count = request.superpixels.count or 100
            if count > MAX_SUPERPIXELS:
                raise ConfigError(f"superpixels count must be <= {MAX_SUPERPIXELS}, got {count}")
            settings["superpixels"] = count
        elif request.WhichOneof("regions") == "pixels":
            if settings["method"] == "occlusion":
                raise ConfigError("single-pixel regions need method OPTIMIZED or SALIENCY, not OCCLUSION")
            settings["pixels"] = True
        elif request.WhichOneof("regions") == "windows":
            crop = service.input_size(model_name)
            settings["window"] = request.windows.size or 11
            settings["stride"] = request.windows.stride or 3
            if settings["window"] > crop or settings["stride"] > crop:
                raise ConfigError(f"window size and stride must be <= the input size {crop}")
        if request.top_regions > MAX_TOP_REGIONS:
            raise ConfigError(f"top_regions must be <= {MAX_TOP_REGIONS}, got {request.top_regions}")
        settings["top"] = request.top_regions or 5
        config = LandmarkConfig(**settings)
        image, overlay = bytes(request.image), request.include_overlay

        view = {}  # the whole-coin picture the overlay is drawn on, made with the crop

        def prepare() -> np.ndarray:
            if not overlay:
                return service.crop(image, side=side)  # (S, S, 3) uint8
            crop, view["rgb"] = service.crop_and_view(image, side=side)
            return crop

        def finish(landmark_map, crop: np.ndarray) -> tuple:
            import cv2

            probabilities = service.probabilities(crop[None], model=model_name)[0]
            png = b""
            if overlay:
                rgb = coin_overlay(view["rgb"], landmark_map.heatmap, resize=service.canonical_size(model_name))
                ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                png = encoded.tobytes() if ok else b""
            return landmark_map, probabilities, classes, png

        return LandmarkJob(model=model_name, config=config, prepare=prepare, target=target, finish=finish)

    def landmarks_response(
        self, result: tuple, *, request_id: str, received: float, started: float
    ) -> coins_pb2.LandmarksResponse:
        """(LandmarkMap, probabilities, classes, png) -> LandmarksResponse."""
        landmark_map, probabilities, classes, png = result
        heatmap = np.asarray(landmark_map.heatmap, np.float32)
        response = coins_pb2.LandmarksResponse(
            request_id=request_id,
            heatmap=tensor_pb2.FloatArray(shape=list(heatmap.shape), data=heatmap.ravel().tolist()),
            target=landmark_map.label, probability=float(landmark_map.p_full),
            overlay_png=png, model_version=self.bundle.version,
            method=METHOD_ENUMS[landmark_map.method],
            epsilon=float(landmark_map.epsilon or 0.0), iterations=int(landmark_map.iterations),
            converged=bool(landmark_map.converged), region_kind=str(landmark_map.regions.get("kind", "")),
            forward_equivalents=float(landmark_map.forward_equivalents),
            reference=landmark_map.reference or "",
        )
        if landmark_map.p_masked is not None:
            response.masked_probability = float(landmark_map.p_masked)
        for region in landmark_map.top_regions:
            x0, y0, x1, y1 = region["box"]
            response.regions.add(x=x0, y=y0, width=x1 - x0, height=y1 - y0, score=float(region["score"]))
        for c in np.argsort(-probabilities, kind="stable")[:5]:
            response.probabilities.add(label=classes[c], probability=float(probabilities[c]))
        now = time.perf_counter()
        response.timing.total_ms = 1000.0 * (now - received)
        response.timing.queue_ms = 1000.0 * (started - received)
        response.timing.compute_ms = 1000.0 * (now - started)
        return response

    # -- GetModelInfo ----------------------------------------------------------------------
    def model_info(self) -> coins_pb2.ModelInfo:
        info = self.engine.info()
        hierarchy = self.bundle.hierarchy
        reply = coins_pb2.ModelInfo(
            version=info["model_version"], created=str(info["created"]),
            schema_version=int(self.bundle.schema_version),
            emperors=info["emperors"], rics=info["rics"],
            backend=info["backend"], precision=info["precision"], input_size=int(info["input_size"]),
            max_pixels=int(self.engine.spec.max_pixels), max_message_bytes=self.max_message_bytes,
            max_batch=int(info["max_batch"]), stream_window=self.stream_window, server_version=SERVER_VERSION,
        )
        for e, emperor in enumerate(hierarchy.emperors):
            rics = [ric for r, ric in enumerate(hierarchy.rics) if int(hierarchy.parent[r]) == e]
            reply.hierarchy.add(emperor=emperor, rics=rics)
        for key, value in _flat_numbers(info.get("metrics") or {}).items():
            reply.metrics[key] = value
        reply.calibrated = bool(info.get("calibrated"))
        reply.temperatures.update(info.get("temperatures") or {})
        if info.get("open_set"):
            reply.open_set_score = info["open_set"]["score"]
            reply.open_set_threshold = info["open_set"]["threshold"]
            reply.open_set_far = info["open_set"]["far"] or 0.0
        return reply


def _flat_numbers(data: dict, prefix: str = "") -> dict[str, float]:
    """{"cv": {"ric_top1": 0.8}} -> {"cv.ric_top1": 0.8}; non-numbers are left out."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
