"""The HTTP/JSON API against the gRPC service on the same runtime: the same answers, the same
limits, the same error classification (as HTTP statuses with a JSON body)."""

from __future__ import annotations

import base64
import http.client
import threading
import time

import numpy as np
import pytest

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")

from denarius.serving.http import HttpConfig, HttpFrontend  # noqa: E402 - after the skips

from serving_helpers import coin_png  # noqa: E402

CANDIDATE_FIELDS = ("rank", "ric", "emperor", "score", "p_ric", "p_emperor", "obverse_description", "reverse_description")


def _grpc_candidates(response) -> list[dict]:
    return [{f: getattr(c, f) for f in CANDIDATE_FIELDS if f not in ("p_ric", "p_emperor") or c.HasField(f)}
            for c in response.candidates]


def _http_candidates(answer: dict) -> list[dict]:
    return [{f: c[f] for f in CANDIDATE_FIELDS if f in c} for c in answer["candidates"]]


def _error(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["code"] == status and error["status"] and error["message"]
    return error["message"]


@pytest.mark.parametrize("sides", [("obverse", "reverse"), ("reverse",), ("obverse",)])
def test_identify_answers_equal_grpc_as_form_and_as_json(http_url, grpc_client, photo_bytes, sides):
    photos = {side: photo_bytes[side] for side in sides}
    by_grpc = grpc_client.identify(**photos, top_k=4)
    form = requests.post(f"{http_url}/v1/identify", files={s: (f"{s}.jpg", b) for s, b in photos.items()},
                         data={"top_k": "4", "request_id": "web-1"}, timeout=30)
    assert form.status_code == 200, form.text
    body = {s: base64.b64encode(b).decode() for s, b in photos.items()} | {"top_k": 4}
    as_json = requests.post(f"{http_url}/v1/identify", json=body, timeout=30)
    assert as_json.status_code == 200, as_json.text
    for answer in (form.json(), as_json.json()):
        assert answer["mode"] == by_grpc.mode and answer["model_version"] == by_grpc.model_version == "tiny-test"
        assert _http_candidates(answer) == _grpc_candidates(by_grpc)  # the same candidates, scores to the last bit
    assert form.json()["request_id"] == form.headers["x-request-id"] == "web-1"


def test_landmarks_answers_equal_grpc(http_url, grpc_client, photo_bytes):
    settings = dict(side="reverse", method="saliency", top_regions=3)
    by_grpc = grpc_client.landmarks(photo_bytes["reverse"], overlay=True, **settings)
    reply = requests.post(f"{http_url}/v1/landmarks", files={"image": ("r.jpg", photo_bytes["reverse"])},
                          data={"side": "REVERSE", "method": "SALIENCY", "top_regions": "3", "include_overlay": "true"}, timeout=60)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["target"] == by_grpc.target and answer["probability"] == by_grpc.probability
    # float32 values: proto3 JSON writes each as its shortest decimal, which parses back to the same float32
    assert np.array_equal(np.asarray(answer["heatmap"]["data"], np.float32), np.asarray(by_grpc.heatmap.data, np.float32))
    assert [(r["x"], r["y"], r["score"]) for r in answer["regions"]] == [(r.x, r.y, r.score) for r in by_grpc.regions]
    assert base64.b64decode(answer["overlay_png"]) == by_grpc.overlay_png
    assert answer["method"] == "SALIENCY" and answer["region_kind"] == by_grpc.region_kind
    # The page's form: the optimised method at one epsilon, heatmap values left out.
    optimized = requests.post(f"{http_url}/v1/landmarks?heatmap=false", json={
        "image": base64.b64encode(photo_bytes["reverse"]).decode(), "side": "REVERSE", "epsilon": 0.3,
        "max_iterations": 5, "include_overlay": True}, timeout=60).json()
    assert "heatmap" not in optimized and optimized["epsilon"] == pytest.approx(0.3)
    assert optimized["masked_probability"] > optimized["probability"] - 0.3


def test_model_info_equals_grpc(http_url, grpc_client):
    info = grpc_client.model_info()
    answer = requests.get(f"{http_url}/v1/model", timeout=10).json()
    assert answer["emperors"] == list(info.emperors) and answer["rics"] == list(info.rics)
    assert answer["max_message_bytes"] == str(info.max_message_bytes)  # uint64: a string in proto3 JSON
    assert {h["emperor"]: h["rics"] for h in answer["hierarchy"]} == {h.emperor: list(h.rics) for h in info.hierarchy}


def test_bad_requests_are_400_with_a_message_that_says_what(http_url):
    identify = f"{http_url}/v1/identify"
    message = _error(requests.post(identify, files={"obverse": ("o.jpg", b"not a jpeg at all"), "reverse": ("r.png", coin_png(1))},
                                   timeout=10), 400)
    assert message.startswith("obverse:")
    assert "neither an obverse nor a reverse" in _error(requests.post(identify, files={"top_k": (None, "3")}, timeout=10), 400)
    assert "not valid JSON" in _error(requests.post(identify, data=b"{", headers={"content-type": "application/json"}, timeout=10), 400)
    assert "colour" in _error(requests.post(identify, json={"reverse": "", "colour": "red"}, timeout=10), 400)
    assert "top_k" in _error(requests.post(identify, json={"top_k": "many"}, timeout=10), 400)
    assert "unknown form field" in _error(requests.post(identify, files={"size": (None, "3")}, timeout=10), 400)
    _error(requests.post(identify, data=b"obverse=1", headers={"content-type": "text/plain"}, timeout=10), 415)
    landmarks = f"{http_url}/v1/landmarks"
    unknown = _error(requests.post(landmarks, files={"image": ("r.png", coin_png(2))}, data={"side": "REVERSE", "target": "RIC X"},
                                   timeout=10), 400)
    assert "RIC V Probus 10" in unknown  # the valid labels are listed
    assert "epsilon" in _error(requests.post(landmarks, files={"image": ("r.png", coin_png(2))},
                                             data={"side": "REVERSE", "epsilon": "0"}, timeout=10), 400)
    assert "side" in _error(requests.post(landmarks, files={"image": ("r.png", coin_png(2))}, timeout=10), 400)
    _error(requests.get(f"{http_url}/v1/nothing", timeout=10), 404)
    _error(requests.get(identify, timeout=10), 405)


def test_a_20_mb_upload_is_413_declared_or_chunked(http_url):
    big = b"\xff\xd8" + b"\x00" * (20 * 1024 * 1024)
    declared = requests.post(f"{http_url}/v1/identify", files={"obverse": ("big.jpg", big)}, timeout=30)
    assert "16 MiB" in _error(declared, 413)

    def chunks():
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    chunked = requests.post(f"{http_url}/v1/identify", data=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert "limit" in _error(chunked, 413)
    assert requests.get(f"{http_url}/readyz", timeout=10).status_code == 200


def test_tokens_401_and_open_probes(make_frontend, photo_bytes):
    with make_frontend(tokens=("s3cret",)) as frontend:
        url = f"http://127.0.0.1:{frontend.port}"
        photo = {"reverse": ("r.jpg", photo_bytes["reverse"])}
        missing = requests.post(f"{url}/v1/identify", files=photo, timeout=10)
        assert "missing bearer token" in _error(missing, 401) and missing.headers["www-authenticate"] == "Bearer"
        wrong = requests.get(f"{url}/v1/model", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert _error(wrong, 401) == "invalid bearer token"
        ok = requests.post(f"{url}/v1/identify", files=photo, headers={"Authorization": "Bearer s3cret"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["candidates"]
        for open_path in ("/healthz", "/readyz", "/", "/static/app.js", "/openapi.json"):
            assert requests.get(url + open_path, timeout=10).status_code == 200, open_path
        assert "HTTPBearer" in requests.get(f"{url}/openapi.json", timeout=10).json()["components"]["securitySchemes"]


def test_overload_is_429_and_a_client_that_leaves_stops_its_search(grpc_server, make_frontend, photo_bytes):
    slow = {"side": "REVERSE", "method": "OCCLUSION", "windows.size": "2", "windows.stride": "1"}  # 3,970 forward passes
    quick = {"side": "REVERSE", "method": "SALIENCY"}
    image = {"image": ("r.jpg", photo_bytes["reverse"])}
    with make_frontend(landmark_slots=1) as frontend:
        url = f"http://127.0.0.1:{frontend.port}/v1/landmarks"
        assert requests.post(url, files=image, data=quick, timeout=30).status_code == 200  # models open
        prepared = requests.Request("POST", url, files=image, data=slow).prepare()
        leaving = http.client.HTTPConnection("127.0.0.1", frontend.port, timeout=30)
        leaving.request("POST", "/v1/landmarks", body=prepared.body, headers=dict(prepared.headers))  # holds the only slot
        deadline = time.monotonic() + 20
        while (busy := requests.post(url, files=image, data=quick, timeout=30)).status_code == 200:
            assert time.monotonic() < deadline, "the slow search never took the slot"
        assert "landmark slots are busy" in _error(busy, 429) and busy.headers["retry-after"] == "1"
        leaving.close()  # the client leaves without reading its answer
        while (reply := requests.post(url, files=image, data=quick, timeout=30)).status_code == 429:
            assert time.monotonic() < deadline + 10, "the search of a client that left kept its slot"
            time.sleep(0.05)
        assert reply.status_code == 200
        assert frontend.api.landmarks_cancelled == 1  # it stopped early, on the gRPC servicer's batcher


def test_requests_over_the_concurrency_limit_are_429(make_frontend, photo_bytes):
    slow = {"side": "REVERSE", "method": "OCCLUSION", "windows.size": "3", "windows.stride": "1"}
    with make_frontend(max_concurrent=1) as frontend:
        url = f"http://127.0.0.1:{frontend.port}"
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(reply=requests.post(
            f"{url}/v1/landmarks", files={"image": ("r.jpg", photo_bytes["reverse"])}, data=slow, timeout=60)))
        worker.start()
        deadline = time.monotonic() + 20
        while (second := requests.get(f"{url}/v1/model", timeout=10)).status_code == 200:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.01)
        assert "in flight" in _error(second, 429)
        worker.join()
        assert first["reply"].status_code == 200


def test_readyz_is_503_until_the_model_is_loaded(tiny_bundle):
    from denarius.serving.runtime import Runtime

    loaded: dict = {}
    try:
        with HttpFrontend(lambda: loaded.get("runtime"), HttpConfig(port=0)) as frontend:
            url = f"http://127.0.0.1:{frontend.port}"
            assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "alive"}
            assert "loading" in _error(requests.get(f"{url}/readyz", timeout=10), 503)
            early = requests.post(f"{url}/v1/identify", files={"reverse": ("r.png", coin_png(3))}, timeout=10)
            assert "loading" in _error(early, 503) and early.headers["retry-after"] == "1"
            loaded["runtime"] = Runtime.open(tiny_bundle, backend="ort-cpu", precision="fp32", warmup=False)
            assert requests.get(f"{url}/readyz", timeout=10).json() == {"status": "SERVING"}
            reply = requests.post(f"{url}/v1/landmarks", files={"image": ("r.png", coin_png(3))},
                                  data={"side": "REVERSE", "method": "SALIENCY"}, timeout=30)
            assert reply.status_code == 200, reply.text  # on a landmark batcher of the frontend's own
    finally:  # the frontend has closed its own batcher: the runtime can go
        if "runtime" in loaded:
            loaded["runtime"].close()


def test_keep_alive_requests_are_not_held_by_nagle(http_url):
    # A listening socket without IPPROTO_TCP left Nagle on, and each request on a kept-alive
    # connection then waited ~40 ms for the client's delayed ACK.
    with requests.Session() as session:
        session.get(f"{http_url}/healthz", timeout=10)
        took = []
        for _ in range(9):
            started = time.perf_counter()
            assert session.get(f"{http_url}/healthz", timeout=10).status_code == 200
            took.append(time.perf_counter() - started)
    assert sorted(took)[4] < 0.025, took
