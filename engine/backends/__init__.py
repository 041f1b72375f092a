"""Inference backends behind one small interface (see ``engine/backends/base.py``).

``open_backend(bundle, backend="auto")`` picks tensorrt > ort-cuda > openvino (INT8 bundles
only) > ort-cpu. The GPU backends and openvino import their libraries only when opened.
"""

from denarius.engine.backends.base import Backend, GraphFile, cpu_model_name, physical_cores
from denarius.engine.backends.registry import BACKENDS, available_backends, backend_status, default_precision, open_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "GraphFile",
    "available_backends",
    "backend_status",
    "default_precision",
    "open_backend",
    "cpu_model_name",
    "physical_cores",
]
