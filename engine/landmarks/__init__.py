"""Characteristic landmarks (Kim & Pavlovic, section 3.3): the constrained mask optimiser,
its baselines (occlusion, gradient saliency), regions, masking operations and scores.

Entry point: :func:`compute_landmarks` with a :class:`GradientModel` (or any
:class:`LandmarkModel`) and uint8 centre crops.
"""

from engine.landmarks.api import METHODS, SWEEP_EPSILONS, LandmarkConfig, compute_landmarks, landmarks_for_source, make_regions
from engine.landmarks.model import GradientModel, LandmarkModel
from engine.landmarks.optimizer import OptimizerConfig
from engine.landmarks.regions import LabelRegions, Regions, WindowRegions, pixel_regions, superpixel_regions, window_regions
from engine.landmarks.result import LandmarkMap

__all__ = [
    "METHODS",
    "SWEEP_EPSILONS",
    "LandmarkConfig",
    "OptimizerConfig",
    "compute_landmarks",
    "landmarks_for_source",
    "make_regions",
    "GradientModel",
    "LandmarkModel",
    "LandmarkMap",
    "Regions",
    "WindowRegions",
    "LabelRegions",
    "window_regions",
    "superpixel_regions",
    "pixel_regions",
]
