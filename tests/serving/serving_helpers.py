"""Small helpers of the serving tests: server settings, crafted images and metrics scraping."""

from __future__ import annotations

import re
import socket
import struct
import urllib.request
import zlib

import cv2
import numpy as np

from denarius.serving.server import ServerConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_certificate(folder, name="server"):
    """A self-signed EC certificate for localhost / 127.0.0.1; returns (cert, key) paths."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def server_config(bundle, **overrides) -> ServerConfig:
    """Test defaults: any free ports, fp32 on ort-cpu, short grace, no drain delay."""
    values = dict(bundle=bundle, port=0, metrics_port=0, backend="ort-cpu", precision="fp32", grace_s=2.0, drain_delay_s=0.0)
    values.update(overrides)
    return ServerConfig(**values)


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG bytes."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def coin_png(seed: int, size: int = 48) -> bytes:
    """A small synthetic 'coin' (a textured disc on white), distinct per seed."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 255, np.uint8)
    colour = tuple(int(c) for c in rng.integers(40, 200, 3))
    cv2.circle(image, (size // 2, size // 2), size // 2 - 3, colour, -1)
    noise = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    inside = image[..., 0] != 255
    image[inside] = np.clip(image[inside].astype(int) + noise[inside] - 30, 0, 255).astype(np.uint8)
    return png_bytes(image)


def huge_png_header(width: int = 60_000, height: int = 60_000) -> bytes:
    """A 57-byte PNG whose IHDR claims width x height RGB pixels (with valid CRCs)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def scrape(port: int, *, token: str | None = None, ca=None, path: str = "/metrics") -> str:
    """The metrics endpoint's text: ``token`` as a bearer token, HTTPS trusting ``ca`` when given."""
    import ssl

    scheme, host = ("https", "localhost") if ca is not None else ("http", "127.0.0.1")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    request = urllib.request.Request(f"{scheme}://{host}:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10, context=context) as reply:
        return reply.read().decode()


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            total += float(match.group(3))
    return total


def wait_for_metric(port: int, name: str, predicate, *, timeout: float = 3.0, token: str | None = None, ca=None,
                    **labels) -> float:
    """Poll ``name`` until ``predicate(value)`` holds (an aborted call's status reaches the
    client a moment before the server's interceptor counts it); returns the last value."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = metric(scrape(port, token=token, ca=ca), name, **labels)
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
