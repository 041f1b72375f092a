"""Landmark requests that can share an optimiser run, share it.

The optimiser's rows share every forward/backward pass, and at small batches a pass costs
almost as much for two images as for one: the classifier's fully connected weights (54M
floats in a width-1 AlexNet) are read twice per iteration, forward and backward, however
many images the batch holds. Measured with ``denarius bench --sections landmarks`` at
224 px on 2 CPU cores, held to the 100-iteration cap: 4.80 s per image alone, 3.44 s with
2 images per run, 2.43 s with 8.

:class:`LandmarkBatcher` runs :class:`LandmarkJob` s on ``workers`` threads. A free worker
takes the oldest queued job plus every other queued job that may share its run, up to
``max_batch``, and makes one :meth:`LandmarkService.compute
<denarius.engine.landmarks.service.LandmarkService.compute>` call for them. Jobs may share a run
when they ask for the same model and the same :class:`LandmarkConfig`, with the optimised
method on window or pixel regions, and either all name their target class or none does.
Superpixels differ per image and occlusion batches its occluded copies of one image, so
those jobs run alone. Nothing waits to form a batch: jobs coalesce only when they queued
behind a busy worker, so a lone request starts at once.

Per job:

- ``prepare()`` (decode, crop) runs on the worker; its error fails that job alone;
- a job whose future was cancelled before its run is dropped; one whose ``should_stop()``
  is already true fails with DeadlineExceeded (its deadline passed) or Cancelled;
- a run stops early only when every job in it gave up: Cancelled for each, or
  DeadlineExceeded for a job whose own deadline has passed; a job that gave up during a
  run shared with others still gets its result, which nobody reads;
- ``finish(map, crop)`` turns the job's LandmarkMap into the future's result.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from denarius.engine.errors import BatcherClosed, Cancelled, ConfigError, DeadlineExceeded
from denarius.engine.landmarks.api import LandmarkConfig

__all__ = ["LandmarkJob", "LandmarkBatcher"]

logger = logging.getLogger(__name__)


def _never() -> bool:
    return False


def _keep_map(landmark_map, crop):
    return landmark_map


@dataclass
class LandmarkJob:
    """One landmark request.

    Attributes:
        model: the model's name in the bundle ("emperor" or "ric"), resolved by the
            batcher's service.
        config: what to compute.
        prepare: returns the (S, S, 3) uint8 centre crop (decoding happens here, on a worker).
        target: a class label, or None for the predicted class.
        finish: (LandmarkMap, crop) -> the future's result (default: the map itself).
        should_stop: true once the caller gave up (cancelled, or past its deadline).
        deadline: time.monotonic() after which the job is not worth starting (None: none).
        started: set by the batcher (time.perf_counter()) when the job leaves the queue.
        prepared: set by the batcher (time.perf_counter()) when ``prepare()`` has returned.
    """

    model: str
    config: LandmarkConfig
    prepare: Callable[[], np.ndarray]
    target: str | None = None
    finish: Callable[[Any, np.ndarray], Any] = _keep_map
    should_stop: Callable[[], bool] = _never
    deadline: float | None = None
    started: float | None = field(default=None, compare=False)
    prepared: float | None = field(default=None, compare=False)

    def share_key(self) -> tuple | None:
        """Jobs with equal keys may share a run; None: this job runs alone."""
        config = self.config
        if config.method != "optimized" or config.superpixels is not None:
            return None
        return (self.model, config, self.target is None)


def _share_of_failure(job: LandmarkJob, error: Exception) -> Exception:
    """What one job of a failed run gets: a run stopped because everyone gave up
    (Cancelled) is DeadlineExceeded for a job whose own deadline has passed."""
    if isinstance(error, Cancelled) and job.deadline is not None and time.monotonic() >= job.deadline:
        return DeadlineExceeded(f"{error} (the call's deadline passed)")
    return error


class LandmarkBatcher:
    """Worker threads that run landmark jobs, coalescing those that can share a run.

    Args:
        service: a :class:`~denarius.engine.landmarks.service.LandmarkService` (anything with
            its ``compute(crops, *, model, config, targets, should_stop)``), called on a
            worker thread.
        workers: threads running jobs (runs in parallel).
        max_batch: most jobs in one run.
        on_run: optional callback with the number of jobs in each run, after the run.
    """

    def __init__(self, service, *, workers: int = 1, max_batch: int = 8,
                 on_run: Callable[[int], None] | None = None):
        if workers < 1 or max_batch < 1:
            raise ConfigError(f"workers and max_batch must be >= 1, got workers={workers}, max_batch={max_batch}")
        self._service = service
        self._max_batch = max_batch
        self._on_run = on_run
        self._queue: collections.deque[tuple[LandmarkJob, Future]] = collections.deque()
        self._condition = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"landmarks-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: LandmarkJob) -> Future:
        """Queue a job; the Future resolves to ``job.finish(map, crop)``.

        Raises:
            BatcherClosed: after :meth:`close`.
        """
        future: Future = Future()
        with self._condition:
            if self._closed:
                raise BatcherClosed("the landmark queue is closed: the server is shutting down")
            self._queue.append((job, future))
            self._condition.notify()
        return future

    def close(self) -> None:
        """Cancel the queued jobs, let the running ones finish, and stop the workers."""
        with self._condition:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._condition.notify_all()
        for _, future in queued:
            future.cancel()
        for thread in self._threads:
            thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- workers -----------------------------------------------------------------------------

    def _take(self) -> list[tuple[LandmarkJob, Future]] | None:
        """The oldest queued job and the queued jobs that may share its run (None: closed)."""
        with self._condition:
            while not self._queue and not self._closed:
                self._condition.wait()
            if not self._queue:
                return None
            group = [self._queue.popleft()]
            key = group[0][0].share_key()
            if key is not None:
                for item in list(self._queue):
                    if len(group) == self._max_batch:
                        break
                    if item[0].share_key() == key:
                        self._queue.remove(item)
                        group.append(item)
            return group

    def _loop(self) -> None:
        while (group := self._take()) is not None:
            try:
                self._run(group)
            except Exception:  # never lose a worker
                logger.exception("landmark worker: unexpected failure")

    def _start(self, job: LandmarkJob, future: Future) -> np.ndarray | None:
        """The job's crop, or None when the job is dropped or failed (its future settled)."""
        if not future.set_running_or_notify_cancel():
            return None
        job.started = time.perf_counter()
        try:
            if job.should_stop():
                if job.deadline is not None and time.monotonic() >= job.deadline:
                    raise DeadlineExceeded("the deadline passed while the request waited for a landmark worker")
                raise Cancelled("the caller gave up while the request waited for a landmark worker")
            crop = job.prepare()
            job.prepared = time.perf_counter()
            return crop
        except Exception as error:  # noqa: BLE001 - any failure is this job's answer, given to its caller
            future.set_exception(error)
            return None

    def _run(self, group: list[tuple[LandmarkJob, Future]]) -> None:
        live = []
        for job, future in group:
            crop = self._start(job, future)
            if crop is not None:
                live.append((job, future, crop))
        if not live:
            return
        first = live[0][0]
        try:
            maps = self._service.compute(
                np.stack([crop for _, _, crop in live]),
                model=first.model,
                config=first.config,
                targets=None if first.target is None else [job.target for job, _, _ in live],
                should_stop=lambda: all(job.should_stop() for job, _, _ in live),
            )
        except Exception as error:  # noqa: BLE001 - the group's failure is shared by its callers
            for job, future, _ in live:
                future.set_exception(_share_of_failure(job, error))
            return
        finally:
            if self._on_run is not None:
                self._on_run(len(live))
        for (job, future, crop), landmark_map in zip(live, maps, strict=True):
            try:
                future.set_result(job.finish(landmark_map, crop))
            except Exception as error:  # noqa: BLE001 - this job's failure, given to its caller
                future.set_exception(error)
