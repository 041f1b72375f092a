"""Characteristic landmarks (Kim & Pavlovic, section 3.3): the constrained mask optimiser,
its baselines (occlusion, gradient saliency), regions, masking operations and scores.

Entry points: :class:`LandmarkService` (a bundle's landmarks on the engine's backends: what
the server, the CLI, the scanner, the bench and the evaluation call), :func:`compute_landmarks`
(a :class:`GradientModel` or any :class:`LandmarkModel` and uint8 centre crops) and
:func:`landmarks_for_source` (a photo).

Modules::

    regions.py      windows (w, stride s), SLIC superpixels, pixels; coverage normaliser C
    composition.py  f_I(x) = (sum_k x_k I_k) * C and its adjoint (NumPy reference, CPU path)
    cuda.py         pycuda launchers of engine/kernels/landmarks.cu (same operations)
    service.py      LandmarkService: models, preprocessing, region cache, reference, ops on the engine's backends
    model.py        GradientModel: classifier + gradient graph on engine backends, cost counter
    optimizer.py    batched projected subgradient descent with backprojection
    baselines.py    occlusion sensitivity, gradient saliency
    api.py          LandmarkConfig, compute_landmarks, landmarks_for_source
    result.py       LandmarkMap and overlays
    geometry.py     photo -> crop affine map
    batcher.py      LandmarkBatcher: queued searches with the same settings share a run

The scores against ground truth, figures, guidebooks and the kernel check are in
:mod:`denarius.evaluation` (evaluation tooling, not the runtime).
"""

from denarius.engine.landmarks.api import METHODS, SWEEP_EPSILONS, LandmarkConfig, compute_landmarks, landmarks_for_source, make_regions
from denarius.engine.landmarks.model import GradientModel, LandmarkModel
from denarius.engine.landmarks.optimizer import OptimizerConfig
from denarius.engine.landmarks.regions import LabelRegions, Regions, WindowRegions, pixel_regions, superpixel_regions, window_regions
from denarius.engine.landmarks.result import LandmarkMap
from denarius.engine.landmarks.service import LandmarkService

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
    "LandmarkService",
    "Regions",
    "WindowRegions",
    "LabelRegions",
    "window_regions",
    "superpixel_regions",
    "pixel_regions",
]
