"""Batched hierarchical identification of coin pairs.

    from denarius.engine import Engine, CoinPair

    with Engine("bundle/") as engine:                       # backend="auto", default precision
        [result] = engine.identify([CoinPair(obverse=open("o.jpg", "rb").read(), reverse="r.jpg")])
        best = result.top                                    # raises result.error if the coin failed
        print(best.ric, best.emperor, best.score, best.p_ric, best.p_emperor)

For every coin the two classifiers give p(e | obverse) and p(r | reverse) (softmax computed in
float64 from the logits); every RIC leaf r is scored by ``Hierarchy.joint_scores``::

    score(r) = p(parent(r) | obverse) * p(r | reverse)

and the top-k leaves are returned. With only the obverse the candidates are emperors ranked
by p(e | obverse); with only the reverse they are RIC leaves ranked by p(r | reverse).

Per-coin failures: a corrupt or unusable image fails only its own coin. By default
(``errors="return"``) its ``Identification`` has ``error`` set (an ``InputError`` naming the
side) and no candidates, and ``.top`` re-raises it; ``errors="raise"`` raises the first
failure (lowest index) instead, after the batch ran.

Results do not depend on the batch size or on the order of the coins in a request (each
image is preprocessed and inferred independently; only floating-point rounding of the
backend's batched kernels differs, well within 1e-5 on the scores).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import cast

import cv2
import numpy as np

from denarius.engine.backends import open_backend
from denarius.engine.batcher import Batcher, StageTimes
from denarius.engine.bundle import SIDES, Bundle, load_bundle
from denarius.engine.errors import BundleError, ConfigError, DenariusError, InputError
from denarius.engine.lookahead import lookahead
from denarius.engine.scoring import Candidate, CoinPair, Identification, Scorer, batch_rows, check_top_k, coerce_pair

# The result types live in denarius.engine.scoring; they are named here too because they are
# the Engine's answer (``from denarius.engine.engine import CoinPair`` keeps working).
__all__ = ["CoinPair", "Candidate", "Identification", "Engine"]

logger = logging.getLogger(__name__)


class _BufferPool:
    """Reusable (max_batch, 3, S, S) float32 batch buffers: fresh ones page-fault ~20 MB each."""

    def __init__(self, shape: tuple[int, ...]):
        self._shape, self._lock = shape, threading.Lock()
        self._free: list[np.ndarray] = []

    def acquire(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return np.empty(self._shape, np.float32)

    def release(self, buffer: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < 8:
                self._free.append(buffer)


class Engine:
    """Identifies coins with a bundle's two classifiers and its hierarchy.

    Args:
        bundle: a loaded ``Bundle`` or the path of a bundle folder.
        backend: "auto" (tensorrt > ort-cuda > openvino for INT8 bundles > ort-cpu), "ort-cpu",
            "openvino", "ort-cuda", "tensorrt".
        precision: None for the backend's default (ort-cpu: int8 when the bundle's INT8
            variant agrees with fp32 on >= 98% of top-1s, else fp32), or "fp32"/"fp16"/"int8".
        max_batch: coins per inference batch (``identify`` chunks; the batcher's cap).
        max_wait_ms: how long the batcher holds a partial batch for more requests.
        eager_dispatch: the batcher sends a partial batch at once when no other request is
            being preprocessed (see ``denarius.engine.batcher.Batcher``); False always waits.
        queue_size: requests the batcher admits before rejecting with ``Overloaded``.
        preprocess_workers: decode/preprocess threads (OpenCV releases the GIL).
        threads: ort-cpu intra-op threads (default: physical cores).
        opencv_threads: OpenCV's own worker threads, a process-wide setting applied here;
            1 (default) because the preprocessing threads already run images in parallel and
            OpenCV's inner parallel loops on top cost ~35% more CPU per image (8.5 vs 13.3 ms
            for a 640 px JPEG, measured on the 2-core dev box); None leaves OpenCV alone.
    Raises:
        BundleError, BackendUnavailable, ConfigError: see ``load_bundle`` / ``open_backend``.
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike,
        *,
        backend: str = "auto",
        precision: str | None = None,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        eager_dispatch: bool = True,
        queue_size: int = 256,
        preprocess_workers: int = 2,
        threads: int | None = None,
        opencv_threads: int | None = 1,
    ):
        if max_batch < 1 or queue_size < 1 or preprocess_workers < 1 or max_wait_ms < 0:
            raise ConfigError(
                f"need max_batch >= 1, queue_size >= 1, preprocess_workers >= 1, max_wait_ms >= 0; got "
                f"{max_batch}, {queue_size}, {preprocess_workers}, {max_wait_ms}"
            )
        if opencv_threads is not None:
            cv2.setNumThreads(int(opencv_threads))
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.spec = self.bundle.preprocess
        sizes = {info.input_size for info in self.bundle.models.values()}
        if sizes != {self.spec.crop}:
            raise BundleError(f"{self.bundle.path}: model input sizes {sorted(sizes)} differ from the preprocessing crop {self.spec.crop}")
        self.max_batch, self.max_wait_ms, self.queue_size = int(max_batch), float(max_wait_ms), int(queue_size)
        self.eager_dispatch = bool(eager_dispatch)
        self.backend = open_backend(self.bundle, backend, precision, max_batch=max(64, self.max_batch), threads=threads)
        self.scorer = Scorer(self.bundle, self.backend)
        self._pool = ThreadPoolExecutor(preprocess_workers, thread_name_prefix="denarius-preprocess")
        self._buffers = _BufferPool((self.max_batch, 3, self.spec.crop, self.spec.crop))
        self._batcher = None
        self._lock = threading.Lock()
        self._closed = False
        logger.info(
            "engine: model %s, backend %s, precision %s, max batch %d",
            self.version, self.backend.name, self.backend.precision, self.max_batch,
        )

    # ------------------------------------------------------------------ properties

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def precision(self) -> str:
        return self.backend.precision

    def info(self) -> dict:
        """Plain description for serving (GetModelInfo) and logs."""
        return {
            "model_version": self.version,
            "created": self.bundle.created,
            "backend": self.backend.name,
            "precision": self.backend.precision,
            "input_size": self.spec.crop,
            "emperors": list(self.bundle.hierarchy.emperors),
            "rics": list(self.bundle.hierarchy.rics),
            "preprocess": self.spec.to_dict(),
            "metrics": dict(self.bundle.metrics),
            "max_batch": self.max_batch,
            "calibrated": self.bundle.calibration.calibrated,
            "temperatures": {m: self.bundle.calibration.temperature(m) for m in ("emperor", "ric")},
            "open_set": None if self.bundle.open_set is None else {
                k: v for k, v in self.bundle.open_set.to_dict().items() if k != "report"},
        }

    # ------------------------------------------------------------------ synchronous API

    def identify(self, pairs, *, top_k: int = 5, errors: str = "return") -> list[Identification]:
        """Identify many coins, batched; results in the order of ``pairs``.

        Args:
            pairs: iterable of ``CoinPair`` (or ``(obverse, reverse)`` tuples).
            top_k: candidates per coin (>= 1; fewer when the ranking has fewer classes).
            errors: "return" (a failed coin gets ``Identification.error``) or "raise"
                (raise the first failed coin's InputError, its message naming the index).
        Returns:
            one ``Identification`` per pair.
        """
        self._check_open()
        check_top_k(top_k)
        if errors not in ("return", "raise"):
            raise ConfigError(f"errors must be 'return' or 'raise', got {errors!r}")
        pairs = list(pairs)
        results: list[Identification | None] = [None] * len(pairs)
        # Preprocessing of the next two chunks overlaps inference of the current one.
        starts = range(0, len(pairs), self.max_batch)
        for _, chunk in lookahead(starts, start=lambda start: self._launch(pairs, start, results), depth=2):
            try:
                wait(chunk["futures"])
                self._finish(chunk, results, top_k)
            finally:
                if all(f.done() for f in chunk["futures"]):  # never recycle a buffer still being written
                    for buffer in chunk["buffers"]:
                        self._buffers.release(buffer)
        done = cast("list[Identification]", results)  # _finish filled every slot
        if errors == "raise":
            for index, result in enumerate(done):
                if result.error is not None:
                    raise InputError(f"coin {index}: {result.error.reason}", side=result.error.side)
        return done

    # ------------------------------------------------------------------ batched / concurrent API

    @property
    def batcher(self):
        """The dynamic batcher (created on first use with this engine's settings)."""
        with self._lock:
            self._check_open()
            if self._batcher is None:
                self._batcher = Batcher(
                    self.scorer, self._pool, max_batch=self.max_batch, max_wait_ms=self.max_wait_ms,
                    queue_size=self.queue_size, eager=self.eager_dispatch,
                )
            return self._batcher

    @property
    def queue_depth(self) -> int:
        """Requests admitted by the batcher and not yet in a batch (0 before its first use)."""
        batcher = self._batcher
        return 0 if batcher is None else batcher.queue_depth

    def submit(self, pair, *, top_k: int = 5, deadline: float | None = None, timeout: float | None = None,
               on_stages: Callable[[StageTimes], None] | None = None) -> Future:
        """Queue one coin on the dynamic batcher; see ``Batcher.submit`` (``on_stages`` too)."""
        return self.batcher.submit(pair, top_k=top_k, deadline=deadline, timeout=timeout, on_stages=on_stages)

    async def identify_async(self, pair, *, top_k: int = 5, deadline: float | None = None, timeout: float | None = None) -> Identification:
        """``submit`` for asyncio callers: awaits the batcher's future."""
        return await asyncio.wrap_future(self.submit(pair, top_k=top_k, deadline=deadline, timeout=timeout))

    # ------------------------------------------------------------------ lifecycle

    def close(self, *, drain: bool = True) -> None:
        """Stop the batcher (finishing queued work unless ``drain=False``), the
        preprocessing threads and the backend. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            batcher = self._batcher
        if batcher is not None:
            batcher.close(drain=drain)
        self._pool.shutdown(wait=True)
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DenariusError("the engine is closed")

    # ------------------------------------------------------------------ internals

    def _launch(self, pairs: list, start: int, results: list) -> dict:
        """Coerce one chunk's pairs and queue their preprocessing into pooled buffers."""
        indices = range(start, min(start + self.max_batch, len(pairs)))
        obverse, reverse = self._buffers.acquire(), self._buffers.acquire()
        buffers = {"obverse": obverse, "reverse": reverse}
        coins = []  # (index, pair) of the coins that coerce
        for index in indices:
            try:
                coins.append((index, coerce_pair(pairs[index], index=index)))
            except InputError as error:
                results[index] = self.scorer.failed(getattr(pairs[index], "coin_id", None), error)
        rows, counts = batch_rows([side for side in SIDES if getattr(pair, side) is not None] for _, pair in coins)
        futures = [
            (index, side, self._pool.submit(self.scorer.preprocess_side, getattr(pair, side), side, buffers[side][row]))
            for (index, pair), coin_rows in zip(coins, rows, strict=True)
            for side, row in zip(SIDES, coin_rows, strict=True)
            if row is not None
        ]
        items = [(index, pair.coin_id) for index, pair in coins]
        return {"rows": rows, "items": items, "futures": [f for _, _, f in futures], "tasks": futures,
                "buffers": (obverse, reverse), "counts": counts}

    def _finish(self, chunk: dict, results: list, top_k: int) -> None:
        obverse, reverse = chunk["buffers"]
        failed: dict[int, InputError] = {}
        for index, _side, future in chunk["tasks"]:
            error = future.exception()
            if error is None:
                continue
            if not isinstance(error, InputError):
                raise error
            failed.setdefault(index, error)
        for (index, _), (o, r) in zip(chunk["items"], chunk["rows"], strict=True):
            if index in failed:  # keep the batch computable; the row's output is ignored
                if o is not None:
                    obverse[o] = 0.0
                if r is not None:
                    reverse[r] = 0.0
        if not chunk["items"]:
            return
        no, nr = chunk["counts"]["obverse"], chunk["counts"]["reverse"]
        scored = self.scorer.score_batch(
            obverse[:no] if no else None,
            reverse[:nr] if nr else None,
            chunk["rows"],
            [coin_id for _, coin_id in chunk["items"]],
            [top_k] * len(chunk["items"]),
        )
        for (index, coin_id), result in zip(chunk["items"], scored, strict=True):
            results[index] = self.scorer.failed(coin_id, failed[index]) if index in failed else result

