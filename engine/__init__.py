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
]
