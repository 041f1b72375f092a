"""Denarius runtime: preprocessing, hierarchy, bundles, inference backends, landmarks.

numpy + OpenCV + onnxruntime only; tensorrt and pycuda are imported lazily by the
backends that need them. Never imports torch.
"""

from engine.errors import (
    BackendUnavailable,
    BundleError,
    DeadlineExceeded,
    DenariusError,
    InputError,
    ManifestError,
    Overloaded,
)
from engine.bundle import Bundle, ModelInfo, load_bundle
from engine.hierarchy import Hierarchy
from engine.preprocess import PreprocessSpec
from engine.backends import Backend, available_backends, open_backend
from engine.batcher import Batcher, BatcherClosed, BatcherStats
from engine.engine import Candidate, CoinPair, Engine, Identification

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "Bundle",
    "ModelInfo",
    "load_bundle",
    "BundleError",
    "DeadlineExceeded",
    "DenariusError",
    "Hierarchy",
    "InputError",
    "ManifestError",
    "Overloaded",
    "PreprocessSpec",
    "__version__",
    "Backend",
    "available_backends",
    "open_backend",
    "Batcher",
    "BatcherClosed",
    "BatcherStats",
    "Candidate",
    "CoinPair",
    "Engine",
    "Identification",
]
