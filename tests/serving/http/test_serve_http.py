"""``denarius serve BUNDLE --http-port PORT``: gRPC and HTTP from one process, one runtime."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")

from denarius.apps.cli import build_parser, cmd_serve  # noqa: E402 - after the skips
from denarius.serving.client import CoinClient  # noqa: E402
from denarius.serving.http import HttpConfig  # noqa: E402
from denarius.serving.server import BackgroundServer  # noqa: E402

from serving_helpers import make_certificate, metric, scrape, server_config  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def test_one_server_answers_grpc_and_http_on_one_runtime(tiny_bundle, photo_bytes):
    config = server_config(tiny_bundle, http_port=0)
    with BackgroundServer(config) as running:
        url, auth = f"http://127.0.0.1:{running.http_port}", {}
        assert requests.get(f"{url}/readyz", timeout=10).json() == {"status": "SERVING"}
        with CoinClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            by_grpc = client.identify(photo_bytes["obverse"], photo_bytes["reverse"])
        answer = requests.post(f"{url}/v1/identify", headers=auth, timeout=30,
                               files={side: (f"{side}.jpg", photo_bytes[side]) for side in ("obverse", "reverse")}).json()
        assert [(c["ric"], c["score"]) for c in answer["candidates"]] == [(c.ric, c.score) for c in by_grpc.candidates]
        assert len(answer["candidates"]) == config.default_top_k
        runs = metric(scrape(running.metrics_port, token="t0k"), "denarius_landmark_run_size_count")
        reply = requests.post(f"{url}/v1/landmarks", headers=auth, timeout=30, files={"image": ("r.jpg", photo_bytes["reverse"])},
                              data={"side": "REVERSE", "method": "SALIENCY"})
        assert reply.status_code == 200, reply.text
        # The search ran on the gRPC servicer's landmark batcher (its run counter moved).
        assert metric(scrape(running.metrics_port, token="t0k"), "denarius_landmark_run_size_count") == runs + 1
        port = running.http_port
    with pytest.raises(requests.exceptions.ConnectionError):  # stopped with the gRPC server
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_serve_http_port_flag_and_the_limits_http_takes_from_the_server(tiny_bundle, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("t0k\n")
    args = build_parser().parse_args(["serve", str(tiny_bundle), "--http-port", "8080", "--http-host", "0.0.0.0",
                                      "--token-file", str(tokens), "--max-message-mb", "2", "--landmark-queue", "3"])
    config = cmd_serve.config_from_args(args)
    assert (config.http_port, config.http_host) == (8080, "0.0.0.0")
    http = HttpConfig.from_server_config(config, port=config.http_port, host=config.http_host)
    assert http.tokens == ("t0k",) and http.max_body_bytes == 2 * 1024 * 1024
    assert http.landmark_slots == config.landmark_workers + 3 and http.max_concurrent == config.max_concurrent_rpcs
    assert http.timeout_s == config.landmark_timeout_s and http.grace_s == config.grace_s
    assert cmd_serve.config_from_args(build_parser().parse_args(["serve", str(tiny_bundle)])).http_port is None


def test_denarius_serve_process_with_http_drains_on_sigterm(tiny_bundle, tmp_path, photo_bytes):
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "denarius.apps.cli", "serve", str(tiny_bundle), "--port", "0", "--http-port", "0",
               "--metrics-port", "-1", "--backend", "ort-cpu", "--precision", "fp32", "--grace", "5"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 90
        while not (ready := re.search(r"ready: port=\d+ metrics_port=\S+ http_port=(\d+)", log_path.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        url = f"http://127.0.0.1:{ready.group(1)}"
        assert requests.get(f"{url}/readyz", timeout=10).json() == {"status": "SERVING"}
        assert "<title>Denarius" in requests.get(f"{url}/", timeout=10).text
        reply = requests.post(f"{url}/v1/identify", files={"reverse": ("r.jpg", photo_bytes["reverse"])}, timeout=30)
        assert reply.status_code == 200 and reply.json()["mode"] == "ric"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_with_tls_the_http_port_is_https_with_the_same_certificate(tiny_bundle, tmp_path):
    cert, key = make_certificate(tmp_path)
    with BackgroundServer(server_config(tiny_bundle, http_port=0, tls_cert=cert, tls_key=key, metrics_port=None)) as running:
        assert requests.get(f"https://localhost:{running.http_port}/readyz", verify=str(cert), timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):  # no plaintext beside it
            requests.get(f"http://localhost:{running.http_port}/readyz", timeout=10)
