"""The pointing game by TorchRay's rule, a tie-robust variant and the two point baselines.

TorchRay (facebookresearch/TorchRay, ``torchray/benchmark/pointing_game.py`` and
``examples/attribution_benchmark.py``):

- the point is ``argmax`` of the saliency map flattened in row-major order (the first
  maximum on a tie), as the pixel index ``(u, v) = (column, row)``;
- a hit is any ground-truth pixel ``(i, j)`` with ``(i - v)^2 + (j - u)^2 < tolerance^2``
  (strict), tolerance 15 px on 224-px inputs; we scale it to the input, ``15 * S / 224``;
- the score is the mean over classes of each class's hits / (hits + misses) (its
  ``accuracy``), here over the class each image is explained for;
- the centre baseline points at ``(W / 2, H / 2)``; TorchRay's "difficult" subset (from EBP)
  holds the images where the point is not trivially right. Ours is the images where the
  centre point misses: there a method must find the element, not the middle of the coin.

Tie-robust variant: the hit of every maximal pixel (within ``TIE_RTOL`` of the maximum),
averaged, so a plateau is credited by the share of it that hits instead of by its first
pixel in raster order. Random baseline: a uniform random point on the coin disc, counted
by its expectation (the share of coin pixels whose point hits), so it needs no seed.

All masks are (H, W) bool at the heatmap's size; heatmaps are (H, W) float.
"""

from __future__ import annotations

import cv2
import numpy as np

from denarius.engine.errors import InputError

__all__ = [
    "TIE_RTOL", "scaled_tolerance", "hit_map", "torchray_point", "torchray_hit", "tie_robust_hit", "centre_point",
    "point_hits", "random_point_hit", "coin_mask_in_crop", "class_mean",
]

TIE_RTOL = 1e-6  # a pixel ties with the maximum when within this fraction of the map's range


def scaled_tolerance(tolerance_at_224: float, size: int) -> float:
    """TorchRay's tolerance (px at 224 px) at an input of ``size`` px."""
    return float(tolerance_at_224) * size / 224.0


def hit_map(mask: np.ndarray, tolerance_px: float) -> np.ndarray:
    """(H, W) bool: True where a point would hit ``mask`` by TorchRay's rule.

    A pixel hits when some mask pixel lies at Euclidean distance < ``tolerance_px``
    (exact distance transform). An empty mask hits nowhere.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise InputError(f"a ground-truth mask must be (H, W), got shape {mask.shape}")
    if not mask.any():
        return np.zeros(mask.shape, bool)
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance < tolerance_px


def torchray_point(heatmap: np.ndarray) -> tuple[int, int]:
    """(u, v) = (column, row) of the first maximum in row-major order (``torch.argmax``)."""
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2 or heatmap.size == 0:
        raise InputError(f"a heatmap must be a non-empty (H, W) array, got shape {heatmap.shape}")
    index = int(np.argmax(np.nan_to_num(heatmap, nan=-np.inf)))
    return index % heatmap.shape[1], index // heatmap.shape[1]


def torchray_hit(heatmap: np.ndarray, hits: np.ndarray) -> bool:
    """TorchRay's pointing-game hit of ``heatmap`` given its :func:`hit_map`."""
    u, v = torchray_point(heatmap)
    return bool(hits[v, u])


def tie_robust_hit(heatmap: np.ndarray, hits: np.ndarray) -> float:
    """The share of the maximal pixels (within ``TIE_RTOL`` of the range) that hit, in [0, 1]."""
    values = np.nan_to_num(np.asarray(heatmap, np.float64), nan=-np.inf)
    top = values.max()
    spread = top - values[np.isfinite(values)].min() if np.isfinite(values).any() else 0.0
    maximal = values >= top - TIE_RTOL * max(spread, 1e-30)
    return float(hits[maximal].mean())


def centre_point(shape: tuple[int, int]) -> tuple[float, float]:
    """TorchRay's centre baseline ``(W / 2, H / 2)`` for an (H, W) map."""
    return shape[1] / 2.0, shape[0] / 2.0


def point_hits(mask: np.ndarray, point: tuple[float, float], tolerance_px: float) -> bool:
    """TorchRay's ``PointingGame.evaluate`` for a real-valued point (u, v): the acceptance
    disc ``(i - v)^2 + (j - u)^2 < tolerance^2`` meets the mask."""
    mask = np.asarray(mask, bool)
    u, v = point
    rows = (np.arange(mask.shape[0], dtype=np.float64) - v) ** 2
    cols = (np.arange(mask.shape[1], dtype=np.float64) - u) ** 2
    return bool((mask & ((rows[:, None] + cols[None, :]) < tolerance_px**2)).any())


def random_point_hit(hits: np.ndarray, coin: np.ndarray) -> float:
    """Expected hit of a uniform random pixel of the coin (the whole map if ``coin`` is empty)."""
    coin = np.asarray(coin, bool)
    return float(hits[coin].mean()) if coin.any() else float(hits.mean())


def coin_mask_in_crop(disc, matrix: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool coin disc in crop pixels (pixel centres inside), all True without one.

    Args:
        disc: a :class:`denarius.engine.preprocess.CoinDisc` in photo pixels, or None.
        matrix: (2, 3) photo -> crop affine map (:func:`denarius.engine.landmarks.geometry.crop_transform`).
    """
    if disc is None:
        return np.ones((size, size), bool)
    matrix = np.asarray(matrix, np.float64)
    cx, cy = matrix[:, :2] @ np.array([disc.cx, disc.cy], np.float64) + matrix[:, 2]
    radius = disc.radius * float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= radius**2


def class_mean(values: np.ndarray, labels: np.ndarray) -> float | None:
    """TorchRay's accuracy: the mean over labels of each label's mean value (None if empty)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    sums = np.bincount(codes, weights=values)
    counts = np.bincount(codes)
    return float(np.mean(sums / counts))
