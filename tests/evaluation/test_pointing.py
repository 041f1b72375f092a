"""TorchRay's pointing-game rule, the tie-robust variant, the point baselines and the
bootstrap (denarius.evaluation.pointing, bootstrap) on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from denarius.engine.errors import ConfigError, InputError
from denarius.evaluation.bootstrap import class_mean_interval, mean_interval
from denarius.evaluation.pointing import (
    centre_point,
    class_mean,
    coin_mask_in_crop,
    hit_map,
    point_hits,
    random_point_hit,
    scaled_tolerance,
    tie_robust_hit,
    torchray_hit,
    torchray_point,
)


def test_hit_map_is_torchrays_acceptance_disc_at_every_pixel():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((24, 30)) > 0.97
        tolerance = float(rng.uniform(1.0, 6.0))
        hits = hit_map(mask, tolerance)
        brute = np.array([[point_hits(mask, (u, v), tolerance) for u in range(30)] for v in range(24)])
        assert np.array_equal(hits, brute)
    assert not hit_map(np.zeros((8, 8), bool), 3.0).any()
    with pytest.raises(InputError, match=r"must be \(H, W\)"):
        hit_map(np.zeros((2, 8, 8), bool), 3.0)


def test_tolerance_is_strict_and_scaled():
    assert scaled_tolerance(15, 224) == 15 and scaled_tolerance(15, 96) == pytest.approx(15 * 96 / 224)
    mask = np.zeros((20, 20), bool)
    mask[10, 10] = True
    assert not point_hits(mask, (10, 15), 5.0) and point_hits(mask, (10, 15), 5.01)  # distance 5: '<', not '<='


def test_first_maximum_and_ties():
    mask = np.zeros((10, 10), bool)
    mask[0:3, 7:10] = True  # top-right corner
    hits = hit_map(mask, 1.5)
    heat = np.zeros((10, 10), np.float32)
    heat[1, 8] = heat[8, 1] = 1.0  # a tie: the first in raster order hits, the other misses
    assert torchray_point(heat) == (8, 1)
    assert torchray_hit(heat, hits) and tie_robust_hit(heat, hits) == 0.5
    heat[1, 8] = 0.999  # no tie any more
    assert not torchray_hit(heat, hits) and tie_robust_hit(heat, hits) == 0.0
    flat = np.zeros((10, 10), np.float32)  # a constant map: every pixel is maximal
    assert tie_robust_hit(flat, hits) == pytest.approx(hits.mean())


def test_centre_and_random_baselines():
    assert centre_point((64, 64)) == (32.0, 32.0) and centre_point((5, 7)) == (3.5, 2.5)
    hits = np.zeros((10, 10), bool)
    hits[:, :5] = True
    coin = np.zeros((10, 10), bool)
    coin[:, 3:7] = True
    assert random_point_hit(hits, coin) == 0.5 and random_point_hit(hits, np.zeros_like(coin)) == 0.5


def test_coin_mask_in_crop_maps_the_disc():
    from denarius.engine.preprocess import CoinDisc

    disc = CoinDisc(mask=np.zeros((1, 1), bool), scale=1.0, cx=50.0, cy=40.0, radius=20.0)
    matrix = np.array([[0.5, 0.0, 7.0], [0.0, 0.5, 12.0]])  # photo -> crop: scale 0.5, then a shift
    coin = coin_mask_in_crop(disc, matrix, 64)
    ys, xs = np.nonzero(coin)
    assert abs((xs + 0.5).mean() - 32.0) < 0.5 and abs((ys + 0.5).mean() - 32.0) < 0.5
    assert coin.sum() == pytest.approx(np.pi * 10.0**2, rel=0.05)
    assert coin_mask_in_crop(None, matrix, 16).all()


def test_class_mean_is_torchrays_accuracy():
    hits = np.array([1, 1, 1, 0, 0, 1], float)
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    assert class_mean(hits, labels) == pytest.approx((1.0 + 1 / 3) / 2)
    assert class_mean(np.zeros(0), np.zeros(0)) is None


def test_bootstrap_intervals_are_seeded_and_cover_the_mean():
    values = np.random.default_rng(1).random(50)
    low, high = mean_interval(values, resamples=500, seed=3)
    assert low < values.mean() < high and high - low < 0.3
    assert mean_interval(values, resamples=500, seed=3) == [low, high]
    assert mean_interval(values, resamples=500, seed=4) != [low, high]
    assert mean_interval(np.full(10, 0.25)) == [0.25, 0.25] and mean_interval([]) is None
    labels = np.array(["a", "b"] * 25)
    low, high = class_mean_interval(values, labels, resamples=300)
    assert low < class_mean(values, labels) < high
    with pytest.raises(ConfigError, match="resamples must be >= 1"):
        mean_interval(values, resamples=0)
