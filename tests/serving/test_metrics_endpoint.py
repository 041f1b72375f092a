"""The Prometheus endpoint as an operator and a scraper see it, over real HTTP(S) on loopback.

``promtool check metrics`` (Debian's prometheus package; skipped where it is absent) lints
the exposition; prometheus_client's own parser checks it too, and that no series repeats.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from denarius import __version__
from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2
from denarius.serving.server import BackgroundServer, ServerConfig

from serving_helpers import coin_png, make_certificate, metric, scrape, server_config, wait_for_metric

TOKEN = "metrics-token-0123456789"


@pytest.fixture(scope="module")
def exercised(server):
    """The module's server after Identify, a 5-item IdentifyStream and one Landmarks call."""
    before = scrape(server.metrics_port)
    with CoinClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        client.identify(coin_png(1), coin_png(2))
        answers = list(client.identify_stream(coins_pb2.IdentifyRequest(request_id=f"m{i}", reverse=coin_png(i))
                                              for i in range(5)))
        assert len(answers) == 5
        client.landmarks(coin_png(3), side="reverse", max_iterations=3)
    wait_for_metric(server.metrics_port, "denarius_requests_total", lambda v: v >= 1, method="IdentifyStream")
    return before, scrape(server.metrics_port)


def _get(url: str, *, headers=None, context=None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_only_get_metrics_answers(server):
    base = f"http://127.0.0.1:{server.metrics_port}"
    status, headers, body = _get(base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"denarius_requests_total" in body or b"denarius_requests" in body
    for path in ("/", "/metrics/", "/metricsx", "/favicon.ico", "/../metrics", "/%0d%0aX-Forged:%201"):
        status, _, body = _get(base + path)
        assert status == 404, path
        assert b"denarius_" not in body
    assert _get(base + "/metrics?name[]=denarius_batch_size")[0] == 200  # a query string is fine
    post = urllib.request.Request(base + "/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=10)
    assert refused.value.code == 501


def test_gzip_and_openmetrics_negotiation(server):
    import gzip

    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    status, headers, body = _get(url, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert b"denarius_build_info" in gzip.decompress(body)
    status, headers, body = _get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert headers["Content-Type"].startswith("application/openmetrics-text") and body.rstrip().endswith(b"# EOF")
    assert b"_created" not in body


def test_build_info_and_process_metrics(server, exercised):
    _, text = exercised
    assert metric(text, "denarius_build_info", version=__version__, model_version="tiny-test",
                  backend="ort-cpu", precision="fp32") == 1
    assert len([line for line in text.splitlines() if line.startswith("denarius_build_info{")]) == 1
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "python_info",
                 "python_gc_collections_total"):
        assert any(line.startswith(name) for line in text.splitlines()), name


def test_stage_histograms_per_method_and_per_item_stream_latency(exercised):
    before, after = exercised

    def grew(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    for method, calls in (("Identify", 1), ("IdentifyStream", 5), ("Landmarks", 1)):
        for stage in ("queue_wait", "preprocess", "inference"):
            assert grew("denarius_stage_seconds_count", method=method, stage=stage) == calls, (method, stage)
        assert grew("denarius_stage_seconds_sum", method=method, stage="inference") > 0
    # One observation per stream item; the whole stream is timed apart.
    assert grew("denarius_request_latency_seconds_count", method="IdentifyStream") == 5
    assert grew("denarius_stream_duration_seconds_count", method="IdentifyStream") == 1
    assert grew("denarius_request_latency_seconds_count", method="Identify") == 1


def test_no_created_series_and_no_duplicates(exercised):
    _, text = exercised
    assert "_created" not in text
    seen = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)
    assert len(seen) > 50


def test_promtool_check_metrics(exercised):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    _, text = exercised
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    assert not (checked.stdout + checked.stderr).strip(), (checked.stdout + checked.stderr).decode()  # no lint either


def test_metrics_bind_loopback_by_default_whatever_host_is(tiny_bundle):
    config = ServerConfig(bundle=tiny_bundle, host="0.0.0.0")
    assert config.metrics_host == "127.0.0.1"
    with BackgroundServer(server_config(tiny_bundle, host="0.0.0.0", warmup=False)) as running:
        sockets = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
        assert scrape(running.metrics_port)
        if sockets:
            [line] = [line for line in sockets.splitlines() if f":{running.metrics_port} " in line]
            assert f"127.0.0.1:{running.metrics_port}" in line


def test_tokens_and_tls_protect_the_endpoint(tiny_bundle, tmp_path):
    cert, key = make_certificate(tmp_path)
    config = server_config(tiny_bundle, tls_cert=cert, tls_key=key, tokens=(TOKEN,), warmup=False)
    with BackgroundServer(config) as running:
        url = f"https://localhost:{running.metrics_port}/metrics"
        trusted = ssl.create_default_context(cafile=str(cert))
        status, headers, body = _get(url, context=trusted)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert b"denarius_" not in body
        assert _get(url, headers={"Authorization": "Bearer wrong"}, context=trusted)[0] == 401
        assert _get(url, headers={"Authorization": f"Basic {TOKEN}"}, context=trusted)[0] == 401
        status, _, body = _get(url, headers={"Authorization": f"Bearer {TOKEN}"}, context=trusted)
        assert status == 200 and b"denarius_build_info" in body
        # The same port does not speak plain HTTP.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5)
        # A path other than /metrics is 404 even with a token.
        assert _get(url.replace("/metrics", "/"), headers={"Authorization": f"Bearer {TOKEN}"}, context=trusted)[0] == 404


def test_metrics_tls_pair_of_its_own(tiny_bundle, tmp_path):
    cert, key = make_certificate(tmp_path, name="metrics")
    with BackgroundServer(server_config(tiny_bundle, metrics_tls_cert=cert, metrics_tls_key=key, warmup=False)) as running:
        assert "denarius_build_info" in scrape(running.metrics_port, ca=cert)
        with CoinClient(f"127.0.0.1:{running.port}", timeout=20, retries=0) as client:  # gRPC stays plaintext
            assert client.health() == "SERVING"


def test_a_slow_client_does_not_block_the_endpoint(server):
    """A connection that sends nothing holds one thread, not the endpoint."""
    import socket

    idle = [socket.create_connection(("127.0.0.1", server.metrics_port)) for _ in range(4)]
    try:
        assert "denarius_build_info" in scrape(server.metrics_port)
    finally:
        for sock in idle:
            sock.close()
