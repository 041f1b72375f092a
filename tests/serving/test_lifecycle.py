"""`denarius serve` as a real process: health transitions, SIGTERM drain with calls in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2

from serving_helpers import coin_png, free_port

REPO = Path(__file__).resolve().parents[2]
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                  ("grpc.max_reconnect_backoff_ms", 50)]


def _health(stub) -> str:
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service="denarius.v1.CoinService"), timeout=0.5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError as error:
        return error.code().name


def test_health_transitions_and_sigterm_drain_loses_no_call(tiny_bundle, tmp_path, photo_bytes):
    port = free_port()
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "denarius.apps.cli", "serve", str(tiny_bundle), "--port", str(port),
               "--metrics-port", "-1", "--backend", "ort-cpu", "--precision", "fp32", "--max-batch", "1024",
               "--grace", "20", "--drain-delay", "1.0", "--landmark-queue", "8"]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=FAST_RECONNECT)
    health = health_pb2_grpc.HealthStub(channel)
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # 1. Startup: the port answers NOT_SERVING while the bundle loads and warms up, then
        #    SERVING. A 1,024-coin warm-up batch keeps that window (~0.2 s) well above the
        #    client's reconnect backoff (<= 50 ms); with 256 coins it was ~0.1 s, and once in
        #    CI no health check landed inside it.
        seen, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            status = _health(health)
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "SERVING":
                break
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.005)
        assert seen[-1] == "SERVING", (seen, log_path.read_text())
        assert "NOT_SERVING" in seen, f"never saw NOT_SERVING during loading: {seen}"
        print("health during startup:", seen)

        # 2. Calls in flight: slow landmark searches, a 100-coin stream, 16 unary calls.
        results, errors, finished_at = {}, [], {}
        client = CoinClient(f"127.0.0.1:{port}", timeout=60, retries=0)

        def run(name, call):
            try:
                results[name] = call()
                finished_at[name] = time.monotonic()
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append((name, error))

        def stream():
            requests = (coins_pb2.IdentifyRequest(request_id=f"s{i}", reverse=coin_png(i % 5)) for i in range(100))
            return list(client.identify_stream(requests, timeout=60))

        # Occlusion over 61 x 61 windows: ~3,700 forward passes each, six queued on one worker,
        # so work is still in flight well past the drain delay even on an idle machine.
        calls = {f"landmarks-{i}": lambda: client.landmarks(photo_bytes["reverse"], side="reverse",
                                                            method="occlusion", window=4, stride=1) for i in range(6)}
        calls["stream"] = stream
        calls.update({f"identify-{i}": (lambda i=i: client.identify(coin_png(i), coin_png(i + 1)))
                      for i in range(16)})
        threads = [threading.Thread(target=run, args=item) for item in calls.items()]
        for t in threads:
            t.start()
        time.sleep(0.5)  # let every call reach the server
        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)

        # 3. Drain delay: NOT_SERVING, yet still answering.
        time.sleep(0.3)
        assert _health(health) == "NOT_SERVING"
        late = client.identify(reverse=photo_bytes["reverse"])
        assert late.candidates

        # 4. After the delay the port stops taking calls; the in-flight ones still finish.
        time.sleep(1.2)
        with CoinClient(f"127.0.0.1:{port}", timeout=2, retries=0) as fresh:
            with pytest.raises(grpc.RpcError) as refused:
                fresh.identify(reverse=photo_bytes["reverse"])
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert set(results) == set(calls)
        assert sorted(r.request_id for r in results["stream"]) == sorted(f"s{i}" for i in range(100))
        assert all(not r.HasField("error") for r in results["stream"])
        assert all(results[f"landmarks-{i}"].target for i in range(6))
        # Some call was still running when the server stopped accepting (SIGTERM + 1 s delay).
        assert max(finished_at.values()) > sigterm_at + 1.0, "no call was in flight during the drain"
        assert process.wait(timeout=30) == 0, log_path.read_text()
        assert time.monotonic() - sigterm_at < 20
        client.close()
        text = log_path.read_text()
        assert "draining" in text and "stopped" in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        channel.close()
