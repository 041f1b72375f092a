"""Class guidebooks in the landmark evaluation: :func:`class_guidebook` computes the maps of
one class's crops and averages them with :mod:`denarius.engine.landmarks.guidebook` (the
one implementation of the averaging and drawing; ``denarius guidebook`` writes a bundle's
guidebooks with it too).
"""

from __future__ import annotations

import numpy as np

from denarius.engine.landmarks.api import LandmarkConfig, compute_landmarks
from denarius.engine.landmarks.guidebook import Guidebook, guidebook_from_maps
from denarius.engine.landmarks.model import LandmarkModel

__all__ = ["Guidebook", "guidebook_from_maps", "class_guidebook"]


def class_guidebook(model: LandmarkModel, crops: np.ndarray, *, label: str, config: LandmarkConfig = LandmarkConfig()) -> Guidebook:
    """Landmarks of every crop for class ``label`` (one batched call), averaged.

    Args:
        crops: (N, S, S, 3) uint8 centre crops of coins of that class.
    """
    maps = compute_landmarks(model, crops, config=config, targets=label)
    return guidebook_from_maps(maps, label=label)
