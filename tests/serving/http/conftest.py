"""Fixtures of the HTTP tests: a real gRPC server and the HTTP frontend beside it, sharing its
runtime and landmark batcher (as ``denarius serve --http-port`` runs them), on loopback ports."""

from __future__ import annotations

import dataclasses

import pytest

from denarius.serving.client import CoinClient
from denarius.serving.http import HttpConfig, HttpFrontend
from denarius.serving.server import BackgroundServer

from serving_helpers import server_config


def frontend_beside(running: BackgroundServer, **overrides) -> HttpFrontend:
    """An HTTP frontend on a free port over ``running``'s runtime, landmark batcher, landmark
    limit and metrics, as ``denarius serve --http-port`` wires it; a ``landmark_slots``
    override gives the frontend a limit of its own instead of the servicer's."""
    servicer = running.server._servicer
    config = dataclasses.replace(HttpConfig.from_server_config(running.server.config, port=0), **overrides)
    shared = None if "landmark_slots" in overrides else servicer.landmark_slots
    return HttpFrontend(lambda: servicer.runtime, config, landmarks=lambda: servicer.landmark_batcher,
                        landmark_slots=shared, metrics=running.server.metrics)


@pytest.fixture(scope="module")
def grpc_server(tiny_bundle):
    with BackgroundServer(server_config(tiny_bundle, max_batch=8, max_wait_ms=20.0)) as running:
        yield running


@pytest.fixture(scope="module")
def http_url(grpc_server):
    with frontend_beside(grpc_server) as frontend:
        yield f"http://127.0.0.1:{frontend.port}"


@pytest.fixture(scope="session")
def beside():
    """:func:`frontend_beside`, for tests that start a gRPC server of their own."""
    return frontend_beside


@pytest.fixture(scope="module")
def make_frontend(grpc_server):
    """``make_frontend(**HttpConfig overrides)``: another frontend beside the module's gRPC server."""
    return lambda **overrides: frontend_beside(grpc_server, **overrides)


@pytest.fixture
def grpc_client(grpc_server):
    with CoinClient(f"127.0.0.1:{grpc_server.port}", timeout=30.0) as client:
        yield client


# The coins the guidebook fixture averages: (coin id, RIC label, emperor, photo seed or None = the real pair).
GUIDEBOOK_COINS = (("real-1", "RIC V Probus 10", "Probus", None), ("synthetic-2", "RIC V Probus 10", "Probus", 2),
                   ("synthetic-3", "RIC V Aurelianus 1", "Aurelianus", 3))


@pytest.fixture(scope="session")
def guidebook_bundle(tiny_bundle, fixture_photos, tmp_path_factory):
    """A copy of the tiny bundle with a guidebook built by ``denarius guidebook`` from three coins
    (two of RIC V Probus 10, one of RIC V Aurelianus 1): guidebooks for those two RIC labels
    and the emperors Probus and Aurelianus, none for the other four labels or Tacitus."""
    import csv
    import shutil

    from denarius.apps.cli import main

    from serving_helpers import coin_png

    root = tmp_path_factory.mktemp("guidebook")
    bundle = root / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    rows = []
    for coin_id, ric, emperor, seed in GUIDEBOOK_COINS:
        paths = {}
        for side in ("obverse", "reverse"):
            path = root / f"{coin_id}_{side}.{'jpg' if seed is None else 'png'}"
            path.write_bytes(fixture_photos[side].read_bytes() if seed is None else coin_png(seed + (side == "reverse"), size=160))
            paths[side] = path.name
        rows.append({"coin_id": coin_id, "obverse": paths["obverse"], "reverse": paths["reverse"], "emperor": emperor,
                     "ric": ric, "obverse_description": "", "reverse_description": ""})
    with (root / "heldout.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["guidebook", str(bundle), "--images", str(root / "heldout.csv"), "--per-class", "2", "--backend", "ort-cpu"]) == 0
    return bundle
