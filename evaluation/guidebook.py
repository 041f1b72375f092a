"""The class "guidebook": the mean landmark map over the coins of one RIC label (or emperor),
drawn over a representative coin of that class.

Canonical images are centred on the coin disc at a fixed scale, so heatmaps of coins of
one type are roughly aligned and their mean shows where the type's landmarks usually are
(the paper: coins of the same class share landmarks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denarius.engine.errors import InputError
from denarius.engine.landmarks.api import LandmarkConfig, compute_landmarks
from denarius.engine.landmarks.model import LandmarkModel
from denarius.engine.landmarks.result import LandmarkMap, overlay, rescale
from denarius.evaluation.figures import grid, write_png

__all__ = ["Guidebook", "guidebook_from_maps", "class_guidebook"]


@dataclass
class Guidebook:
    """Mean landmarks of one class.

    Attributes:
        label: the class. heatmap: (S, S) float32 in [0, 1], mean of the coins' heatmaps,
            rescaled. representative: index into ``maps`` of the coin whose heatmap
            correlates best with the mean. maps: the individual maps.
    """

    label: str
    heatmap: np.ndarray
    representative: int
    maps: list

    def render(self, *, tile_size: int = 224, examples: int = 6) -> np.ndarray:
        """(H, W, 3) uint8 RGB: the mean map over the representative coin, then examples."""
        main = overlay(self.maps[self.representative].image, self.heatmap)
        shown = self.maps[:examples]
        tiles = [[main] + [m.overlay() for m in shown]]
        captions = [[f"{self.label}\nmean of {len(self.maps)} coins"] + [f"coin {i}\np(c)={m.p_full:.2f}" for i, m in enumerate(shown)]]
        return grid(tiles, captions=captions, tile_size=tile_size // 2 if len(shown) > 3 else tile_size)

    def save_png(self, path) -> Path:
        return write_png(path, self.render())


def guidebook_from_maps(maps: list[LandmarkMap], *, label: str) -> Guidebook:
    """Guidebook from precomputed maps (all of the same size)."""
    if not maps:
        raise InputError(f"no landmark maps for class {label!r}")
    shapes = {m.heatmap.shape for m in maps}
    if len(shapes) != 1:
        raise InputError(f"landmark maps of different sizes {sorted(shapes)} cannot be averaged")
    stack = np.stack([m.heatmap for m in maps]).astype(np.float64)  # (N, S, S)
    mean = stack.mean(axis=0)
    centred = stack.reshape(len(maps), -1) - stack.reshape(len(maps), -1).mean(axis=1, keepdims=True)
    target = (mean - mean.mean()).ravel()
    norms = np.linalg.norm(centred, axis=1) * np.linalg.norm(target)
    corr = np.where(norms > 0, centred @ target / np.maximum(norms, 1e-300), -np.inf)
    representative = int(np.argmax(corr)) if np.isfinite(corr).any() else 0
    return Guidebook(label=label, heatmap=rescale(mean), representative=representative, maps=list(maps))


def class_guidebook(model: LandmarkModel, crops: np.ndarray, *, label: str, config: LandmarkConfig = LandmarkConfig()) -> Guidebook:
    """Landmarks of every crop for class ``label`` (one batched call), averaged.

    Args:
        crops: (N, S, S, 3) uint8 centre crops of coins of that class.
    """
    maps = compute_landmarks(model, crops, config=config, targets=label)
    return guidebook_from_maps(maps, label=label)
