"""Every RPC against a real server on a loopback port (tiny bundle, ort-cpu)."""

from __future__ import annotations

import threading

import cv2
import grpc
import numpy as np
import pytest

from denarius.engine.errors import ConfigError
from denarius.serving.client import CoinClient
from denarius.serving.denarius.v1 import coins_pb2

from serving_helpers import coin_png, metric, scrape, wait_for_metric

RICS = {"RIC V Aurelianus 1", "RIC V Aurelianus 2", "RIC V Probus 10", "RIC V Probus 11",
        "RIC V Probus 12", "RIC V Tacitus 30"}


def test_identify_returns_ranked_candidates_from_the_hierarchy(client, photo_bytes):
    response = client.identify(photo_bytes["obverse"], photo_bytes["reverse"], top_k=4, request_id="coin-1")
    assert response.request_id == "coin-1"
    assert response.mode == "joint"
    assert response.model_version == "tiny-test"
    assert [c.rank for c in response.candidates] == [1, 2, 3, 4]
    scores = [c.score for c in response.candidates]
    assert scores == sorted(scores, reverse=True)
    for c in response.candidates:
        assert c.ric in RICS and c.emperor in c.ric
        assert c.score == pytest.approx(c.p_ric * c.p_emperor, rel=1e-9)
        assert c.reverse_description == f"Type {c.ric}"
    assert response.timing.total_ms > 0


def test_identify_one_side_only(client, photo_bytes):
    reverse_only = client.identify(reverse=photo_bytes["reverse"], top_k=10)
    assert reverse_only.mode == "ric" and len(reverse_only.candidates) == 6  # top_k capped by the classes
    assert not reverse_only.candidates[0].HasField("p_emperor")
    obverse_only = client.identify(obverse=photo_bytes["obverse"])
    assert obverse_only.mode == "emperor"
    assert {c.emperor for c in obverse_only.candidates} == {"Aurelianus", "Probus", "Tacitus"}
    assert all(c.ric == "" for c in obverse_only.candidates)
    assert sum(c.score for c in obverse_only.candidates) == pytest.approx(1.0, abs=1e-6)


def test_model_info_describes_bundle_and_runtime(client):
    info = client.model_info()
    assert info.version == "tiny-test" and info.schema_version >= 1
    assert list(info.emperors) == ["Aurelianus", "Probus", "Tacitus"]
    assert set(info.rics) == RICS
    assert {h.emperor: len(h.rics) for h in info.hierarchy} == {"Aurelianus": 2, "Probus": 3, "Tacitus": 1}
    assert info.backend == "ort-cpu" and info.precision == "fp32"
    assert info.input_size == 64 and info.max_batch == 8 and info.stream_window == 16


@pytest.mark.parametrize("method", ["optimized", "occlusion", "saliency"])
def test_landmarks_each_method(client, photo_bytes, method):
    response = client.landmarks(photo_bytes["reverse"], side="reverse", method=method, max_iterations=5,
                                overlay=method == "optimized", top_regions=3)
    assert list(response.heatmap.shape) == [64, 64]
    heatmap = np.asarray(response.heatmap.data, np.float32).reshape(64, 64)
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert response.target in RICS
    assert response.probabilities[0].label == response.target  # predicted class by default
    assert 1 <= len(response.regions) <= 3
    assert response.method == coins_pb2.Method.Value(method.upper())
    assert response.HasField("masked_probability") == (method == "optimized")
    if method == "optimized":
        assert response.overlay_png.startswith(b"\x89PNG")
        picture = cv2.imdecode(np.frombuffer(response.overlay_png, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (512, 512, 3)  # the whole coin, large enough to read
        assert response.masked_probability > response.probability - response.epsilon
    else:
        assert response.overlay_png == b""


def test_landmarks_reference_choice_reaches_the_engine(client, photo_bytes):
    default = client.landmarks(photo_bytes["reverse"], side="reverse", method="occlusion", window=21, stride=11)
    black = client.landmarks(photo_bytes["reverse"], side="reverse", method="occlusion", window=21, stride=11, reference="black")
    assert default.reference == "blur" and black.reference == "black"
    # a different occluder gives a different map of the same image
    assert not np.allclose(default.heatmap.data, black.heatmap.data)
    saliency = client.landmarks(photo_bytes["reverse"], side="reverse", method="saliency")
    assert saliency.reference == ""
    with pytest.raises(ConfigError, match="reference must be one of"):
        client.landmarks(photo_bytes["reverse"], side="reverse", reference="grey")


def test_landmarks_with_target_and_superpixels(client, photo_bytes):
    response = client.landmarks(photo_bytes["obverse"], side="obverse", target="Tacitus",
                                superpixels=20, max_iterations=5, epsilon=0.3)
    assert response.target == "Tacitus" and response.region_kind == "superpixels"
    assert response.epsilon == pytest.approx(0.3)


def test_stream_of_200_coins_answers_every_request_id(server, client, photo_bytes):
    unary = {seed: client.identify(coin_png(seed), coin_png(seed + 1000), top_k=3) for seed in range(3)}
    bad_ids = {f"coin-{i}" for i in (7, 50, 199)}

    def requests():
        for i in range(200):
            rid = f"coin-{i}"
            obverse = b"not an image at all" if rid in bad_ids else coin_png(i % 3)
            yield coins_pb2.IdentifyRequest(request_id=rid, obverse=obverse, reverse=coin_png(i % 3 + 1000), top_k=3)

    responses = list(client.identify_stream(requests(), timeout=60))
    assert len(responses) == 200
    assert {r.request_id for r in responses} == {f"coin-{i}" for i in range(200)}
    for response in responses:
        i = int(response.request_id.split("-")[1])
        if response.request_id in bad_ids:
            assert response.error.code_name == "INVALID_ARGUMENT"
            assert response.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert response.error.message.startswith("obverse:")
            assert not response.candidates
        else:
            assert not response.HasField("error")
            expected = unary[i % 3]
            assert [c.ric for c in response.candidates] == [c.ric for c in expected.candidates]
            assert [c.score for c in response.candidates] == pytest.approx(
                [c.score for c in expected.candidates], abs=1e-5)
    text = scrape(server.metrics_port)
    assert metric(text, "denarius_stream_outstanding_peak") <= 16  # the stream window
    assert metric(text, "denarius_stream_outstanding") == 0


def test_concurrent_clients_get_their_own_answers(server):
    seeds = list(range(12))
    with CoinClient(f"127.0.0.1:{server.port}", timeout=30) as reference:
        expected = {s: reference.identify(reverse=coin_png(s), top_k=6) for s in seeds}
    got, errors = {}, []

    def worker(seed):
        try:
            with CoinClient(f"127.0.0.1:{server.port}", timeout=30) as own:
                for _ in range(3):
                    response = own.identify(reverse=coin_png(seed), top_k=6, request_id=f"client-{seed}")
                    assert response.request_id == f"client-{seed}"
                    got.setdefault(seed, []).append(response)
        except Exception as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    distinct = {tuple(round(c.score, 6) for c in expected[s].candidates) for s in seeds}
    assert len(distinct) > 1, "the synthetic coins should not all score alike"
    for seed in seeds:
        for response in got[seed]:
            assert [c.ric for c in response.candidates] == [c.ric for c in expected[seed].candidates]
            assert [c.score for c in response.candidates] == pytest.approx(
                [c.score for c in expected[seed].candidates], abs=1e-5)


def test_metrics_count_requests_by_method_and_code(server, client, photo_bytes):
    before = metric(scrape(server.metrics_port), "denarius_requests_total", method="Identify", code="OK")
    client.identify(photo_bytes["obverse"], photo_bytes["reverse"])
    with pytest.raises(grpc.RpcError):
        client.identify(obverse=b"")
    assert wait_for_metric(server.metrics_port, "denarius_requests_total", lambda v: v >= 1,
                           method="Identify", code="INVALID_ARGUMENT") >= 1
    text = scrape(server.metrics_port)
    assert metric(text, "denarius_requests_total", method="Identify", code="OK") == before + 1
    assert metric(text, "denarius_request_latency_seconds_count", method="Identify") >= before + 2
    assert "denarius_queue_depth" in text and "denarius_batch_size_bucket" in text


def test_landmarks_single_pixel_regions(client, photo_bytes):
    response = client.landmarks(photo_bytes["reverse"], side="reverse", method="saliency", pixels=True)
    assert response.region_kind == "pixels" and list(response.heatmap.shape) == [64, 64]
    with pytest.raises(grpc.RpcError) as caught:
        client.landmarks(photo_bytes["reverse"], side="reverse", method="occlusion", pixels=True)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "OCCLUSION" in caught.value.details()
