"""Hostile and broken requests: each gets INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a message
that says what was wrong (naming the side), and the server stays healthy and correct."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc
from denarius.serving.server import BackgroundServer

from serving_helpers import huge_png_header, metric, png_bytes, scrape, wait_for_metric

INVALID, EXHAUSTED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
MAX_MESSAGE = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def small_server(tiny_bundle):
    from serving_helpers import server_config

    with BackgroundServer(server_config(tiny_bundle, max_message_bytes=MAX_MESSAGE)) as running:
        yield running


@pytest.fixture(scope="module")
def stub(small_server):
    # A client allowed to send more than the server accepts, so the server has to refuse it.
    channel = grpc.insecure_channel(
        f"127.0.0.1:{small_server.port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    yield coins_pb2_grpc.CoinServiceStub(channel)
    channel.close()


def _identify(obverse=None, reverse=None, **fields):
    request = coins_pb2.IdentifyRequest(**fields)
    if obverse is not None:
        request.obverse = obverse
    if reverse is not None:
        request.reverse = reverse
    return "Identify", request


def _landmarks(image, side=coins_pb2.REVERSE, **fields):
    fields.setdefault("max_iterations", 3)
    return "Landmarks", coins_pb2.LandmarksRequest(image=image, side=side, **fields)


def _cases(photo):
    jpeg = photo["reverse"]
    good = photo["obverse"]
    one_pixel = png_bytes(np.zeros((1, 1, 3), np.uint8))
    return {
        # name: (rpc, request, expected code, words the message must contain)
        "empty obverse bytes": (*_identify(b"", jpeg), INVALID, ["obverse", "empty"]),
        "empty reverse bytes": (*_identify(good, b""), INVALID, ["reverse", "empty"]),
        "truncated jpeg": (*_identify(good, jpeg[: len(jpeg) // 2]), INVALID, ["reverse", "truncated"]),
        "jpeg missing its tail": (*_identify(good, jpeg[:-100]), INVALID, ["reverse", "truncated JPEG"]),
        "jpeg header only": (*_identify(jpeg[:300], jpeg), INVALID, ["obverse", "JPEG"]),
        "text file": (*_identify(b"coin_id,obverse,reverse\n1,a.jpg,b.jpg\n", jpeg), INVALID, ["obverse", "text"]),
        "random bytes": (*_identify(bytes(range(256)) * 8, jpeg), INVALID, ["obverse", "unrecognised"]),
        "1x1 image": (*_identify(good, one_pixel), INVALID, ["reverse", "1 x 1"]),
        "huge dimension header": (*_identify(huge_png_header(), jpeg), INVALID, ["obverse", "60000 x 60000", "limit"]),
        "corrupt png data": (*_identify(huge_png_header(64, 64), jpeg), INVALID, ["obverse", "decode"]),
        "oversized message": (*_identify(b"\xff\xd8\xff" + bytes(3 * 1024 * 1024), jpeg), EXHAUSTED, ["larger than max"]),
        "missing both sides": (*_identify(), INVALID, ["neither", "obverse", "reverse"]),
        "unknown target label": (*_landmarks(jpeg, target="RIC X Nero 1"), INVALID, ["unknown target label", "RIC V Probus 10"]),
        "target of the other side": (*_landmarks(jpeg, side=coins_pb2.OBVERSE, target="RIC V Probus 10"), INVALID, ["obverse", "Tacitus"]),
        "epsilon 0": (*_landmarks(jpeg, epsilon=0.0), INVALID, ["epsilon", "(0, 1]"]),
        "epsilon above 1": (*_landmarks(jpeg, epsilon=1.5), INVALID, ["epsilon"]),
        "epsilon nan": (*_landmarks(jpeg, epsilon=float("nan")), INVALID, ["epsilon"]),
        "negative sparsity": (*_landmarks(jpeg, sparsity=-1.0), INVALID, ["lambda"]),
        "infinite sparsity": (*_landmarks(jpeg, sparsity=float("inf")), INVALID, ["sparsity", "finite"]),
        "landmarks without side": (*_landmarks(jpeg, side=coins_pb2.SIDE_UNSPECIFIED), INVALID, ["side"]),
        "landmarks empty image": (*_landmarks(b""), INVALID, ["reverse", "empty"]),
        "landmarks text image": (*_landmarks(b"hello"), INVALID, ["reverse", "text"]),
        "window larger than input": (*_landmarks(jpeg, windows=coins_pb2.Windows(size=500)), INVALID, ["window"]),
        "too many iterations": (*_landmarks(jpeg, max_iterations=10**6), INVALID, ["max_iterations"]),
        "too many superpixels": (*_landmarks(jpeg, superpixels=coins_pb2.Superpixels(count=10**6)), INVALID, ["superpixels"]),
    }


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


CASE_NAMES = list(_cases({"obverse": b"", "reverse": b""}))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_gets_status_and_message(stub, photo_bytes, name):
    method, request, code, words = _cases(photo_bytes)[name]
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, method)(request, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    for word in words:
        assert word in caught.value.details(), (word, caught.value.details())


def test_server_healthy_and_correct_after_the_sweep(small_server, stub, photo_bytes):
    cases = _cases(photo_bytes)
    rss_before = _rss_mib()
    for _ in range(3):  # the whole sweep again, three times back to back
        for name in CASE_NAMES:
            method, request, code, _ = cases[name]
            with pytest.raises(grpc.RpcError) as caught:
                getattr(stub, method)(request, timeout=30)
            assert caught.value.code() == code
    # The server runs in this process: its memory did not grow with the hostile inputs
    # (a decoded 60000 x 60000 header alone would be 10 GB).
    assert _rss_mib() - rss_before < 200
    with CoinClient(f"127.0.0.1:{small_server.port}", timeout=30) as client:
        assert client.health() == "SERVING"
        assert client.health("denarius.v1.CoinService") == "SERVING"
        answer = client.identify(photo_bytes["obverse"], photo_bytes["reverse"], top_k=3)
        assert len(answer.candidates) == 3
    text = scrape(small_server.metrics_port)
    for code in ("UNKNOWN", "INTERNAL"):
        assert metric(text, "denarius_requests_total", code=code) == 0
    # The batcher observes a batch's size after it has answered it: wait for that observation.
    assert wait_for_metric(small_server.metrics_port, "denarius_batch_size_count", lambda v: v >= 1) >= 1
