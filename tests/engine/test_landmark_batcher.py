"""LandmarkBatcher: queued optimised searches with the same settings share one run.

A real LandmarkService on the tiny bundle's ort-cpu backend; a first job whose prepare()
blocks on an event keeps the single worker busy while the others queue behind it. Runs are
compared with compute_landmarks on a separately opened GradientModel.
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import numpy as np
import pytest

from denarius.engine.errors import BatcherClosed, Cancelled, DeadlineExceeded, InputError
from denarius.engine.landmarks import LandmarkConfig, compute_landmarks
from denarius.engine.landmarks.batcher import LandmarkBatcher, LandmarkJob

from tests.engine.test_landmarks import _coin

CONFIG = LandmarkConfig(epsilon=0.01)


class Runs:
    """A batcher with one worker, its run sizes, and a gate that holds the worker."""

    def __init__(self, service, **kwargs):
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()  # the worker is inside the holding job
        self.batcher = LandmarkBatcher(service, on_run=self.sizes.append, **kwargs)

    def hold(self):
        """Occupy the worker (a job that runs alone) until ``gate`` is set."""
        def prepare():
            self.entered.set()
            self.gate.wait(30)
            return _coin(0)

        return self.batcher.submit(LandmarkJob("ric", LandmarkConfig(method="saliency"), prepare))

    def submit(self, crop, config=CONFIG, **fields):
        return self.batcher.submit(LandmarkJob("ric", config, lambda: crop, **fields))


def test_queued_searches_share_one_run_and_equal_separate_runs(service, model):
    runs = Runs(service)
    with runs.batcher:
        runs.hold()
        crops = [_coin(seed) for seed in (1, 2, 3)]
        futures = [runs.submit(crop) for crop in crops]
        runs.gate.set()
        maps = [f.result(timeout=60) for f in futures]
    assert runs.sizes == [1, 3]
    for crop, shared in zip(crops, maps, strict=True):
        [alone] = compute_landmarks(model, crop, config=CONFIG)
        assert shared.target == alone.target and shared.iterations == alone.iterations
        np.testing.assert_allclose(shared.mask, alone.mask, atol=1e-4)
        np.testing.assert_allclose(shared.heatmap, alone.heatmap, atol=1e-4)
        assert shared.p_masked == pytest.approx(alone.p_masked, abs=1e-5)


def test_only_compatible_searches_share_and_max_batch_caps_a_run(service, model):
    runs = Runs(service, max_batch=2)
    with runs.batcher:
        runs.hold()
        crop = _coin(4)
        other_epsilon = LandmarkConfig(epsilon=0.02)
        futures = [
            runs.submit(crop),                                           # run A
            runs.submit(crop, config=other_epsilon),                     # run C
            runs.submit(crop, target=model.classes[1]),                  # run D: a named target
            runs.submit(crop),                                           # run A (A is now full)
            runs.submit(crop, config=LandmarkConfig(method="occlusion")),  # run E: always alone
            runs.submit(crop),                                           # run B
        ]
        runs.gate.set()
        maps = [f.result(timeout=120) for f in futures]
    assert runs.sizes == [1, 2, 1, 1, 1, 1]
    assert maps[1].epsilon == 0.02 and maps[2].label == model.classes[1] and maps[4].method == "occlusion"


def test_a_corrupt_image_fails_only_its_own_job(service, model):
    runs = Runs(service)
    with runs.batcher:
        runs.hold()

        def corrupt():
            raise InputError("cannot decode image", side="reverse")

        good = runs.submit(_coin(5))
        bad = runs.batcher.submit(LandmarkJob("ric", CONFIG, corrupt))
        also_good = runs.submit(_coin(6))
        runs.gate.set()
        with pytest.raises(InputError, match="cannot decode"):
            bad.result(timeout=60)
        assert good.result(timeout=60).p_masked > 0 and also_good.result(timeout=60).p_masked > 0
    assert runs.sizes == [1, 2]


def test_jobs_given_up_before_their_run_are_not_run(service, model):
    runs = Runs(service)
    with runs.batcher:
        runs.hold()
        cancelled = runs.submit(_coin(7))
        expired = runs.submit(_coin(7), should_stop=lambda: True, deadline=0.0)
        gave_up = runs.submit(_coin(7), should_stop=lambda: True)
        kept = runs.submit(_coin(7))
        assert cancelled.cancel()
        runs.gate.set()
        with pytest.raises(DeadlineExceeded, match="deadline passed while the request waited"):
            expired.result(timeout=60)
        with pytest.raises(Cancelled):
            gave_up.result(timeout=60)
        assert kept.result(timeout=60).iterations >= 1
    assert runs.sizes == [1, 1]


class GivesUpOnceRunning:
    """should_stop: False when the job starts, True at every later poll (mid-run)."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > 1


def test_a_shared_run_stops_only_when_everyone_gave_up(service, model):
    runs = Runs(service)
    slow = LandmarkConfig(epsilon=0.01, window=3, stride=1)
    with runs.batcher:
        runs.hold()
        staying = runs.submit(_coin(8), config=slow)
        leaving = runs.submit(_coin(9), config=slow, should_stop=GivesUpOnceRunning())
        runs.gate.set()
        # one of the two gave up mid-run: the run went on, and both got their maps
        assert staying.result(timeout=60).iterations >= 1
        assert leaving.result(timeout=60).iterations >= 1
        assert runs.sizes == [1, 2]
        runs.gate.clear()
        runs.hold()
        both = [runs.submit(_coin(seed), config=slow, should_stop=GivesUpOnceRunning()) for seed in (8, 9)]
        runs.gate.set()
        for future in both:
            with pytest.raises(Cancelled, match="caller gave up"):
                future.result(timeout=60)
        # the same, with one of them past its deadline: that one learns it timed out
        runs.gate.clear()
        runs.hold()
        timed_out = runs.submit(_coin(8), config=slow, should_stop=GivesUpOnceRunning(), deadline=0.0)
        left = runs.submit(_coin(9), config=slow, should_stop=GivesUpOnceRunning())
        runs.gate.set()
        with pytest.raises(DeadlineExceeded, match=r"caller gave up.*deadline passed"):
            timed_out.result(timeout=60)
        with pytest.raises(Cancelled, match="caller gave up"):
            left.result(timeout=60)
    assert runs.sizes == [1, 2, 1, 2, 1, 2]


def test_close_cancels_queued_jobs_and_refuses_new_ones(service, model):
    runs = Runs(service)
    running = runs.hold()
    assert runs.entered.wait(30)
    queued = runs.submit(_coin(10))
    closer = threading.Thread(target=runs.batcher.close)
    closer.start()
    runs.gate.set()
    closer.join(30)
    assert not closer.is_alive()
    assert running.result(timeout=1).method == "saliency"  # the running job finished
    with pytest.raises(CancelledError):
        queued.result(timeout=1)
    with pytest.raises(BatcherClosed, match="shutting down"):
        runs.submit(_coin(10))
