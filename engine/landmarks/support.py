"""Where a landmark may lie: the coin disc of a crop.

Preprocessing (:func:`denarius.engine.preprocess.canonical_image`) blanks everything outside
the coin it found to exactly 0 and pads with 0, so the coin's support in a crop is its
non-black pixels; their largest connected component, replaced by its convex hull, fills
the few genuinely black pixels inside the coin (deep shadows, dark patina).

A heatmap maximum on the blanked background points at nothing the coin shows. With the
blurred reference, removing a window on the coin's edge smears the coin's colour into
the background, a change of the image's outline the network notices, and the corner
pixels of the crop are covered by 1 window where inner pixels are covered by up to
(w / s)^2, so their averaged value is noisier and more often extreme.
:func:`restrict` keeps the maximum on the coin.
"""

from __future__ import annotations

import cv2
import numpy as np

from denarius.engine.errors import InputError

__all__ = ["coin_support", "restrict"]


def coin_support(crops: np.ndarray) -> np.ndarray:
    """The coin's pixels in each crop.

    Args:
        crops: (B, H, W, 3) or (H, W, 3) uint8 (or float in [0, 255]) crops from
            preprocessing (background exactly 0).
    Returns:
        (B, H, W) bool (or (H, W) for one crop); all True for a crop without any black
        pixel or without any coin pixel (nothing to restrict).
    """
    crops = np.asarray(crops)
    single = crops.ndim == 3
    if single:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise InputError(f"crops must be (B, H, W, 3), got shape {crops.shape}")
    out = np.ones(crops.shape[:3], bool)
    for i, crop in enumerate(crops):
        foreground = (crop > 0).any(axis=-1).astype(np.uint8)
        if foreground.all() or not foreground.any():
            continue
        contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.convexHull(max(contours, key=cv2.contourArea))
        filled = np.zeros_like(foreground)
        cv2.fillPoly(filled, [hull], 1)
        out[i] = filled.astype(bool)
    return out[0] if single else out


def restrict(heatmap: np.ndarray, support: np.ndarray) -> np.ndarray:
    """A heatmap with every pixel off the support lowered to the support's minimum.

    Args:
        heatmap: (H, W) float. support: (H, W) bool.
    Returns:
        (H, W) float32; the maximum (and the order of the pixels) on the support unchanged,
        so rescaling to [0, 1] afterwards keeps the coin's full range.
    """
    heatmap = np.asarray(heatmap, np.float32)
    support = np.asarray(support, bool)
    if support.shape != heatmap.shape:
        raise InputError(f"support of shape {support.shape} does not match the heatmap's {heatmap.shape}")
    if not support.any() or support.all():
        return heatmap
    return np.where(support, heatmap, heatmap[support].min()).astype(np.float32)
