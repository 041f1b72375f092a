"""Where a source photo's pixels land in the network's crop.

:func:`engine.preprocess.canonical_image` centres the square on the detected coin disc
and :func:`engine.preprocess.crop_image` takes the centre crop; :func:`crop_transform`
re-derives that affine map (source -> crop pixel coordinates) by calling the same
:func:`engine.preprocess.coin_mask`, so ground-truth polygons drawn on the source photo
can be compared with landmark heatmaps, and heatmaps can be warped back to the photo.
A test checks that warping with it reproduces ``crop_image(canonical_image(...))``.
"""

from __future__ import annotations

import numpy as np

from engine.preprocess import PreprocessSpec, coin_mask

__all__ = ["crop_transform", "apply_transform"]


def crop_transform(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(2, 3) float64 affine matrix: source (x, y) -> centre-crop (x, y) pixel coordinates.

    Args:
        rgb: (H, W, 3) uint8 decoded source photo (as :func:`engine.imageio.decode_image` gives).
    """
    height, width = rgb.shape[:2]
    disc = coin_mask(rgb) if spec.remove_background else None
    if disc is not None:
        cx, cy, half = disc.cx, disc.cy, disc.radius * (1.0 + spec.coin_margin)
    else:
        cx, cy, half = width / 2.0, height / 2.0, max(width, height) / 2.0
    scale = spec.resize / (2.0 * half)
    offset = (spec.resize - spec.crop) // 2
    return np.array(
        [[scale, 0.0, spec.resize / 2.0 - scale * cx - offset], [0.0, scale, spec.resize / 2.0 - scale * cy - offset]],
        np.float64,
    )


def apply_transform(matrix: np.ndarray, points) -> np.ndarray:
    """(N, 2) points (x, y) -> (N, 2) float64 transformed points."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]
