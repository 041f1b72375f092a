"""Server reflection (a client built only from reflection data) and dynamic batching under load."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time

import pytest

from denarius.serving.client import CoinClient
from denarius.serving.server import BackgroundServer

from serving_helpers import coin_png, metric, scrape, wait_for_metric

# Runs in a fresh interpreter where importing our generated stubs is impossible.
REFLECTION_CLIENT = r"""
import json, sys
sys.modules["denarius"] = None  # no access to the checked-in stubs
import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

target, obverse_path, reverse_path = sys.argv[1:4]
channel = grpc.insecure_channel(target)
database = ProtoReflectionDescriptorDatabase(channel)
services = sorted(database.get_services())
pool = descriptor_pool.DescriptorPool(database)
service = pool.FindServiceByName("denarius.v1.CoinService")
method = service.methods_by_name["Identify"]
Request = message_factory.GetMessageClass(method.input_type)
Response = message_factory.GetMessageClass(method.output_type)
call = channel.unary_unary(f"/{service.full_name}/{method.name}",
                           request_serializer=Request.SerializeToString,
                           response_deserializer=Response.FromString)
request = Request(obverse=open(obverse_path, "rb").read(), reverse=open(reverse_path, "rb").read(),
                  top_k=3, request_id="via-reflection")
reply = call(request, timeout=30)
print(json.dumps({
    "services": services,
    "methods": [m.name for m in service.methods],
    "request_id": reply.request_id,
    "candidates": [[c.rank, c.ric, c.emperor, c.score] for c in reply.candidates],
}))
"""


def test_reflection_only_client_identifies_the_real_photos(server, fixture_photos):
    result = subprocess.run(
        [sys.executable, "-c", REFLECTION_CLIENT, f"127.0.0.1:{server.port}",
         str(fixture_photos["obverse"]), str(fixture_photos["reverse"])],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert "denarius.v1.CoinService" in reply["services"]
    assert "grpc.health.v1.Health" in reply["services"]
    assert reply["methods"] == ["Identify", "IdentifyStream", "Landmarks", "GetModelInfo"]
    assert reply["request_id"] == "via-reflection"
    ranks = [c[0] for c in reply["candidates"]]
    scores = [c[3] for c in reply["candidates"]]
    assert ranks == [1, 2, 3] and scores == sorted(scores, reverse=True) and scores[0] > 0
    with CoinClient(f"127.0.0.1:{server.port}") as client:  # the same answer as our own stubs give
        ours = client.identify(fixture_photos["obverse"], fixture_photos["reverse"], top_k=3)
    assert [c[1] for c in reply["candidates"]] == [c.ric for c in ours.candidates]


def test_sixteen_concurrent_clients_are_batched_within_the_deadline(tiny_bundle):
    from serving_helpers import server_config

    deadline_s, calls_per_client = 10.0, 6
    # Default batcher settings (max batch 16, max wait 5 ms).
    with BackgroundServer(server_config(tiny_bundle)) as running:
        images = [coin_png(seed) for seed in range(16)]
        latencies, errors = [], []
        barrier = threading.Barrier(16)

        def worker(k):
            try:
                with CoinClient(f"127.0.0.1:{running.port}", timeout=deadline_s, retries=0) as client:
                    client.identify(images[k], images[(k + 1) % 16])  # connect before the barrier
                    barrier.wait()
                    for _ in range(calls_per_client):
                        start = time.perf_counter()
                        client.identify(images[k], images[(k + 1) % 16], top_k=3)
                        latencies.append(time.perf_counter() - start)
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        # The batcher records a batch just after resolving its futures: wait for the last one.
        expected = 16 * (calls_per_client + 1)
        wait_for_metric(running.metrics_port, "denarius_batch_size_sum", lambda v: v >= expected)
        text = scrape(running.metrics_port)
    assert len(latencies) == 16 * calls_per_client
    batches = metric(text, "denarius_batch_size_count")
    singles = metric(text, "denarius_batch_size_bucket", le="1.0")
    coins = metric(text, "denarius_batch_size_sum")
    assert coins == expected
    assert batches - singles >= 1, "no batch larger than 1 under 16 concurrent clients"
    assert coins / batches > 1.3, f"mean batch size {coins / batches:.2f}"
    p99 = sorted(latencies)[int(0.99 * len(latencies)) - 1]
    assert p99 < deadline_s
    print(f"16 clients: mean batch {coins / batches:.1f}, p50 {1000 * statistics.median(latencies):.0f} ms, "
          f"p99 {1000 * p99:.0f} ms")


def test_concurrent_landmark_searches_share_one_optimiser_run(tiny_bundle):
    from serving_helpers import server_config

    with BackgroundServer(server_config(tiny_bundle, landmark_workers=1, landmark_queue=8)) as running:
        target = f"127.0.0.1:{running.port}"
        images = [coin_png(seed, size=64) for seed in range(3)]
        search = dict(side="reverse", epsilon=0.01, window=11, stride=3)
        answers, errors = {}, []

        def call(name, image, **fields):
            try:
                with CoinClient(target, timeout=60, retries=0) as client:
                    answers[name] = client.landmarks(image, **fields)
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        # An occlusion search (never shared: 63 x 63 occluded copies, over half a second
        # on this model) keeps the only worker busy while three optimised searches with
        # the same settings queue behind it; they then run as one optimiser batch.
        busy = threading.Thread(target=call, args=("occlusion", images[0]),
                                kwargs=dict(side="reverse", method="occlusion", window=2, stride=1))
        busy.start()
        wait_for_metric(running.metrics_port, "denarius_inflight_requests", lambda v: v >= 1, method="Landmarks")
        time.sleep(0.1)
        searches = [threading.Thread(target=call, args=(i, image), kwargs=search) for i, image in enumerate(images)]
        for thread in searches:
            thread.start()
        for thread in [busy, *searches]:
            thread.join()
        assert not errors, errors[:3]
        wait_for_metric(running.metrics_port, "denarius_landmark_run_size_sum", lambda v: v >= 4)
        text = scrape(running.metrics_port)
        assert metric(text, "denarius_landmark_run_size_count") == 2  # the occlusion run, then one shared run
        assert metric(text, "denarius_landmark_run_size_sum") == 4
        # A shared run answers each caller as a run of its own would.
        with CoinClient(target, timeout=60) as client:
            for i, image in enumerate(images):
                alone = client.landmarks(image, **search)
                shared = answers[i]
                assert (shared.target, shared.iterations) == (alone.target, alone.iterations)
                assert shared.masked_probability == pytest.approx(alone.masked_probability, abs=1e-5)
                assert list(shared.heatmap.data) == pytest.approx(list(alone.heatmap.data), abs=1e-4)
