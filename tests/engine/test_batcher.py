"""The dynamic batcher: concurrency, overload, deadlines, bad images, shutdown, asyncio."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from denarius.engine.backends import open_backend
from denarius.engine.batcher import Batcher, BatcherClosed
from denarius.engine.bundle import load_bundle
from denarius.engine.engine import CoinPair, Engine
from denarius.engine.errors import DeadlineExceeded, InputError, Overloaded
from denarius.engine.preprocess import preprocess
from denarius.engine.scoring import Scorer


def coin_jpeg(seed: int, size: int = 160) -> bytes:
    """A distinct synthetic coin photo (same recipe as test_engine.py)."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), rng.integers(200, 255, 3), np.uint8)
    cv2.circle(image, (size // 2, size // 2), int(size * 0.38), tuple(int(v) for v in rng.integers(60, 180, 3)), -1)
    for _ in range(12):
        p1, p2 = rng.integers(size // 4, 3 * size // 4, (2, 2))
        cv2.line(image, tuple(map(int, p1)), tuple(map(int, p2)), tuple(int(v) for v in rng.integers(0, 255, 3)), int(rng.integers(1, 5)))
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def coins() -> list[CoinPair]:
    return [CoinPair(obverse=coin_jpeg(2 * i), reverse=coin_jpeg(2 * i + 1), coin_id=f"c{i}") for i in range(24)]


@pytest.fixture(scope="module")
def expected(bundle, coins):
    with Engine(bundle, backend="ort-cpu", precision="fp32") as engine:
        return {r.coin_id: r for r in engine.identify(coins)}


def same(a, b) -> bool:
    return (
        a.coin_id == b.coin_id
        and [c.label for c in a.candidates] == [c.label for c in b.candidates]
        and np.allclose([c.score for c in a.candidates], [c.score for c in b.candidates], rtol=0, atol=1e-5)
    )


def test_concurrent_callers_each_get_their_own_answer(bundle, coins, expected):
    sizes = []
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_batch=8, max_wait_ms=20) as engine:
        engine.batcher.on_batch = lambda size, depth, seconds: sizes.append(size)
        barrier = threading.Barrier(12)

        def caller(k):
            barrier.wait()
            mine = [coins[i] for i in range(k, len(coins), 12)] * 2
            futures = [engine.submit(pair) for pair in mine]
            return [(pair.coin_id, f.result(timeout=30)) for pair, f in zip(mine, futures, strict=True)]

        with ThreadPoolExecutor(12) as callers:
            answers = [a for chunk in callers.map(caller, range(12)) for a in chunk]
        stats = engine.batcher.stats()
    assert len(answers) == 2 * len(coins)
    for coin_id, result in answers:
        assert result.coin_id == coin_id and same(result, expected[coin_id])
    assert stats.completed == 48 and stats.submitted == 48 and stats.queue_depth == 0
    assert sum(size * n for size, n in stats.batch_sizes.items()) == 48
    assert max(stats.batch_sizes) > 1, f"no batching happened: {stats.batch_sizes}"
    assert max(stats.batch_sizes) <= 8 and sorted(sizes) == sorted(s for s, n in stats.batch_sizes.items() for _ in range(n))


def test_bad_image_fails_only_its_own_future(bundle, coins, expected):
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_wait_ms=50) as engine:
        good = [engine.submit(coins[i]) for i in range(3)]
        bad = engine.submit(CoinPair(obverse=b"\xff\xd8\xff garbage", reverse=coins[0].reverse, coin_id="bad"))
        empty = engine.submit(CoinPair(coin_id="empty"))
        more = engine.submit(coins[3])
        with pytest.raises(InputError, match="obverse"):
            bad.result(timeout=30)
        with pytest.raises(InputError, match="neither side"):
            empty.result(timeout=30)
        for future, pair in zip([*good, more], coins[:4], strict=True):
            assert same(future.result(timeout=30), expected[pair.coin_id])
        assert engine.batcher.stats().failed == 2


def test_full_queue_rejects_with_overloaded(bundle, coins):
    big = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), np.uint8))[1].tobytes()
    with Engine(bundle, backend="ort-cpu", precision="fp32", queue_size=3, max_wait_ms=1, preprocess_workers=1) as engine:
        admitted, rejected = [], 0
        for i in range(12):  # decoding a 1500 px JPEG takes far longer than this loop
            try:
                admitted.append(engine.submit(CoinPair(obverse=big, reverse=big, coin_id=str(i))))
            except Overloaded as error:
                rejected += 1
                assert "queue is full (3" in str(error)
        assert len(admitted) == 3 and rejected == 9
        assert all(f.result(timeout=60).ok for f in admitted)
        assert engine.batcher.stats().rejected == 9
        engine.submit(coins[0]).result(timeout=30)  # the queue drained: admitted again


def test_expired_requests_are_dropped_before_inference(bundle, coins):
    pre = [preprocess(coins[i].obverse, bundle.preprocess) for i in range(3)]
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_batch=8, max_wait_ms=1000, eager_dispatch=False) as engine:
        already = engine.submit(CoinPair(obverse=pre[0]), deadline=time.monotonic() - 1)
        # Ready within milliseconds, then held 1 s for the batch to fill: expires waiting.
        waiting = engine.submit(CoinPair(obverse=pre[1]), timeout=0.4)
        patient = engine.submit(CoinPair(obverse=pre[2]), timeout=30)
        with pytest.raises(DeadlineExceeded):
            already.result(timeout=30)
        with pytest.raises(DeadlineExceeded, match="before inference"):
            waiting.result(timeout=30)
        assert patient.result(timeout=30).ok
        stats = engine.batcher.stats()
    assert stats.expired == 2 and stats.completed == 1 and stats.batch_sizes == {1: 1}


def test_cancelled_future_is_not_computed(bundle, coins):
    pre = preprocess(coins[0].obverse, bundle.preprocess)
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_wait_ms=200, eager_dispatch=False) as engine:
        doomed = engine.submit(CoinPair(obverse=pre))
        kept = engine.submit(CoinPair(obverse=pre))
        assert doomed.cancel()
        assert kept.result(timeout=30).ok
        stats = engine.batcher.stats()
    assert stats.cancelled == 1 and stats.completed == 1


def test_close_drains_or_cancels_explicitly(bundle, coins, expected):
    engine = Engine(bundle, backend="ort-cpu", precision="fp32", max_wait_ms=100)
    futures = [engine.submit(coins[i]) for i in range(6)]
    engine.close(drain=True)
    assert [f.result(timeout=0).coin_id for f in futures] == [c.coin_id for c in coins[:6]]
    with pytest.raises(Exception, match="closed"):
        engine.submit(coins[0])

    engine = Engine(bundle, backend="ort-cpu", precision="fp32", max_wait_ms=2000, preprocess_workers=1, eager_dispatch=False)
    batcher = engine.batcher
    futures = [engine.submit(coins[i]) for i in range(6)]
    started = time.monotonic()
    engine.close(drain=False)
    assert time.monotonic() - started < 1.5  # did not sit out the 2 s batch window
    for future in futures:
        with pytest.raises(BatcherClosed, match="drain=False"):
            future.result(timeout=0)
    assert batcher.stats().cancelled == 6 and batcher.stats().completed == 0


def test_asyncio_callers(bundle, coins, expected):
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_batch=4, max_wait_ms=10) as engine:
        async def main():
            return await asyncio.gather(*(engine.identify_async(c) for c in coins[:8]))

        results = asyncio.run(main())
    assert all(same(r, expected[c.coin_id]) for r, c in zip(results, coins[:8], strict=True))


def test_standalone_batcher_and_top_k(bundle, coins, expected):
    """A Batcher needs only a Scorer (bundle + backend) and a thread pool, not an Engine."""
    with open_backend(bundle, "ort-cpu", "fp32") as backend, ThreadPoolExecutor(2) as pool:
        with Batcher(Scorer(bundle, backend), pool, max_batch=2, max_wait_ms=0) as batcher:
            futures = [batcher.submit(coins[i], top_k=2) for i in range(5)]
            results = [f.result(timeout=30) for f in futures]
            with pytest.raises(InputError, match="top_k"):
                batcher.submit(coins[0], top_k=-1)
        assert max(batcher.stats().batch_sizes) <= 2
    for r, c in zip(results, coins[:5], strict=True):
        assert len(r.candidates) == 2 and [x.label for x in r.candidates] == [x.label for x in expected[c.coin_id].candidates[:2]]
    with pytest.raises(BatcherClosed):
        batcher.submit(coins[0])


def test_eager_dispatch_does_not_sit_out_the_window_when_nothing_else_is_in_flight(bundle, coins):
    pre = preprocess(coins[0].obverse, bundle.preprocess)
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_wait_ms=5000) as engine:
        engine.submit(CoinPair(obverse=pre)).result(timeout=30)  # warm-up
        started = time.monotonic()
        assert engine.submit(CoinPair(obverse=pre)).result(timeout=30).ok
        assert time.monotonic() - started < 2.5  # a lazy batcher would hold it for 5 s
        futures = [engine.submit(c) for c in coins[:8]]  # concurrent arrivals still batch up
        assert all(f.result(timeout=60).ok for f in futures)
        assert max(engine.batcher.stats().batch_sizes) > 1


def test_stage_times_are_reported_per_request_before_its_result(bundle, coins, expected):
    """on_stages: queue wait + preprocess + inference of each identified request, called on the
    inference thread before its future resolves; a failed request gets no call."""
    reported: dict[str, object] = {}
    with Engine(bundle, backend="ort-cpu", precision="fp32", max_batch=4, max_wait_ms=50.0) as engine:
        futures = {}
        for coin in coins[:6]:
            def note(times, coin_id=coin.coin_id):
                reported[coin_id] = times
            started = time.monotonic()
            futures[coin.coin_id] = (engine.submit(coin, on_stages=note), started)
        bad = engine.submit(CoinPair(obverse=b"not an image", coin_id="bad"), on_stages=lambda t: reported.update(bad=t))
        for coin_id, (future, started) in futures.items():
            result = future.result(timeout=30)
            waited = time.monotonic() - started
            assert coin_id in reported  # set before the result
            times = reported[coin_id]
            assert same(result, expected[coin_id])
            assert times.queue_wait >= 0 and times.preprocess > 0 and times.inference > 0
            assert times.queue_wait + times.preprocess + times.inference <= waited + 1e-3
        with pytest.raises(InputError):
            bad.result(timeout=30)
    assert "bad" not in reported
