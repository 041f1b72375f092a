"""Deadlines, overload, retries, unexpected failures and stream flow control."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc
from denarius.serving.server import BackgroundServer

from serving_helpers import coin_png, free_port, metric, scrape, server_config, wait_for_metric


def _batcher_stats(running):
    return running.server._servicer.runtime.engine.batcher.stats()


def test_expired_requests_get_deadline_exceeded_and_no_inference(tiny_bundle, photo_bytes):
    # The batcher always waits 400 ms for a batch to fill, so a 100 ms deadline expires while
    # the request is queued: the server must drop it rather than run it.
    config = server_config(tiny_bundle, max_batch=8, max_wait_ms=400.0, eager_dispatch=False)
    with BackgroundServer(config) as running, CoinClient(f"127.0.0.1:{running.port}", retries=0) as client:
        before = _batcher_stats(running)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as caught:
                client.identify(photo_bytes["obverse"], photo_bytes["reverse"], timeout=0.1)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.6)  # past the batcher's wait: the expired requests have been dropped
        after = _batcher_stats(running)
        assert after.completed == before.completed, "an expired request was run"
        dropped = (after.expired - before.expired) + (after.cancelled - before.cancelled)
        assert dropped == 3, after
        assert client.identify(photo_bytes["obverse"], photo_bytes["reverse"], timeout=20).candidates


def test_overload_is_resource_exhausted_and_not_retried(tiny_bundle):
    with BackgroundServer(server_config(tiny_bundle, max_queue=2, max_wait_ms=50.0, max_batch=2)) as running:
        codes, lock = [], threading.Lock()
        images = [coin_png(i, size=160) for i in range(24)]

        def call(k):
            with CoinClient(f"127.0.0.1:{running.port}", timeout=30, retries=3) as client:
                try:
                    client.identify(images[k], images[-k - 1])
                    code, details = "OK", ""
                except grpc.RpcError as error:
                    code, details = error.code().name, error.details()
                with lock:
                    codes.append((code, details))

        threads = [threading.Thread(target=call, args=(k,)) for k in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        exhausted = [d for c, d in codes if c == "RESOURCE_EXHAUSTED"]
        assert {c for c, _ in codes} <= {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert exhausted and "queue is full" in exhausted[0] and "retry" in exhausted[0]
        assert any(c == "OK" for c, _ in codes)
        assert _batcher_stats(running).rejected == len(exhausted)  # no client retried them
        with CoinClient(f"127.0.0.1:{running.port}") as client:
            assert client.health() == "SERVING"


def test_client_retries_unavailable_until_the_server_is_up(tiny_bundle, photo_bytes):
    port = free_port()
    started = {}

    def start_later():
        time.sleep(0.6)
        started["server"] = BackgroundServer(server_config(tiny_bundle, port=port, metrics_port=None)).__enter__()

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        with CoinClient(f"127.0.0.1:{port}", timeout=30, retries=8, backoff_s=0.1) as client:
            begin = time.monotonic()
            answer = client.identify(reverse=photo_bytes["reverse"])
            assert answer.candidates and time.monotonic() - begin >= 0.5
    finally:
        thread.join()
        if "server" in started:
            started["server"].stop(grace_s=0, delay_s=0)


def test_client_gives_up_after_its_retries(photo_bytes):
    with CoinClient(f"127.0.0.1:{free_port()}", timeout=10, retries=2, backoff_s=0.05) as client:
        begin = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            client.identify(reverse=photo_bytes["reverse"])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert 0.05 <= time.monotonic() - begin < 5


def test_unexpected_failure_is_internal_with_a_logged_request_id(tiny_bundle, tmp_path, photo_bytes, caplog):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    with BackgroundServer(server_config(bundle)) as running:
        # The gradient graph is opened on the first Landmarks call; damage it after the
        # bundle was verified at start-up (a disk fault while serving).
        (bundle / "ric.grad.onnx").write_bytes(b"\x08\x07garbage, not a protobuf")
        with caplog.at_level(logging.ERROR), CoinClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            with pytest.raises(grpc.RpcError) as caught:
                client.landmarks(photo_bytes["reverse"], side="reverse", request_id="req-internal-1",
                                 method="saliency")
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            assert "req-internal-1" in caught.value.details()
            assert "garbage" not in caught.value.details()  # internals stay in the log
            logged = [r for r in caplog.records if "req-internal-1" in r.getMessage()]
            assert logged and logged[0].exc_info is not None
            assert client.health() == "SERVING"
            assert client.identify(reverse=photo_bytes["reverse"]).candidates
        assert wait_for_metric(running.metrics_port, "denarius_requests_total", lambda v: v >= 1,
                               method="Landmarks", code="INTERNAL") == 1


def test_slow_stream_reader_stops_the_server_reading(tiny_bundle):
    window, total = 4, 400
    with BackgroundServer(server_config(tiny_bundle, stream_window=window)) as running:
        # No BDP probing: the client's HTTP/2 receive window stays at its 64 KiB default.
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}", options=[("grpc.http2.bdp_probe", 0)])
        stub = coins_pb2_grpc.CoinServiceStub(channel)
        images = [coin_png(i) for i in range(4)]
        requests = (coins_pb2.IdentifyRequest(request_id=str(i), reverse=images[i % 4], top_k=6) for i in range(total))
        responses = stub.IdentifyStream(requests, timeout=120)
        time.sleep(1.5)  # read nothing
        first = scrape(running.metrics_port)
        time.sleep(0.5)
        second = scrape(running.metrics_port)
        answered = metric(second, "denarius_stream_items_total")
        assert answered == metric(first, "denarius_stream_items_total"), "server kept working for a stalled reader"
        assert 0 < answered < total
        assert metric(second, "denarius_stream_outstanding") <= window
        assert metric(second, "denarius_batch_size_sum") - 1 <= answered + window  # no work queued beyond the window
        got = [r.request_id for r in responses]  # now read everything
        assert sorted(got, key=int) == [str(i) for i in range(total)]
        assert metric(scrape(running.metrics_port), "denarius_stream_outstanding_peak") <= window
        channel.close()


def test_queued_landmark_search_whose_caller_gives_up_is_counted(tiny_bundle, photo_bytes):
    slow = dict(side="reverse", method="occlusion", window=2, stride=1)  # 3,970 forward passes in 63 batches
    with BackgroundServer(server_config(tiny_bundle, landmark_workers=1, landmark_queue=1, landmark_batch=1)) as running:
        target = f"127.0.0.1:{running.port}"
        with CoinClient(target, timeout=60, retries=0) as client:
            client.landmarks(photo_bytes["reverse"], side="reverse", method="saliency")  # open the models
            started = time.monotonic()
            client.landmarks(photo_bytes["reverse"], **slow)
            # the tiny model runs the "slow" search in ~0.2 s on a quiet host: the queued call
            # gives up well inside it
            give_up_after = max(0.02, (time.monotonic() - started) / 4)
            with ThreadPoolExecutor(1) as pool:
                busy = pool.submit(client.landmarks, photo_bytes["reverse"], **slow)  # holds the only worker
                # queued first (it holds a slot: the batcher's queue is first come, first served);
                # in flight alone is not enough: its photo may still be decoding when the next call queues
                slots = running.server._servicer.landmark_slots
                deadline = time.monotonic() + 30
                while slots.busy < 1:
                    assert time.monotonic() < deadline, "the slow search never took a landmark slot"
                    time.sleep(0.005)
                with pytest.raises(grpc.RpcError) as gave_up:  # waits in the queue behind it, then gives up
                    client.landmarks(photo_bytes["reverse"], side="reverse", method="saliency", timeout=give_up_after)
                assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert wait_for_metric(running.metrics_port, "denarius_landmarks_cancelled_total", lambda v: v >= 1, timeout=30) == 1.0
                assert busy.result().forward_equivalents == 63 * 63 + 1  # the running search was not disturbed
            assert metric(scrape(running.metrics_port), "denarius_landmarks_cancelled_total") == 1.0


def test_landmark_search_stops_when_its_caller_gives_up(tiny_bundle, photo_bytes):
    slow = dict(side="reverse", method="occlusion", window=2, stride=1)  # 3,970 forward passes in 63 batches
    with BackgroundServer(server_config(tiny_bundle, landmark_workers=1, landmark_queue=0)) as running:
        target = f"127.0.0.1:{running.port}"
        with CoinClient(target, timeout=60, retries=0) as client:
            client.landmarks(photo_bytes["reverse"], side="reverse", method="saliency")  # open the models
            with pytest.raises(grpc.RpcError) as gave_up:
                client.landmarks(photo_bytes["reverse"], timeout=0.2, **slow)
            assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # The search polls between forward batches, stops, and frees its only slot.
            assert wait_for_metric(running.metrics_port, "denarius_landmarks_cancelled_total", lambda v: v >= 1, timeout=30) == 1.0
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = client.landmarks(photo_bytes["reverse"], side="reverse", method="saliency")
                    break
                except grpc.RpcError as error:  # the slot is released just after the search ends
                    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                    time.sleep(0.05)
            assert answer.target
            # A caller that waits gets the whole search; nothing was cancelled for it.
            whole = client.landmarks(photo_bytes["reverse"], **slow)
            assert whole.forward_equivalents == 63 * 63 + 1
            assert metric(scrape(running.metrics_port), "denarius_landmarks_cancelled_total") == 1.0
