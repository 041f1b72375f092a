"""Inference backends behind one small interface (see ``engine/backends/base.py``).

``open_backend(bundle, backend="auto")`` picks tensorrt > ort-cuda > ort-cpu. The GPU
backends import onnxruntime-gpu / tensorrt / pycuda only when opened.
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
