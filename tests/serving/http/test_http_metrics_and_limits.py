"""The HTTP API in the server's Prometheus metrics, and one landmark limit for HTTP and gRPC
together (a real gRPC server and its HTTP frontend on loopback ports, the tiny bundle)."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import time

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")

from denarius.serving.client import CoinClient  # noqa: E402 - after the skips
from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc  # noqa: E402
from denarius.serving.server import BackgroundServer  # noqa: E402

from serving_helpers import metric, scrape, server_config, wait_for_metric  # noqa: E402


@pytest.fixture(scope="module")
def exercised(grpc_server, http_url, photo_bytes):
    """/metrics after a few HTTP requests: two identifications, a model query, a bad photo,
    a path no route serves and the page's script."""
    before = scrape(grpc_server.metrics_port)
    files = {side: (f"{side}.jpg", photo_bytes[side]) for side in ("obverse", "reverse")}
    for _ in range(2):
        assert requests.post(f"{http_url}/v1/identify", files=files, timeout=30).status_code == 200
    assert requests.get(f"{http_url}/v1/model", timeout=10).status_code == 200
    assert requests.post(f"{http_url}/v1/identify", files={"reverse": ("r.jpg", b"not an image")}, timeout=30).status_code == 400
    assert requests.get(f"{http_url}/no/such/path/{'x' * 30}", timeout=10).status_code == 404
    assert requests.get(f"{http_url}/static/app.js", timeout=10).status_code == 200
    return before, scrape(grpc_server.metrics_port)


def test_http_requests_are_counted_by_route_and_status_and_timed(exercised):
    before, after = exercised

    def grew(name: str, **labels) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("denarius_http_requests_total", route="POST /v1/identify", status="200") == 2
    assert grew("denarius_http_requests_total", route="POST /v1/identify", status="400") == 1
    assert grew("denarius_http_requests_total", route="GET /v1/model", status="200") == 1
    assert grew("denarius_http_requests_total", route="GET /static", status="200") == 1
    assert grew("denarius_http_requests_total", route="unmatched", status="404") == 1
    assert "/no/such/path" not in after  # a raw path never becomes a label
    assert grew("denarius_http_request_latency_seconds_count", route="POST /v1/identify") == 3
    assert grew("denarius_http_request_latency_seconds_sum", route="POST /v1/identify") > 0
    assert metric(after, "denarius_http_inflight_requests") == 0  # every request above has ended
    # The same registry as the gRPC series, and still one exposition prometheus_client can parse.
    names = [family.name for family in text_string_to_metric_families(after)]
    assert "denarius_http_requests" in names and "denarius_requests" in names
    assert len(names) == len(set(names))


def test_promtool_check_metrics_with_http_series(exercised):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    _, text = exercised
    assert "denarius_http_request_latency_seconds_bucket" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    report = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0 and not report.strip(), report


SLOW = {"side": "REVERSE", "method": "OCCLUSION", "windows.size": "2", "windows.stride": "1"}  # 3,970 forward passes


def test_http_and_grpc_landmark_searches_share_one_limit(tiny_bundle, photo_bytes, beside):
    # One worker and one queue place: at most 2 searches in the whole process, whichever port.
    config = server_config(tiny_bundle, landmark_workers=1, landmark_queue=1, landmark_batch=1)
    image = photo_bytes["reverse"]
    quick_form = {"side": "REVERSE", "method": "SALIENCY"}
    with BackgroundServer(config) as running, beside(running) as frontend, \
            CoinClient(f"127.0.0.1:{running.port}", timeout=60, retries=0) as client, \
            grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        url = f"http://127.0.0.1:{frontend.port}/v1/landmarks"
        client.landmarks(image, side="reverse", method="saliency")  # open the models
        # One slow search through gRPC and one through HTTP: the limit of 2 is reached.
        slow_rpc = coins_pb2_grpc.CoinServiceStub(channel).Landmarks.future(coins_pb2.LandmarksRequest(
            image=image, side=coins_pb2.REVERSE, method=coins_pb2.OCCLUSION,
            windows=coins_pb2.Windows(size=2, stride=1)), timeout=120)
        prepared = requests.Request("POST", url, files={"image": ("r.jpg", image)}, data=SLOW).prepare()
        slow_http = http.client.HTTPConnection("127.0.0.1", frontend.port, timeout=60)
        slow_http.request("POST", "/v1/landmarks", body=prepared.body, headers=dict(prepared.headers))
        deadline = time.monotonic() + 30
        while frontend.api.landmark_slots.busy < 2:  # both admitted (a loaded host may read the HTTP body late)
            assert time.monotonic() < deadline, f"the two slow searches never held both slots ({frontend.api.landmark_slots})"
            time.sleep(0.005)
        while (quick := requests.post(url, files={"image": ("r.jpg", image)}, data=quick_form, timeout=30)).status_code == 200:
            assert time.monotonic() < deadline, "HTTP kept admitting searches beside 2 slow ones"
        assert quick.status_code == 429 and "all 2 landmark slots are busy" in quick.json()["error"]["message"]
        # gRPC is refused too: the slot HTTP holds counts against it (with two limits it was admitted).
        with pytest.raises(grpc.RpcError) as refused:
            client.landmarks(image, side="reverse", method="saliency")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "all 2 landmark slots are busy" in refused.value.details()
        assert running.server._servicer.landmark_slots is frontend.api.landmark_slots
        assert frontend.api.landmark_slots.peak == 2  # never more than the one limit at once

        # Both callers leave: their searches stop, both ports admit searches again.
        slow_rpc.cancel()
        slow_http.close()
        assert wait_for_metric(running.metrics_port, "denarius_landmarks_cancelled_total", lambda v: v >= 2, timeout=30) == 2
        deadline = time.monotonic() + 30
        while (reply := requests.post(url, files={"image": ("r.jpg", image)}, data=quick_form, timeout=30)).status_code == 429:
            assert time.monotonic() < deadline, "a search whose caller left kept its slot"
            time.sleep(0.05)
        assert reply.status_code == 200
        assert client.landmarks(image, side="reverse", method="saliency").target
        assert frontend.api.landmark_slots.peak == 2 and frontend.api.landmark_slots.busy == 0
