"""The engine as the server sees it: open/warm up/close, requests in, protos out.

``Runtime`` owns one ``engine.Engine`` (and through it the dynamic batcher) and converts
between protos and engine objects, so ``serving/servicer.py`` stays a thin async layer and
the in-process CLI (``denarius identify --bundle``) produces the very same response protos.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from engine.errors import InputError
from serving.denarius.v1 import coins_pb2, tensor_pb2

__all__ = ["Runtime", "SERVER_VERSION"]

log = logging.getLogger(__name__)

SERVER_VERSION = "0.1.0"
SIDE_NAMES = {coins_pb2.OBVERSE: "obverse", coins_pb2.REVERSE: "reverse"}


class Runtime:
    """An opened engine plus the proto conversions. Thread-safe (the engine is)."""

    def __init__(self, engine, *, max_message_bytes: int = 0, stream_window: int = 0):
        self.engine = engine
        self.bundle = engine.bundle
        self.max_message_bytes = max_message_bytes
        self.stream_window = stream_window
        self._landmarks = None  # opened lazily: the gradient graphs cost memory

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
        max_pixels: int | None = None,
        warmup: bool = True,
        on_batch: Callable[[int], None] | None = None,
        max_message_bytes: int = 0,
        stream_window: int = 0,
    ) -> Runtime:
        """Load and verify the bundle, open the engine, optionally warm it up.

        Args:
            max_pixels: lowers/raises the bundle's per-image pixel limit (checked on the
                header before decoding); None keeps the bundle's.
            on_batch: called with the size of every batch the dynamic batcher runs.
        Raises:
            BundleError, BackendUnavailable, ConfigError: from the engine.
        """
        from engine.bundle import load_bundle
        from engine.engine import Engine

        loaded = load_bundle(bundle)
        if max_pixels is not None:
            loaded = dataclasses.replace(
                loaded, preprocess=dataclasses.replace(loaded.preprocess, max_pixels=int(max_pixels)))
        engine = Engine(loaded, backend=backend, precision=precision, max_batch=max_batch,
                        max_wait_ms=max_wait_ms, queue_size=max_queue)
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
        from engine.engine import CoinPair

        self.engine.identify([CoinPair(obverse=blank, reverse=blank)] * self.engine.max_batch, top_k=1)
        self.engine.submit(CoinPair(obverse=blank, reverse=blank), top_k=1).result(timeout=60)
        log.info("warm-up done in %.0f ms", 1000 * (time.perf_counter() - started))

    def queue_depth(self) -> int:
        batcher = self.engine._batcher  # not created yet = nothing queued
        return 0 if batcher is None else batcher.queue_depth

    def close(self) -> None:
        """Finish queued requests, then release the engine and the landmark models."""
        self.engine.close(drain=True)
        if self._landmarks is not None:
            self._landmarks.close()

    # -- Identify --------------------------------------------------------------------------
    def pair_from_request(self, request: coins_pb2.IdentifyRequest):
        """IdentifyRequest -> engine CoinPair (images stay encoded: the batcher decodes).

        Raises:
            InputError: neither side present.
        """
        from engine.engine import CoinPair

        has_obverse, has_reverse = request.HasField("obverse"), request.HasField("reverse")
        if not has_obverse and not has_reverse:
            raise InputError("the request has neither an obverse nor a reverse image; send at least one side")
        return CoinPair(
            obverse=request.obverse if has_obverse else None,
            reverse=request.reverse if has_reverse else None,
            coin_id=request.request_id or None,
        )

    def submit(self, pair, *, top_k: int, deadline: float | None) -> Future:
        """Queue on the dynamic batcher. Raises Overloaded when the queue is full."""
        return self.engine.submit(pair, top_k=top_k, deadline=deadline)

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
            request_id=request_id, model_version=result.model_version, mode=result.mode)
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
