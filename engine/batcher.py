"""Dynamic batching of single-coin requests, in the manner of Triton's dynamic batcher.

Callers on any number of threads (or asyncio tasks) submit one coin each and get a
``concurrent.futures.Future``::

    future = engine.submit(CoinPair(obverse=jpeg, reverse=jpeg2), timeout=0.5)
    result = future.result()                 # an Identification
    result = await engine.identify_async(pair)   # the asyncio form

Pipeline::

    submit ──> preprocessing pool (N threads: decode, background removal, normalise; the
                 │  two sides of a coin on two threads at once, so a lone request waits for
                 │  one side's preprocessing, not both)
                 │  drops requests whose deadline passed; a bad image fails its own future
                 v
               ready queue ──> inference thread: forms a batch of up to ``max_batch`` ready
                               requests, or fewer once the oldest has waited ``max_wait_ms``;
                               drops expired/cancelled ones; runs both models; resolves futures

Preprocessing of the next requests runs while the inference thread computes the current
batch. Admission is bounded: when ``queue_size`` requests are admitted but not yet batched,
``submit`` raises ``Overloaded`` at once instead of letting the queue (and latency) grow.

Shutdown: ``close(drain=True)`` stops admitting, finishes everything admitted and returns;
``close(drain=False)`` fails every request that has not started inference with
``BatcherClosed`` (the message says so) and returns after the running batch.

Counters for metrics: ``stats()`` returns a ``BatcherStats`` snapshot (batch-size histogram,
queue depth, totals per outcome), and ``on_batch(size, queue_depth, seconds)`` is called
after every batch. Per request, ``submit(..., on_stages=callback)`` is called with a
``StageTimes`` (queue wait, preprocessing, inference) just before its future gets its result.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from denarius.engine.bundle import SIDES
from denarius.engine.errors import BatcherClosed, DeadlineExceeded, InputError, Overloaded
from denarius.engine.scoring import CoinPair, Scorer, batch_rows, check_top_k, coerce_pair

__all__ = ["Batcher", "BatcherStats", "BatcherClosed", "StageTimes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot of the batcher's counters.

    Attributes:
        submitted: requests admitted by ``submit``.
        rejected: requests refused with ``Overloaded``: a full queue at ``submit``, or a decode
            memory budget that stayed full while they were preprocessed.
        completed: futures resolved with an Identification.
        failed: futures failed with an InputError (bad image) or a backend error.
        expired: futures failed with DeadlineExceeded (no inference was spent on them).
        cancelled: futures cancelled by their caller or by ``close(drain=False)``.
        batches: inference batches run.
        batch_sizes: {batch size: number of batches}.
        queue_depth: requests admitted and not yet in a batch (preprocessing + ready).
        max_queue_depth: the highest queue_depth seen.
        inference_seconds: total time spent in batch inference.
    """

    submitted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    batches: int = 0
    batch_sizes: dict = field(default_factory=dict)
    queue_depth: int = 0
    max_queue_depth: int = 0
    inference_seconds: float = 0.0


@dataclass(frozen=True)
class StageTimes:
    """Where one identified request's time went, in seconds.

    Attributes:
        queue_wait: waiting for a preprocessing thread, then (preprocessed) for a batch.
        preprocess: decoding, background removal and normalisation of its images.
        inference: the model run of the batch it was part of.
    """

    queue_wait: float
    preprocess: float
    inference: float


@dataclass
class _Request:
    pair: object  # what submit() was given; _preprocess replaces it with its CoinPair
    top_k: int
    deadline: float | None
    future: Future
    images: dict = field(default_factory=dict)  # side -> (3, S, S) float32
    sides_left: int = 0  # sides still being preprocessed
    error: BaseException | None = None  # the first side's failure, and its outcome name
    outcome: str = ""
    on_stages: Callable[[StageTimes], None] | None = None
    submitted_at: float = 0.0  # time.monotonic() stamps
    preprocess_at: float = 0.0
    ready_at: float = 0.0


class Batcher:
    """Collects concurrent single-coin requests into batches for a ``Scorer``.

    Usually created by the engine (``Engine.batcher`` / ``engine.submit``) with its settings,
    its scorer and its preprocessing pool.

    Args:
        scorer: the ``denarius.engine.scoring.Scorer`` that preprocesses and scores.
        executor: the thread pool that runs preprocessing (the engine's).
        max_batch: most coins per batch.
        max_wait_ms: how long the oldest ready request may wait for the batch to fill.
        eager: dispatch a partial batch at once when no admitted request is still being
            preprocessed (nothing could join it but new arrivals): no idle wait at low load,
            full batches at high load. False always waits up to ``max_wait_ms`` (Triton's rule).
        queue_size: most requests admitted and not yet batched; beyond it ``Overloaded``.
        on_batch: optional ``callback(batch_size, queue_depth, seconds)`` after each batch
            (runs on the inference thread: keep it cheap).
    """

    def __init__(
        self,
        scorer: Scorer,
        executor: Executor,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        queue_size: int = 256,
        eager: bool = True,
        on_batch: Callable[[int, int, float], None] | None = None,
    ):
        self._scorer, self._executor = scorer, executor
        self.max_batch, self.max_wait, self.queue_size = int(max_batch), float(max_wait_ms) / 1000.0, int(queue_size)
        self.eager = bool(eager)
        self.on_batch = on_batch
        self._cond = threading.Condition()
        self._ready: collections.deque[_Request] = collections.deque()
        self._pending = 0  # admitted, not yet taken into a batch
        self._closing = False
        self._cancelling = False
        self._counts: collections.Counter[str] = collections.Counter()
        self._sizes: collections.Counter[int] = collections.Counter()  # batch size -> batches
        self._max_depth = 0
        self._inference_seconds = 0.0
        size = scorer.spec.crop
        # The inference thread alone stacks into these; the backend sees contiguous slices.
        self._stack = {side: np.empty((self.max_batch, 3, size, size), np.float32) for side in SIDES}
        self._thread = threading.Thread(target=self._loop, name="denarius-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public

    def submit(self, pair, *, top_k: int = 5, deadline: float | None = None, timeout: float | None = None,
               on_stages: Callable[[StageTimes], None] | None = None) -> Future:
        """Queue one coin.

        Args:
            pair: a ``CoinPair`` (or ``(obverse, reverse)`` tuple), see ``Engine.identify``.
            top_k: candidates to return (>= 1).
            deadline: absolute ``time.monotonic()`` second after which the request is
                dropped, if it has not started inference, with ``DeadlineExceeded``.
            timeout: the same, relative to now (the earlier of the two wins).
            on_stages: called with this request's ``StageTimes`` on the inference thread just
                before its result is set (only when it is identified; keep it cheap).
        Returns:
            a Future resolving to an ``Identification``, or failing with InputError (this
            coin's image is unusable), DeadlineExceeded, BatcherClosed, or a backend error.
        Raises:
            Overloaded: ``queue_size`` requests are already waiting; retry later.
            BatcherClosed: the batcher is closing.
            InputError: ``top_k`` is not an integer >= 1.
        """
        check_top_k(top_k)
        if timeout is not None:
            limit = time.monotonic() + float(timeout)
            deadline = limit if deadline is None else min(deadline, limit)
        future: Future = Future()
        with self._cond:
            if self._closing:
                raise BatcherClosed("the batcher is closed; no new requests are accepted")
            if self._pending >= self.queue_size:
                self._counts["rejected"] += 1
                raise Overloaded(
                    f"the batcher queue is full ({self.queue_size} requests waiting); back off and retry"
                )
            self._pending += 1
            self._counts["submitted"] += 1
            self._max_depth = max(self._max_depth, self._pending)
        request = _Request(pair=pair, top_k=int(top_k), deadline=deadline, future=future, on_stages=on_stages,
                           submitted_at=time.monotonic())
        try:
            self._executor.submit(self._preprocess, request)
        except RuntimeError:  # the preprocessing pool shut down under us
            self._settle(request, BatcherClosed("the engine is closed"), "cancelled")
        return future

    async def identify_async(self, pair, *, top_k: int = 5, deadline: float | None = None, timeout: float | None = None):
        """``submit`` for asyncio: ``await batcher.identify_async(pair)`` -> Identification."""
        return await asyncio.wrap_future(self.submit(pair, top_k=top_k, deadline=deadline, timeout=timeout))

    def stats(self) -> BatcherStats:
        with self._cond:
            return BatcherStats(
                **{k: self._counts[k] for k in ("submitted", "rejected", "completed", "failed", "expired", "cancelled", "batches")},
                batch_sizes=dict(sorted(self._sizes.items())),
                queue_depth=self._pending,
                max_queue_depth=self._max_depth,
                inference_seconds=self._inference_seconds,
            )

    @property
    def queue_depth(self) -> int:
        return self._pending

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop admitting requests; finish (``drain=True``) or fail with BatcherClosed
        (``drain=False``) the admitted ones; wait for the inference thread. Idempotent."""
        with self._cond:
            self._closing = True
            if not drain:
                self._cancelling = True
                while self._ready:
                    request = self._ready.popleft()
                    self._pending -= 1
                    self._settle_locked(request, BatcherClosed("the batcher was closed (drain=False) before this request ran"), "cancelled")
            self._cond.notify_all()
        self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ------------------------------------------------------------------ preprocessing threads

    def _preprocess(self, request: _Request) -> None:
        """Admission checks, then the coin's sides: the first here, any other on a second pool thread."""
        if self._cancelling:
            return self._drop(request, BatcherClosed("the batcher was closed (drain=False) before this request ran"), "cancelled")
        if request.future.cancelled():
            return self._drop(request, None, "cancelled")
        request.preprocess_at = time.monotonic()
        if request.deadline is not None and request.preprocess_at > request.deadline:
            return self._drop(request, DeadlineExceeded("the deadline passed while the request waited for preprocessing"), "expired")
        try:
            pair = coerce_pair(request.pair)
        except InputError as error:
            return self._drop(request, error, "failed")
        request.pair = pair
        sides = [side for side in SIDES if getattr(pair, side) is not None]
        request.sides_left = len(sides)
        for side in sides[1:]:
            try:
                self._executor.submit(self._preprocess_side, request, side)
            except RuntimeError:  # the pool is shutting down: this thread does that side too
                self._preprocess_side(request, side)
        self._preprocess_side(request, sides[0])

    def _preprocess_side(self, request: _Request, side: str) -> None:
        """One side into ``request.images``; the side that finishes last makes the request ready (or fails it)."""
        image, outcome = None, ""
        error: BaseException | None = None
        if request.error is None:  # a side that already failed makes the other one moot
            try:
                image = self._scorer.preprocess_side(getattr(request.pair, side), side)
            except InputError as failure:
                error, outcome = failure, "failed"
            except Overloaded as failure:  # the decode memory budget stayed full: the caller backs off and retries
                error, outcome = failure, "rejected"
            except Exception as failure:  # a bug or resource error: fail this request, keep serving
                logger.exception("preprocessing failed unexpectedly")
                error, outcome = failure, "failed"
        with self._cond:
            if image is not None:
                request.images[side] = image
            elif error is not None and request.error is None:
                request.error, request.outcome = error, outcome
            request.sides_left -= 1
            if request.sides_left:
                return
            if request.error is None and self._cancelling:
                request.error, request.outcome = BatcherClosed("the batcher was closed (drain=False) before this request ran"), "cancelled"
            if request.error is not None:
                self._pending -= 1
                self._settle_locked(request, request.error, request.outcome)
            else:
                request.ready_at = time.monotonic()
                self._ready.append(request)
            self._cond.notify_all()

    def _drop(self, request: _Request, error: BaseException | None, outcome: str) -> None:
        with self._cond:
            self._pending -= 1
            self._settle_locked(request, error, outcome)
            self._cond.notify_all()

    def _settle(self, request: _Request, error: BaseException | None, outcome: str) -> None:
        with self._cond:
            self._pending -= 1
            self._settle_locked(request, error, outcome)

    def _settle_locked(self, request: _Request, error: BaseException | None, outcome: str) -> None:
        self._counts[outcome] += 1
        if error is not None and request.future.set_running_or_notify_cancel():
            request.future.set_exception(error)

    # ------------------------------------------------------------------ inference thread

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a batch (None: closed and nothing left)."""
        with self._cond:
            while not self._ready:
                if self._closing and self._pending == 0:
                    return None
                self._cond.wait()
            flush_at = self._ready[0].ready_at + self.max_wait
            while len(self._ready) < self.max_batch:
                # Every admitted request is ready: nothing can join but new arrivals. Eager
                # dispatch goes now; draining always does (nothing more will arrive).
                if (self.eager or self._closing) and len(self._ready) >= self._pending:
                    break
                remaining = flush_at - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                if not self._ready:  # cancelled by close(drain=False)
                    return []
            batch = [self._ready.popleft() for _ in range(min(self.max_batch, len(self._ready)))]
            self._pending -= len(batch)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = []
            now = time.monotonic()
            for request in batch:
                if not request.future.set_running_or_notify_cancel():
                    self._count("cancelled")
                elif request.deadline is not None and now > request.deadline:
                    request.future.set_exception(DeadlineExceeded("the deadline passed before inference started; no inference was run"))
                    self._count("expired")
                else:
                    live.append(request)
            if live:
                self._run(live)

    def _run(self, live: list[_Request]) -> None:
        stack = self._stack
        rows, counts = batch_rows([side for side in SIDES if side in request.images] for request in live)
        for request, coin_rows in zip(live, rows, strict=True):
            for side, row in zip(SIDES, coin_rows, strict=True):
                if row is not None:
                    stack[side][row] = request.images[side]
        batch_at, started = time.monotonic(), time.perf_counter()
        try:
            results = self._scorer.score_batch(
                stack["obverse"][: counts["obverse"]] if counts["obverse"] else None,
                stack["reverse"][: counts["reverse"]] if counts["reverse"] else None,
                rows,
                [cast(CoinPair, request.pair).coin_id for request in live],  # live requests are preprocessed
                [request.top_k for request in live],
            )
        except Exception as error:  # the backend failed: every request of this batch learns why
            logger.exception("batch inference failed")
            for request in live:
                request.future.set_exception(error)
            self._count("failed", len(live))
            return
        seconds = time.perf_counter() - started
        for request, result in zip(live, results, strict=True):
            if request.on_stages is not None:
                stages = StageTimes(
                    queue_wait=(request.preprocess_at - request.submitted_at) + (batch_at - request.ready_at),
                    preprocess=request.ready_at - request.preprocess_at, inference=seconds)
                try:
                    request.on_stages(stages)
                except Exception:
                    logger.exception("on_stages callback failed")
            request.future.set_result(result)
        with self._cond:
            self._counts["completed"] += len(live)
            self._counts["batches"] += 1
            self._sizes[len(live)] += 1
            self._inference_seconds += seconds
            depth = self._pending
        if self.on_batch is not None:
            try:
                self.on_batch(len(live), depth, seconds)
            except Exception:
                logger.exception("on_batch callback failed")

    def _count(self, outcome: str, n: int = 1) -> None:
        with self._cond:
            self._counts[outcome] += n
