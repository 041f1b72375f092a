"""Ground-truth metrics of a heatmap (denarius.evaluation.metrics) on known maps and the tiny bundle."""

from __future__ import annotations

import numpy as np
import pytest

from denarius.engine.bundle import load_bundle
from denarius.evaluation.metrics import deletion_curve, energy, pointing_hit, polygon_mask


def test_metrics_on_known_maps():
    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], np.float32)
    heat = np.zeros((64, 64), np.float32)
    heat[15, 15] = 1.0
    assert pointing_hit(heat, [square], tolerance_px=0)
    heat = np.zeros((64, 64), np.float32)
    heat[15, 40] = 1.0  # 20 px right of the square
    assert not pointing_hit(heat, [square], tolerance_px=15)
    assert pointing_hit(heat, [square], tolerance_px=21)
    inside = polygon_mask([square], (64, 64))
    assert 100 <= inside.sum() <= 121  # 10 x 10 pixel centres, boundary pixels may be included
    heat = inside.astype(np.float32) + 0.0
    assert energy(heat, inside) == 1.0 and energy(np.zeros_like(heat), inside) == 0.0


def test_part_reliance_removes_each_part_and_finds_the_maximum(grad_bundle):
    from denarius.engine.landmarks import GradientModel
    from denarius.engine.preprocess import normalize
    from denarius.evaluation.metrics import NO_PART, part_reliance, parts_at_maximum

    model = GradientModel.from_bundle(load_bundle(grad_bundle), "ric")
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], np.float32)
    everything = np.array([[0, 0], [64, 0], [64, 64], [0, 64]], np.float32)
    parts = {"square": [square], "everything": [everything]}
    got = part_reliance(model, crop, parts, target=3)
    p = model.probabilities(normalize(np.stack([np.zeros_like(crop)]), model.spec))[0, 3]
    assert got["everything"] == (pytest.approx(p, rel=1e-5), 1.0)  # black reference, all gone
    assert 0 < got["square"][1] < 0.05
    heat = np.zeros((64, 64), np.float32)
    heat[15, 15] = 1.0
    assert sorted(parts_at_maximum(heat, parts)) == ["everything", "square"]
    assert parts_at_maximum(heat, {"square": [square + 30]}) == [NO_PART]


def test_deletion_curve_ends_at_blank_image(grad_bundle):
    from denarius.engine.landmarks import GradientModel
    from denarius.engine.preprocess import normalize

    model = GradientModel.from_bundle(load_bundle(grad_bundle), "ric")
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    heat = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    curve = deletion_curve(model, crop, heat, 2, steps=4)
    p = model.probabilities(normalize(np.stack([crop, np.zeros_like(crop)]), model.spec))[:, 2]
    assert curve.shape == (5,)
    assert curve[0] == pytest.approx(p[0], rel=1e-5) and curve[-1] == pytest.approx(p[1], rel=1e-5)


def test_sufficiency_curve_keeps_the_top_of_the_map(grad_bundle):
    from denarius.engine.landmarks import GradientModel
    from denarius.engine.preprocess import normalize
    from denarius.evaluation.sufficiency import SUFFICIENCY_QS, sufficiency_auc, sufficiency_curve

    model = GradientModel.from_bundle(load_bundle(grad_bundle), "ric")
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    heat = np.zeros((64, 64), np.float32)
    heat[:32] = 1.0  # the top half first
    reference = np.full((64, 64, 3), 90.0, np.float32)
    curve = sufficiency_curve(model, crop, heat, 1, qs=(0.0, 0.5, 1.0), reference=reference)
    half = crop.astype(np.float32).copy()
    half[32:] = 90.0
    p = model.probabilities(normalize(np.stack([reference, half, crop.astype(np.float32)]), model.spec))[:, 1]
    np.testing.assert_allclose(curve, p, rtol=1e-5)
    assert sufficiency_curve(model, crop, heat, 1).shape == (len(SUFFICIENCY_QS),)
    assert sufficiency_auc(np.full(4, 0.3)) == pytest.approx(0.3)
    assert sufficiency_auc(np.array([0.0, 1.0]), qs=(0.0, 1.0)) == pytest.approx(0.5)
