"""The one place an onnxruntime ``InferenceSession`` is made, and how its tensors are described.

Every session in Denarius (the ort-cpu and ort-cuda backends, the landmark models through
them, the bench's raw-onnxruntime section, the export's parity and agreement checks) comes
from :func:`open_session`, so a missing or unreadable file is always a ``BundleError`` naming
the file, and a test can count session creation in one place::

    session = open_session(path, options=quiet_options(), providers=["CPUExecutionProvider"])
    specs = input_specs(session)      # {"image": TensorSpec("image", float32, (None, 3, 64, 64))}

onnxruntime is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from denarius.engine.backends.base import TensorSpec
from denarius.engine.errors import BundleError

__all__ = ["ORT_TYPES", "open_session", "quiet_options", "input_specs", "output_names"]

logger = logging.getLogger(__name__)

# onnxruntime's type strings -> NumPy dtypes (the ones Denarius graphs use).
ORT_TYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8),
}


def quiet_options(*, threads: int | None = None):
    """``onnxruntime.SessionOptions`` logging errors only (ORT's warnings are about fusions it
    skipped); ``threads`` sets the intra-op pool (default: onnxruntime's own choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


def open_session(path: str | os.PathLike, *, options=None, providers: Sequence = ("CPUExecutionProvider",)):
    """An ``onnxruntime.InferenceSession`` on one ONNX file.

    Args:
        path: the ONNX file.
        options: ``onnxruntime.SessionOptions`` (None: onnxruntime's defaults).
        providers: execution providers in preference order (names or (name, options) pairs).
    Raises:
        BundleError: the file does not exist or onnxruntime cannot load it (its message kept).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise BundleError(f"ONNX file {path} does not exist")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise BundleError(f"onnxruntime cannot load {path}: {error}") from None
    logger.debug("onnxruntime session on %s (%s)", path.name, session.get_providers())
    return session


def input_specs(session) -> dict[str, TensorSpec]:
    """{input name: TensorSpec} of a session; symbolic dimensions ("N") become None."""
    return {
        node.name: TensorSpec(
            name=node.name,
            dtype=ORT_TYPES.get(node.type, np.dtype(np.float32)),
            shape=tuple(d if isinstance(d, int) else None for d in node.shape),
        )
        for node in session.get_inputs()
    }


def output_names(session) -> tuple[str, ...]:
    """The session's output names, in graph order."""
    return tuple(o.name for o in session.get_outputs())
