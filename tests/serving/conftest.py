"""Fixtures of the serving tests: a real server on a free loopback port over the tiny bundle."""

from __future__ import annotations

import socket

import pytest

from denarius.serving.client import CoinClient
from denarius.serving.server import BackgroundServer, ServerConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_config(bundle, **overrides) -> ServerConfig:
    """Test defaults: any free ports, fp32 on ort-cpu, short grace."""
    values = dict(bundle=bundle, port=0, metrics_port=0, backend="ort-cpu", precision="fp32", grace_s=2.0)
    values.update(overrides)
    return ServerConfig(**values)


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
