"""The security sweep, re-run against a real server on loopback over copies of the tiny bundle.

A tampered bundle does not start a server (paths out of the bundle, limits above the
runtime's own); with a verify key (``Runtime.open(verify_key=...)``, what ``serve
--bundle-key`` will pass) an edited, consistently renamed manifest is refused by name; an
infinite sparsity is INVALID_ARGUMENT; an OS/2 BMP is identified as its PNG twin is.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import grpc
import numpy as np
import pytest

from denarius.engine.errors import BundleError
from denarius.serving.client import CoinClient
from denarius.serving.runtime import Runtime
from denarius.serving.server import BackgroundServer

from serving_helpers import png_bytes, server_config


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def edit_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


def os2_bmp(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB as an OS/2 1.x BMP (BITMAPCOREHEADER, 24 bits), built byte by byte."""
    height, width = rgb.shape[:2]
    pad = b"\0" * ((-3 * width) % 4)
    rows = b"".join(rgb[y, :, ::-1].tobytes() + pad for y in range(height - 1, -1, -1))  # bottom-up BGR
    core = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26 + len(rows), 0, 0, 26) + core + rows


def coin(seed: int, size: int = 64) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 230, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 2 - 4, tuple(int(v) for v in rng.integers(40, 200, 3)), -1)
    image[16:40, 20:44] = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    return image


def test_a_bundle_with_a_path_out_of_it_does_not_start_a_server(bundle):
    (bundle / "ric.onnx").rename(bundle.parent / "ric.onnx")

    def escape(manifest):
        manifest["models"]["ric"]["files"]["fp32"] = "../ric.onnx"
        manifest["files"]["../ric.onnx"] = manifest["files"].pop("ric.onnx")

    edit_manifest(bundle, escape)
    with pytest.raises(BundleError, match=r"'\.\./ric\.onnx' has a '\.\.' component"):
        with BackgroundServer(server_config(bundle, metrics_port=None)):
            pass


def test_a_bundle_lifting_the_pixel_limit_does_not_start_a_server(bundle):
    edit_manifest(bundle, lambda manifest: manifest["preprocess"].update(max_pixels=1e12))
    with pytest.raises(BundleError, match="preprocess refused: max_pixels"):
        with BackgroundServer(server_config(bundle, metrics_port=None)):
            pass


def test_runtime_with_a_verify_key_refuses_a_renamed_class(bundle, tmp_path):
    pytest.importorskip("cryptography")
    from denarius.engine.bundle_signing import generate_keypair, sign_manifest

    private, public = generate_keypair(tmp_path / "keys")
    sign_manifest(bundle, private)
    runtime = Runtime.open(bundle, backend="ort-cpu", warmup=False, verify_key=public)
    try:
        assert runtime.bundle.signed_by and "RIC V Probus 10" in runtime.model_info().rics
    finally:
        runtime.close()
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text.replace("RIC V Probus 10", "RIC I Forged 1"))
    with pytest.raises(BundleError, match=r"manifest\.json fails its signature check"):
        Runtime.open(bundle, backend="ort-cpu", warmup=False, verify_key=public)
    (bundle / "manifest.json.sig").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json is not signed"):
        Runtime.open(bundle, backend="ort-cpu", warmup=False, verify_key=public)


def test_a_server_with_a_bundle_key_serves_a_signed_bundle_and_refuses_an_edited_one(bundle, tmp_path):
    pytest.importorskip("cryptography")
    from denarius.engine.bundle_signing import generate_keypair, sign_manifest

    private, public = generate_keypair(tmp_path / "keys")
    sign_manifest(bundle, private)
    with BackgroundServer(server_config(bundle, metrics_port=None, bundle_key=public)) as running:
        with CoinClient(f"127.0.0.1:{running.port}", timeout=30.0) as coin_client:
            assert "RIC V Probus 10" in coin_client.model_info().rics
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text.replace("RIC V Probus 10", "RIC I Forged 1"))
    with pytest.raises(BundleError, match=r"manifest\.json fails its signature check"):
        with BackgroundServer(server_config(bundle, metrics_port=None, bundle_key=public)):
            pass


@pytest.fixture(scope="module")
def client(tiny_bundle):
    with BackgroundServer(server_config(tiny_bundle, metrics_port=None)) as running:
        with CoinClient(f"127.0.0.1:{running.port}", timeout=30.0) as coin_client:
            yield coin_client


@pytest.mark.parametrize("sparsity", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_sparsity_is_invalid_argument(client, sparsity):
    with pytest.raises(grpc.RpcError) as caught:
        client.landmarks(png_bytes(coin(0)), side="reverse", sparsity=sparsity, max_iterations=3)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lambda (sparsity) must be a finite number" in caught.value.details()


def test_os2_bmp_is_identified_as_its_png_twin(client):
    obverse, reverse = coin(1), coin(2)
    as_bmp = client.identify(os2_bmp(obverse), os2_bmp(reverse), top_k=3)
    as_png = client.identify(png_bytes(obverse), png_bytes(reverse), top_k=3)
    assert [(c.ric, c.emperor) for c in as_bmp.candidates] == [(c.ric, c.emperor) for c in as_png.candidates]
    for a, b in zip(as_bmp.candidates, as_png.candidates, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-6)
