"""Fixtures of the serving tests: a real server on a free loopback port over the tiny bundle."""

from __future__ import annotations

import pytest

from denarius.serving.client import CoinClient
from denarius.serving.server import BackgroundServer

from serving_helpers import server_config


@pytest.fixture(scope="module")
def server(tiny_bundle):
    with BackgroundServer(server_config(tiny_bundle, max_batch=8, max_wait_ms=20.0)) as running:
        yield running


@pytest.fixture
def client(server):
    with CoinClient(f"127.0.0.1:{server.port}", timeout=20.0) as coin_client:
        yield coin_client


@pytest.fixture(scope="session")
def photo_bytes(fixture_photos) -> dict[str, bytes]:
    return {side: path.read_bytes() for side, path in fixture_photos.items()}
