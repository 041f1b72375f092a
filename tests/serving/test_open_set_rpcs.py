"""The calibration and open-set fields through a real gRPC server (tiny bundle, ort-cpu)."""

from __future__ import annotations

import shutil

import pytest

from denarius.engine.bundle import load_bundle, write_bundle_manifest
from denarius.serving.client import CoinClient
from denarius.serving.server import BackgroundServer

from serving_helpers import coin_png, server_config


@pytest.fixture(scope="module")
def open_world_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with temperatures and a rule that calls every pair unknown."""
    folder = tmp_path_factory.mktemp("open_world") / "bundle"
    shutil.copytree(tiny_bundle, folder)
    bundle = load_bundle(folder)
    write_bundle_manifest(folder, version=bundle.version, preprocess=bundle.preprocess, hierarchy=bundle.hierarchy,
                          models=bundle.models, descriptions=bundle.descriptions,
                          calibration={"emperor": {"temperature": 1.5}, "ric": {"temperature": 2.0}},
                          open_set={"score": "agreement", "threshold": 2.0, "far": 0.05, "auroc": 0.95})
    return folder


def test_unknown_and_calibration_come_through_identify_stream_and_model_info(open_world_bundle):
    with BackgroundServer(server_config(open_world_bundle, max_batch=4)) as server, \
            CoinClient(f"127.0.0.1:{server.port}", timeout=20.0) as client:
        response = client.identify(coin_png(1), coin_png(2), top_k=3)
        assert response.mode == "joint" and response.unknown
        assert response.HasField("open_set_score") and 0.0 <= response.open_set_score <= 1.0
        assert len(response.candidates) == 3  # the best guesses are still listed
        one_side = client.identify(reverse=coin_png(3))
        assert not one_side.unknown and not one_side.HasField("open_set_score")
        streamed = list(client.identify_stream(
            (client.identify_request(coin_png(i), coin_png(i + 1), request_id=str(i)) for i in range(3)), timeout=30))
        assert len(streamed) == 3 and all(r.unknown and r.HasField("open_set_score") for r in streamed)
        info = client.model_info()
        assert info.calibrated and dict(info.temperatures) == {"emperor": 1.5, "ric": 2.0}
        assert info.open_set_score == "agreement" and info.open_set_threshold == 2.0 and info.open_set_far == 0.05


def test_an_uncalibrated_bundle_says_so(tiny_bundle):
    with BackgroundServer(server_config(tiny_bundle, max_batch=4)) as server, \
            CoinClient(f"127.0.0.1:{server.port}", timeout=20.0) as client:
        response = client.identify(coin_png(1), coin_png(2))
        assert not response.unknown and not response.HasField("open_set_score")
        info = client.model_info()
        assert not info.calibrated and dict(info.temperatures) == {"emperor": 1.0, "ric": 1.0} and info.open_set_score == ""
