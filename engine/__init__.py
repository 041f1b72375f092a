"""Denarius runtime: preprocessing, hierarchy, bundles, inference backends, landmarks.

numpy + OpenCV + onnxruntime only; tensorrt and pycuda are imported lazily by the
backends that need them. Never imports torch.
"""

from denarius import __version__
from denarius.engine.backends import Backend, available_backends, open_backend
from denarius.engine.batcher import Batcher, BatcherClosed, BatcherStats
from denarius.engine.bundle import Bundle, ModelInfo, load_bundle
from denarius.engine.engine import Candidate, CoinPair, Engine, Identification
from denarius.engine.errors import (
    BackendUnavailable,
    BundleError,
    DeadlineExceeded,
    DenariusError,
    InputError,
    ManifestError,
    Overloaded,
)
from denarius.engine.hierarchy import Hierarchy
from denarius.engine.preprocess import PreprocessSpec

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
