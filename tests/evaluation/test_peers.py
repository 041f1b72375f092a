"""Captum peers (denarius.evaluation.peers) on the tiny bundle: our occlusion is Captum's."""

from __future__ import annotations

import numpy as np
import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.errors import ConfigError
from denarius.engine.landmarks import GradientModel, LandmarkConfig, composition, compute_landmarks

pytest.importorskip("captum")
from denarius.evaluation.peers import CAPTUM_METHODS, CaptumPeers


def _crops(symbol_coin, spec, count=2):
    from denarius.engine.preprocess import canonical_image, crop_image

    return np.stack([crop_image(canonical_image(symbol_coin(i)[0], spec), spec) for i in range(count)])


@pytest.mark.parametrize("reference", ["blur", "black"])
def test_our_occlusion_equals_captums(grad_bundle, symbol_coin, reference):
    """Same model (ONNX weights in PyTorch), window 7, stride 3 ((64 - 7) % 3 == 0, so the
    windows are the same), the same reference as Captum's baseline: correlation > 0.999."""
    bundle = load_bundle(grad_bundle)
    with GradientModel.from_bundle(bundle, "ric") as model:
        crops = _crops(symbol_coin, model.spec)
        ours = compute_landmarks(model, crops, config=LandmarkConfig(method="occlusion", window=7, stride=3, reference=reference))
    targets = [m.target for m in ours]
    peers = CaptumPeers(bundle, "ric", window=7, stride=3, methods=("captum_occlusion",))
    maps, seconds = peers.heatmaps(crops, targets, references=composition.reference_images(crops, reference))
    for i, m in enumerate(ours):
        theirs = maps["captum_occlusion"][i]
        assert theirs.shape == m.heatmap.shape and np.ptp(m.heatmap) > 0
        assert np.corrcoef(m.heatmap.ravel(), theirs.ravel())[0, 1] > 0.999
    assert seconds["captum_occlusion"] > 0
    assert peers.forward_equivalents("captum_occlusion") == m.forward_equivalents == 20 * 20 + 1


def test_every_peer_gives_a_map_in_unit_range(grad_bundle, symbol_coin):
    bundle = load_bundle(grad_bundle)
    peers = CaptumPeers(bundle, "emperor", window=11, stride=3, ig_steps=4)
    crops = _crops(symbol_coin, bundle.preprocess)
    maps, seconds = peers.heatmaps(crops, [0, 1], references=None)
    assert set(maps) == set(seconds) == set(CAPTUM_METHODS)
    for method, batch in maps.items():
        assert batch.shape == (2, 64, 64) and batch.dtype == np.float32, method
        assert batch.min() >= 0 and batch.max() <= 1 and np.isfinite(batch).all(), method
        assert all(np.ptp(b) > 0 for b in batch), f"{method}: a constant map"
    assert peers.forward_equivalents("captum_integrated_gradients") == 12


def test_bad_peer_settings(grad_bundle):
    bundle = load_bundle(grad_bundle)
    with pytest.raises(ConfigError, match="unknown Captum peers"):
        CaptumPeers(bundle, "ric", window=7, stride=3, methods=("captum_lime",))
    with pytest.raises(ConfigError, match="larger than the model's 64-px input"):
        CaptumPeers(bundle, "ric", window=65, stride=3)
