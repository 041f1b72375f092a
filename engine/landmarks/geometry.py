"""Where a source photo's pixels land in the network's crop.

:func:`denarius.engine.preprocess.canonical_transform` gives the affine map photo -> canonical
image (the square centred on the detected coin disc); the centre crop is a further
translation by ``(resize - crop) // 2``. :func:`crop_transform` composes the two, so
ground-truth polygons drawn on the photo can be compared with landmark heatmaps, and
heatmaps can be warped back to the photo. A test checks that warping with it reproduces
``crop_image(canonical_image(...))``.
"""

from __future__ import annotations

import numpy as np

from denarius.engine.preprocess import PreprocessSpec, canonical_transform

__all__ = ["crop_transform", "apply_transform"]


def crop_transform(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(2, 3) float64 affine matrix: source (x, y) -> centre-crop (x, y) pixel coordinates.

    Args:
        rgb: (H, W, 3) uint8 decoded source photo (as :func:`denarius.engine.imageio.decode_image` gives).
    """
    matrix, _ = canonical_transform(rgb, spec)
    matrix = np.array(matrix, np.float64)
    matrix[:, 2] -= (spec.resize - spec.crop) // 2
    return matrix


def apply_transform(matrix: np.ndarray, points) -> np.ndarray:
    """(N, 2) points (x, y) -> (N, 2) float64 transformed points."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]
