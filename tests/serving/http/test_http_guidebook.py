"""Class guidebooks: built into a bundle by ``denarius guidebook``, verified with the bundle,
served by ``GET /v1/guidebook`` and ``GET /v1/guidebook/{label}`` (real servers on loopback
ports; the tiny bundle, without and with a guidebook)."""

from __future__ import annotations

import shutil
from urllib.parse import quote

import cv2
import numpy as np
import pytest

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")

from denarius.apps.cli import main  # noqa: E402 - after the skips
from denarius.engine.bundle import load_bundle  # noqa: E402
from denarius.engine.errors import BundleError  # noqa: E402
from denarius.serving.server import BackgroundServer  # noqa: E402

from serving_helpers import server_config  # noqa: E402


def _error(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()["error"]["message"]


@pytest.fixture(scope="module")
def guidebook_url(guidebook_bundle, beside):
    with BackgroundServer(server_config(guidebook_bundle)) as running, beside(running) as frontend:
        yield f"http://127.0.0.1:{frontend.port}"


def test_a_bundle_without_a_guidebook_answers_404_saying_how_to_build_one(http_url):
    message = _error(requests.get(f"{http_url}/v1/guidebook", timeout=10), 404)
    assert "has no guidebook" in message and "denarius guidebook BUNDLE --images MANIFEST" in message
    assert "has no guidebook" in _error(requests.get(f"{http_url}/v1/guidebook/{quote('RIC V Probus 10')}", timeout=10), 404)


def test_the_guidebook_of_a_type_and_of_an_emperor_are_served_as_png(guidebook_url, guidebook_bundle):
    index = requests.get(f"{guidebook_url}/v1/guidebook", timeout=10).json()
    assert index["model_version"] == "tiny-test" and index["method"] == "optimized"
    found = {(e["kind"], e["label"]): e for e in index["entries"]}
    assert set(found) == {("ric", "RIC V Probus 10"), ("ric", "RIC V Aurelianus 1"), ("emperor", "Probus"), ("emperor", "Aurelianus")}
    assert found[("ric", "RIC V Probus 10")]["coins"] == 2 and found[("emperor", "Aurelianus")]["coins"] == 1
    assert found[("ric", "RIC V Aurelianus 1")]["representative"] == "synthetic-3"

    reply = requests.get(f"{guidebook_url}/{found[('ric', 'RIC V Probus 10')]['url']}", timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert reply.headers["x-guidebook-coins"] == "2" and reply.headers["x-guidebook-kind"] == "ric"
    picture = cv2.imdecode(np.frombuffer(reply.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (512, 512, 3)
    # The mean map is drawn in colour over the coin (a grey coin photo alone has no saturated pixels).
    assert (cv2.cvtColor(picture, cv2.COLOR_BGR2HSV)[..., 1] > 150).mean() > 0.01
    [listed] = [path for path in load_bundle(guidebook_bundle).files if path.startswith("guidebook/ric/RIC_V_Probus_10")]
    assert reply.content == (guidebook_bundle / listed).read_bytes()  # the bundle's file, as hashed in its manifest

    emperor = requests.get(f"{guidebook_url}/v1/guidebook/Probus?kind=emperor", timeout=10)
    assert emperor.status_code == 200 and emperor.headers["x-guidebook-kind"] == "emperor"
    assert requests.get(f"{guidebook_url}/v1/guidebook/Probus", timeout=10).content == emperor.content  # no RIC label of that name


def test_a_class_without_held_out_coins_has_none_and_bad_kinds_are_refused(guidebook_url):
    message = _error(requests.get(f"{guidebook_url}/v1/guidebook/{quote('RIC V Tacitus 30')}", timeout=10), 404)
    assert "no guidebook for 'RIC V Tacitus 30'" in message and "RIC V Probus 10" in message
    assert _error(requests.get(f"{guidebook_url}/v1/guidebook/Probus?kind=ric", timeout=10), 404)
    assert "kind must be one of ric, emperor" in _error(requests.get(f"{guidebook_url}/v1/guidebook/Probus?kind=coin", timeout=10), 400)


def test_the_openapi_document_lists_the_guidebook_routes(guidebook_url):
    paths = requests.get(f"{guidebook_url}/openapi.json", timeout=10).json()["paths"]
    assert "image/png" in paths["/v1/guidebook/{label}"]["get"]["responses"]["200"]["content"]
    assert "404" in paths["/v1/guidebook"]["get"]["responses"]


def test_the_guidebook_is_verified_with_the_bundle(guidebook_bundle, tmp_path):
    bundle = load_bundle(guidebook_bundle)
    assert bundle.guidebook == "guidebook/index.json" and bundle.guidebook in bundle.files
    copy = tmp_path / "bundle"
    shutil.copytree(guidebook_bundle, copy)
    [png] = [path for path in bundle.files if path.startswith("guidebook/emperor/Probus")]
    (copy / png).write_bytes((copy / png).read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(BundleError, match=r"Probus.*fails its sha256 check"):
        load_bundle(copy)
    (copy / png).unlink()
    with pytest.raises(BundleError, match=r"bundle file missing.*Probus"):
        load_bundle(copy)


def test_a_signed_bundle_is_signed_again_or_refused(guidebook_bundle, tmp_path, capsys):
    pytest.importorskip("cryptography")
    copy = tmp_path / "bundle"
    shutil.copytree(guidebook_bundle, copy)
    assert main(["bundle-keygen", "--out", str(tmp_path / "keys")]) == 0
    key, public = tmp_path / "keys" / "bundle-signing.key", tmp_path / "keys" / "bundle-signing.pub"
    images = guidebook_bundle.parent / "heldout.csv"
    assert main(["bundle-sign", str(copy), "--key", str(key)]) == 0
    capsys.readouterr()
    assert main(["guidebook", str(copy), "--images", str(images), "--per-class", "1", "--backend", "ort-cpu"]) == 2
    err = capsys.readouterr().err
    assert "is signed" in err and "--sign-key" in err
    load_bundle(copy, verify_key=public)  # refused before anything was written: still signed and whole
    assert main(["guidebook", str(copy), "--images", str(images), "--per-class", "1", "--backend", "ort-cpu",
                 "--sign-key", str(key)]) == 0
    rebuilt = load_bundle(copy, verify_key=public)  # the new guidebook, under a new signature
    assert rebuilt.signed_by and rebuilt.guidebook
    index = (copy / rebuilt.guidebook).read_text()
    assert '"per_class": 1' in index and '"coins": 2' not in index
