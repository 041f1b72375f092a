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


def server_config(bundle, **overrides) -> ServerConfig:
    """Test defaults: any free ports, fp32 on ort-cpu, short grace."""
    values = dict(bundle=bundle, port=0, metrics_port=0, backend="ort-cpu", precision="fp32", grace_s=2.0)
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


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
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


def wait_for_metric(port: int, name: str, predicate, *, timeout: float = 3.0, **labels) -> float:
    """Poll ``name`` until ``predicate(value)`` holds (an aborted call's status reaches the
    client a moment before the server's interceptor counts it); returns the last value."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = metric(scrape(port), name, **labels)
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
