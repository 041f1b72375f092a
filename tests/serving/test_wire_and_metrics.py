"""Malformed protobuf on the wire, and the status every RPC is counted with.

Raw bytes go through ``channel.unary_unary(method)`` (no serializer), so the server sees
exactly what a broken or hostile client sends: random bytes, a length that runs past the
end, a string field that is not UTF-8. Each is INVALID_ARGUMENT naming the message, never
gRPC's UNKNOWN; and ``denarius_requests_total`` counts every call once with the code it
ended with, deadlines and cancels of streams included.
"""

from __future__ import annotations

import logging
import time

import grpc
import pytest

from denarius.engine.errors import InputError
from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc
from denarius.serving.messages import parse_request, wire_problem
from denarius.serving.server import BackgroundServer

from serving_helpers import coin_png, metric, scrape, server_config, wait_for_metric

SERVICE = "/denarius.v1.CoinService/"
BAD_UTF8 = b"\x0a\x03\xff\xfe\xfd"  # field 1 (a string) holding 3 bytes that are not UTF-8
TRUNCATED = b"\x12\x10abc"  # field 2 claims 16 bytes, 3 follow
RANDOM = bytes(range(256))  # starts with tag 0
MALFORMED = {"bad utf-8": BAD_UTF8, "truncated length": TRUNCATED, "random bytes": RANDOM,
             "runaway varint": b"\xff" * 12}
METHODS = {  # method: the request message it takes
    "Identify": "denarius.v1.IdentifyRequest",
    "Landmarks": "denarius.v1.LandmarksRequest",
    "GetModelInfo": "denarius.v1.GetModelInfoRequest",
}
INVALID = grpc.StatusCode.INVALID_ARGUMENT
MAX_MESSAGE = 1024 * 1024


@pytest.fixture(scope="module")
def slow_batch_server(tiny_bundle):
    """The batcher always waits 400 ms for a batch: a 100 ms deadline expires in its queue."""
    config = server_config(tiny_bundle, max_batch=8, max_wait_ms=400.0, eager_dispatch=False, max_message_bytes=MAX_MESSAGE)
    with BackgroundServer(config) as running:
        yield running


@pytest.fixture(scope="module")
def channel(slow_batch_server):
    # Allowed to send more than the server takes, so the server has to refuse it.
    options = [("grpc.max_send_message_length", 8 * MAX_MESSAGE)]
    with grpc.insecure_channel(f"127.0.0.1:{slow_batch_server.port}", options=options) as opened:
        yield opened


def _raw(channel, method: str):
    return channel.unary_unary(method)  # bytes in, bytes out


def _codes(port: int, method: str, token: str | None = None) -> dict[str, float]:
    text = scrape(port, token=token)
    return {code.name: metric(text, "denarius_requests_total", method=method, code=code.name)
            for code in grpc.StatusCode if metric(text, "denarius_requests_total", method=method, code=code.name)}


CASES = [(method, kind) for method in sorted(METHODS) for kind in sorted(MALFORMED)
         if (method, kind) != ("GetModelInfo", "bad utf-8")]  # it has no string field: unknown bytes are skipped


@pytest.mark.parametrize("method, kind", CASES)
def test_malformed_request_is_invalid_argument_naming_the_message(channel, method, kind):
    with pytest.raises(grpc.RpcError) as caught:
        _raw(channel, SERVICE + method)(MALFORMED[kind], timeout=10)
    assert caught.value.code() == INVALID, caught.value.details()
    assert f"request is not a valid {METHODS[method]}" in caught.value.details()


def test_the_message_says_where_the_bytes_broke(channel):
    expected = {BAD_UTF8: "field 1 (request_id) at byte 0 is not valid UTF-8",
                TRUNCATED: "field 2 (obverse) at byte 0 claims 16 bytes but only 3 remain",
                RANDOM: "field number 0"}
    for data, words in expected.items():
        with pytest.raises(grpc.RpcError) as caught:
            _raw(channel, SERVICE + "Identify")(data, timeout=10)
        assert words in caught.value.details()


def test_health_and_reflection_parse_the_same_way(channel):
    with pytest.raises(grpc.RpcError) as caught:
        _raw(channel, "/grpc.health.v1.Health/Check")(BAD_UTF8, timeout=10)
    assert caught.value.code() == INVALID
    assert "grpc.health.v1.HealthCheckRequest" in caught.value.details()
    # A stream other than IdentifyStream ends at its first bad message.
    reflection = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    with pytest.raises(grpc.RpcError) as caught:
        list(reflection(iter([TRUNCATED]), timeout=10))
    assert caught.value.code() == INVALID
    assert "message 0 of the stream" in caught.value.details()


def test_a_malformed_stream_item_is_an_error_item_and_the_stream_goes_on(channel):
    good = [coins_pb2.IdentifyRequest(request_id=f"good-{i}", reverse=coin_png(i)).SerializeToString() for i in range(3)]
    stream = channel.stream_stream(SERVICE + "IdentifyStream", response_deserializer=coins_pb2.IdentifyResponse.FromString)
    answers = list(stream(iter([good[0], TRUNCATED, good[1], BAD_UTF8, good[2]]), timeout=30))
    assert len(answers) == 5
    fine = sorted(a.request_id for a in answers if not a.HasField("error"))
    assert fine == ["good-0", "good-1", "good-2"]
    errors = [a.error for a in answers if a.HasField("error")]
    assert [e.code_name for e in errors] == ["INVALID_ARGUMENT"] * 2
    assert all("request is not a valid denarius.v1.IdentifyRequest" in e.message for e in errors)
    assert {e.message.split(": ", 1)[0] for e in errors}  # said per item


def test_token_is_checked_before_the_payload_is_parsed(tiny_bundle):
    token = "parse-after-auth-token"
    with BackgroundServer(server_config(tiny_bundle, tokens=(token,))) as running, \
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as opened:
        call = _raw(opened, SERVICE + "Identify")
        with pytest.raises(grpc.RpcError) as anonymous:
            call(TRUNCATED, timeout=10)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as signed:
            call(TRUNCATED, timeout=10, metadata=[("authorization", f"Bearer {token}")])
        assert signed.value.code() == INVALID
        assert wait_for_metric(running.metrics_port, "denarius_requests_total", lambda v: v >= 2,
                               token=token, method="Identify") == 2
        assert _codes(running.metrics_port, "Identify", token=token) == {"UNAUTHENTICATED": 1, "INVALID_ARGUMENT": 1}


def test_every_rpc_is_counted_once_with_its_final_code(slow_batch_server, channel, caplog):
    caplog.set_level(logging.ERROR)
    port = slow_batch_server.metrics_port
    stub = coins_pb2_grpc.CoinServiceStub(channel)
    before = {m: _codes(port, m) for m in ("Identify", "IdentifyStream")}
    request = coins_pb2.IdentifyRequest(reverse=coin_png(7))

    assert stub.Identify(request, timeout=20).candidates  # OK
    with pytest.raises(grpc.RpcError) as late:  # expires in the batcher's queue
        stub.Identify(request, timeout=0.1)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    pending = stub.Identify.future(request, timeout=20)
    time.sleep(0.1)
    assert pending.cancel()  # still queued: the client gives up
    with pytest.raises(grpc.RpcError):
        _raw(channel, SERVICE + "Identify")(TRUNCATED, timeout=10)

    assert len(list(stub.IdentifyStream(iter([request] * 2), timeout=20))) == 2  # OK
    with pytest.raises(grpc.RpcError) as stream_late:
        list(stub.IdentifyStream(iter([request] * 3), timeout=0.1))
    assert stream_late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    cancelled = stub.IdentifyStream(iter([request] * 3), timeout=20)
    time.sleep(0.1)
    cancelled.cancel()

    expected = {"Identify": {"OK": 1, "DEADLINE_EXCEEDED": 1, "CANCELLED": 1, "INVALID_ARGUMENT": 1},
                "IdentifyStream": {"OK": 1, "DEADLINE_EXCEEDED": 1, "CANCELLED": 1}}
    for method, codes in expected.items():
        total = sum(before[method].values()) + sum(codes.values())
        wait_for_metric(port, "denarius_requests_total", lambda v, total=total: v >= total, method=method)
        after = _codes(port, method)
        grown = {code: after.get(code, 0) - before[method].get(code, 0) for code in after}
        assert {code: n for code, n in grown.items() if n} == codes, method
    time.sleep(0.3)  # nothing counted twice, late
    assert sum(_codes(port, "Identify").values()) == sum(before["Identify"].values()) + 4
    # No status was sent to a call that had already ended (gRPC logs that as an ExecuteBatchError).
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_calls_that_expire_in_the_queue_end_quietly(slow_batch_server, channel, caplog):
    caplog.set_level(logging.ERROR)
    stub = coins_pb2_grpc.CoinServiceStub(channel)
    for timeout in (0.05, 0.1, 0.15, 0.2):  # each expires during the batcher's 400 ms wait
        with pytest.raises(grpc.RpcError) as late:
            stub.Identify(coins_pb2.IdentifyRequest(reverse=coin_png(8)), timeout=timeout)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.5)  # past the batcher's wait: the next call opens a batch of its own
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_message_over_the_size_limit_is_counted_resource_exhausted(slow_batch_server, channel):
    port = slow_batch_server.metrics_port
    before = _codes(port, "Identify").get("RESOURCE_EXHAUSTED", 0)
    oversized = coins_pb2.IdentifyRequest(reverse=b"\xff\xd8\xff" + bytes(2 * MAX_MESSAGE)).SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        _raw(channel, SERVICE + "Identify")(oversized, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # gRPC refused it: no handler ran
    assert wait_for_metric(port, "denarius_requests_total", lambda v: v > before, method="Identify",
                           code="RESOURCE_EXHAUSTED") == before + 1


def test_parse_request_without_grpc():
    assert parse_request(coins_pb2.IdentifyRequest, coins_pb2.IdentifyRequest(top_k=3).SerializeToString()).top_k == 3
    with pytest.raises(InputError, match=r"not a valid denarius.v1.IdentifyRequest \(5 bytes\).*UTF-8"):
        parse_request(coins_pb2.IdentifyRequest.FromString, BAD_UTF8)
    nested = coins_pb2.LandmarksRequest.DESCRIPTOR
    assert wire_problem(b"\x3a\x02\x08\xff", nested).startswith("in field 7 (windows) at byte 0: the value of field 1 (size)")
    assert wire_problem(b"\x08" + b"\x80" * 3, None) == "the value of field 1 at byte 1 is cut off by the end of the message"
    assert wire_problem(b"\x08\x01" * 20_000 + b"\x12\x10", None) is None  # too long to walk: protobuf's reason only
