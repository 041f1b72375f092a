"""Ground-truth metrics of a landmark heatmap (see :mod:`denarius.evaluation.eval`).

Polygons are (N, 2) float32 (x, y) in crop pixels; heatmaps are (H, W) at the crop size.
"""

from __future__ import annotations

from collections import defaultdict

import cv2
import numpy as np

from denarius.engine.landmarks import composition
from denarius.engine.landmarks.geometry import apply_transform
from denarius.engine.landmarks.model import softmax
from denarius.engine.preprocess import normalize

__all__ = [
    "NO_PART", "polygons_in_crop", "pointing_hit", "polygon_mask", "energy", "deletion_curve", "deletion_auc",
    "parts_in_crop", "parts_at_maximum", "part_reliance", "salience_rank", "removed_probabilities",
]


def polygons_in_crop(regions: list[dict], matrix: np.ndarray, *, discriminative: bool = True) -> list[np.ndarray]:
    return [
        apply_transform(matrix, r["polygon"]).astype(np.float32)
        for r in regions
        if bool(r.get("discriminative")) == discriminative and len(r.get("polygon") or []) >= 3
    ]


def pointing_hit(heatmap: np.ndarray, polygons: list[np.ndarray], *, tolerance_px: float) -> bool:
    """True when the heatmap maximum lies within ``tolerance_px`` of (or inside) a polygon.

    Args:
        heatmap: (H, W). polygons: (N_i, 2) float32 (x, y) in heatmap pixels.
    """
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    point = (float(x) + 0.5, float(y) + 0.5)
    return any(cv2.pointPolygonTest(p.reshape(-1, 1, 2), point, True) >= -tolerance_px for p in polygons)


def polygon_mask(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool union of the polygons (pixels whose centre is inside or on the boundary)."""
    mask = np.zeros(shape, np.uint8)
    shift = 4  # sub-pixel vertices
    for p in polygons:
        pts = np.round((p - 0.5) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=shift)
    return mask.astype(bool)


def energy(heatmap: np.ndarray, inside: np.ndarray) -> float:
    """Fraction of the heatmap's mass inside ``inside`` (0 for an all-zero heatmap)."""
    total = float(np.sum(heatmap, dtype=np.float64))
    return float(np.sum(heatmap[inside], dtype=np.float64) / total) if total > 0 else 0.0


def deletion_curve(
    model, crop: np.ndarray, heatmap: np.ndarray, target: int, *, steps: int, reference: np.ndarray | None = None
) -> np.ndarray:
    """p(target) as the most salient pixels are removed first.

    Args:
        crop: (H, W, 3). heatmap: (H, W). reference: (H, W, 3) what a removed pixel
            becomes (None: black).
    Returns:
        (steps + 1,) float64 for deleted fractions 0, 1/steps, ..., 1.
    """
    rank = salience_rank(heatmap)
    pixels = heatmap.size
    counts = np.array([round(pixels * i / steps) for i in range(steps + 1)])
    removed = (rank[None, :] < counts[:, None]).reshape(steps + 1, *heatmap.shape)  # (steps + 1, H, W)
    return removed_probabilities(model, crop, removed, target=target, reference=reference)


def salience_rank(heatmap: np.ndarray) -> np.ndarray:
    """(H * W,) int64 rank of each pixel, 0 = most salient (ties in raster order)."""
    pixels = heatmap.size
    rank = np.empty(pixels, np.int64)
    rank[np.argsort(-np.asarray(heatmap).ravel(), kind="stable")] = np.arange(pixels)
    return rank


def removed_probabilities(model, crop: np.ndarray, removed: np.ndarray, *, target: int, reference: np.ndarray | None = None) -> np.ndarray:
    """p(target) of copies of ``crop`` with the ``removed`` pixels replaced by the reference.

    Args:
        crop: (H, W, 3) in [0, 255]. removed: (n, H, W) bool. reference: (H, W, 3) what a
            removed pixel becomes (None: black).
    Returns:
        (n,) float64, in one forward call.
    """
    images = composition.replace_pixels(crop, removed, reference)
    return softmax(model.logits(normalize(images, model.spec)))[:, target]


def deletion_auc(curve: np.ndarray) -> float:
    return float(np.mean((curve[1:] + curve[:-1]) / 2.0))


NO_PART = "(none)"


def parts_in_crop(regions: list[dict], matrix: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Ground-truth part name (the region's first word) -> its polygons in crop pixels."""
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in regions:
        if len(r.get("polygon") or []) >= 3 and (r.get("word") or "").split():
            parts[r["word"].split()[0]].append(apply_transform(matrix, r["polygon"]).astype(np.float32))
    return dict(parts)


def parts_at_maximum(heatmap: np.ndarray, parts: dict[str, list[np.ndarray]]) -> list[str]:
    """Names of the parts whose polygons contain the heatmap's maximum (``[NO_PART]`` if none)."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    point = (float(x) + 0.5, float(y) + 0.5)
    hit = [name for name, polygons in parts.items()
           if any(cv2.pointPolygonTest(p.reshape(-1, 1, 2), point, False) >= 0 for p in polygons)]
    return hit or [NO_PART]


def part_reliance(model, crop: np.ndarray, parts: dict[str, list[np.ndarray]], *, target: int, reference: np.ndarray | None = None) -> dict:
    """p(target) with each part replaced by the reference, in one forward call.

    Args:
        crop: (H, W, 3). parts: name -> polygons (N_i, 2) in crop pixels.
        target: class index. reference: (H, W, 3) what a removed pixel becomes (None: black).
    Returns:
        name -> (p with the part removed, the part's share of the crop's pixels).
    """
    names = sorted(parts)
    if not names:
        return {}
    masks = np.stack([polygon_mask(parts[name], crop.shape[:2]) for name in names])  # (n, H, W)
    p = removed_probabilities(model, crop, masks, target=target, reference=reference)
    return {name: (float(p[i]), float(masks[i].mean())) for i, name in enumerate(names)}
