"""Denarius: identify Roman imperial coins from photo pairs and show their characteristic landmarks.

The installed distribution holds one top-level package, ``denarius``, with the layers
``denarius.engine`` (runtime), ``denarius.training`` (PyTorch), ``denarius.export``
(checkpoint -> bundle), ``denarius.serving`` (gRPC server and client, collection scans),
``denarius.evaluation`` (landmark scoring) and ``denarius.apps`` (the CLI, the bench, the
quickstart); docs/ARCHITECTURE.md has the layer rules. This module is
the small public API; names resolve on first use, so ``import denarius`` alone loads
neither onnxruntime nor anything else heavy::

    from denarius import CoinPair, Engine, load_bundle

    with Engine(load_bundle("denarius-quickstart/bundle")) as engine:
        [result] = engine.identify([CoinPair(obverse="obv.jpg", reverse="rev.jpg")], top_k=3)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Bundle": "denarius.engine.bundle",
    "load_bundle": "denarius.engine.bundle",
    "CoinPair": "denarius.engine.engine",
    "Candidate": "denarius.engine.engine",
    "Engine": "denarius.engine.engine",
    "Identification": "denarius.engine.engine",
    "PreprocessSpec": "denarius.engine.preprocess",
    "available_backends": "denarius.engine.backends",
    "DenariusError": "denarius.engine.errors",
    "InputError": "denarius.engine.errors",
    "BundleError": "denarius.engine.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'denarius' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
