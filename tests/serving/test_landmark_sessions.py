"""A served Landmarks call runs on the backend object that answers Identify.

Every onnxruntime session of the server process is counted by wrapping
``onnxruntime.InferenceSession`` (the one session factory,
``denarius.engine.backends.sessions.open_session``, builds them all; anything that went
around it would be counted too). A real server on a loopback port, real sessions.
"""

from __future__ import annotations

import collections
from pathlib import Path

import onnxruntime
import pytest

from denarius.engine.bundle import load_bundle
from denarius.serving.client import CoinClient
from denarius.serving.server import BackgroundServer

from tests.serving.conftest import server_config
from tests.serving.serving_helpers import coin_png


@pytest.fixture
def opened(monkeypatch):
    """{file name: sessions created} for every InferenceSession made while the test runs."""
    counts: collections.Counter = collections.Counter()
    original = onnxruntime.InferenceSession

    class Counted(original):
        def __init__(self, path, *args, **kwargs):
            counts[Path(str(path)).name] += 1
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Counted)
    return counts


def test_landmarks_reuse_the_identify_backend_and_open_only_the_gradient_graph(tiny_bundle, opened):
    bundle = load_bundle(tiny_bundle)
    if not bundle.has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph")
    classifiers = {bundle.file(m).name for m in ("emperor", "ric")}
    with BackgroundServer(server_config(tiny_bundle, backend="ort-cpu", warmup=False)) as server, \
            CoinClient(f"127.0.0.1:{server.port}", timeout=60.0) as client:
        client.identify(coin_png(1, 64), coin_png(2, 64), top_k=1)
        assert {name: opened[name] for name in classifiers} == dict.fromkeys(classifiers, 1)
        before = dict(opened)
        for method in ("optimized", "saliency", "occlusion"):
            answer = client.landmarks(coin_png(3, 64), side="reverse", method=method, window=21, stride=11)
            assert answer.target and len(answer.heatmap.data) == 64 * 64
        client.identify(coin_png(4, 64), coin_png(5, 64), top_k=1)
        runtime = server.server._servicer.runtime
        model = runtime.landmarks.model("ric")
        assert model._forward is runtime.engine.backend  # the very object Identify runs on
    new = {name: opened[name] - before.get(name, 0) for name in opened if opened[name] != before.get(name, 0)}
    assert new == {bundle.file("ric", "grad").name: 1}, f"sessions opened by the landmark calls: {new}"
