"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.landmarks import GradientModel


@pytest.fixture(scope="module")
def model(tiny_bundle):
    """The tiny bundle's RIC classifier with its gradient graph (real onnxruntime sessions)."""
    bundle = load_bundle(tiny_bundle)
    if not bundle.has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph (denarius.export.gradgraph missing)")
    with GradientModel.from_bundle(bundle, "ric") as m:
        yield m
