"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.landmarks import GradientModel
from denarius.engine.landmarks.service import LandmarkService


@pytest.fixture(scope="module")
def model(tiny_bundle):
    """The tiny bundle's RIC classifier with its gradient graph (real onnxruntime sessions)."""
    bundle = load_bundle(tiny_bundle)
    if not bundle.has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph (denarius.export.gradgraph missing)")
    with GradientModel.from_bundle(bundle, "ric") as m:
        yield m


@pytest.fixture(scope="module")
def service(tiny_bundle):
    """A LandmarkService on the tiny bundle with an ort-cpu backend of its own."""
    bundle = load_bundle(tiny_bundle)
    if not bundle.has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph (denarius.export.gradgraph missing)")
    with LandmarkService.open(bundle, backend="ort-cpu") as opened:
        yield opened
