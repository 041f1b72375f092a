"""95% bootstrap intervals over images.

Every figure of ``landmarks-eval`` is a statistic of per-image values (a mean, or
TorchRay's mean over classes of per-class means). Its interval resamples the images with
replacement ``resamples`` times and takes the 2.5th and 97.5th percentiles of the
statistic (the percentile bootstrap). The generator is seeded with ``seed`` for every
figure, so two methods scored on the same images see the same resamples (paired), and a
rerun gives the same intervals.
"""

from __future__ import annotations

import numpy as np

from denarius.engine.errors import ConfigError

__all__ = ["RESAMPLES", "SEED", "LEVEL", "mean_interval", "class_mean_interval"]

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    if resamples < 1:
        raise ConfigError(f"bootstrap resamples must be >= 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(stats: np.ndarray) -> list[float]:
    lo, hi = np.percentile(stats, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return [float(lo), float(hi)]


def mean_interval(values, *, resamples: int = RESAMPLES, seed: int = SEED) -> list[float] | None:
    """Interval of the mean of (n,) per-image values (vectorised)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None
    return _percentiles(values[_draws(values.size, resamples, seed)].mean(axis=1))


def class_mean_interval(values, labels, *, resamples: int = RESAMPLES, seed: int = SEED) -> list[float] | None:
    """Interval of TorchRay's accuracy (mean over the labels present of each label's mean
    value) of (n,) per-image values with their (n,) labels."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    classes = int(codes.max()) + 1
    stats = []
    for idx in _draws(values.size, resamples, seed):
        sums = np.bincount(codes[idx], weights=values[idx], minlength=classes)
        counts = np.bincount(codes[idx], minlength=classes)
        present = counts > 0
        stats.append(float(np.mean(sums[present] / counts[present])))
    return _percentiles(np.asarray(stats))
