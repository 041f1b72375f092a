"""The one small interface every inference backend implements.

A backend owns the compiled form of a few ONNX graphs (sessions, TensorRT engines) and runs
them on host NumPy arrays::

    with OrtCpuBackend({"emperor": GraphFile(path)}, precision="fp32") as backend:
        logits = backend.infer("emperor", images)      # (N, 3, S, S) f32 -> (N, C) f32

``infer`` validates its feed (dtype, rank, spatial shape, batch >= 1) and splits batches
larger than ``max_batch``; ``run`` is the dict-based form for graphs with several inputs
or outputs (the gradient graphs) and validates its feeds the same way, against the graph's
own inputs (names, dtypes, ranks and fixed dimensions, like Polygraphy's ``check_inputs``).
Both are safe to call from several threads at once.
Lifecycles are explicit: ``close()`` or a ``with`` block, never ``__del__``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denarius.engine.errors import ConfigError, DenariusError, InputError

__all__ = ["Backend", "GraphFile", "TensorSpec", "check_feeds", "cpu_model_name", "physical_cores", "PRECISIONS"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class GraphFile:
    """One graph a backend should open.

    Attributes:
        path: the ONNX file (or TensorRT plan for the tensorrt backend).
        input_name, output_name: the classifier's input/output tensor names; ``infer`` uses
            them, ``run`` takes explicit names.
    """

    path: Path
    input_name: str = "image"
    output_name: str = "logits"


@dataclass(frozen=True)
class TensorSpec:
    """One input of a graph: its name, NumPy dtype and shape (None for a free dimension)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("N" if d is None else str(d) for d in self.shape)
        return f"{self.name}: ({dims}) {np.dtype(self.dtype).name}"


def check_feeds(graph: str, feeds: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpec]) -> dict[str, np.ndarray]:
    """Validate named feeds against a graph's inputs; returns them as C-contiguous arrays.

    Every input must be fed, no unknown name may be, and each array must have the input's
    dtype, rank and fixed dimensions (free ones, None, take any size >= 1).

    Raises:
        InputError: the first problem found, naming the graph and the input, and listing
            what the graph expects.
    """
    expected = "; ".join(spec.describe() for spec in specs.values())
    unknown = sorted(set(feeds) - set(specs))
    if unknown:
        raise InputError(f"{graph}: unknown input(s) {unknown}; the graph takes {expected}")
    missing = [name for name in specs if name not in feeds]
    if missing:
        raise InputError(f"{graph}: missing input(s) {missing}; the graph takes {expected}")
    checked = {}
    for name, spec in specs.items():
        array = np.asarray(feeds[name])
        if array.dtype != spec.dtype:
            raise InputError(f"{graph}: input {name!r} must be {np.dtype(spec.dtype).name}, got {array.dtype}")
        if array.ndim != len(spec.shape):
            raise InputError(f"{graph}: input {name!r} must have rank {len(spec.shape)} ({spec.describe()}), got shape {array.shape}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
            if (want is not None and got != want) or got == 0:
                raise InputError(f"{graph}: input {name!r} has size {got} on axis {axis}; expected {spec.describe()}")
        checked[name] = np.ascontiguousarray(array)
    return checked


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once).

    onnxruntime's intra-op pool scales with physical cores; a second thread per core only
    adds contention for the FMA units.
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in allowed:
        try:
            base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add((base / "physical_package_id").read_text().strip() + ":" + (base / "core_id").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo (reports say what hardware they ran on)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


class Backend:
    """Base class: validation, batch splitting and the lifecycle; subclasses run graphs.

    Attributes:
        name: "ort-cpu", "openvino", "ort-cuda" or "tensorrt".
        precision: "fp32", "fp16" or "int8" (what the opened graphs compute in).
        max_batch: largest batch one call to ``_infer`` receives; ``infer`` splits larger ones.
        graphs: the names of the opened graphs, e.g. ("emperor", "ric").
    """

    name = "base"

    def __init__(self, graphs: Mapping[str, GraphFile], *, precision: str, max_batch: int):
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        if not graphs:
            raise ConfigError("a backend needs at least one graph to open")
        self.precision = precision
        self.max_batch = int(max_batch)
        self._files = dict(graphs)
        self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public surface

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self._files)

    def input_shape(self, graph: str) -> tuple[int, ...]:
        """(3, S, S) of a classifier graph's input (without the batch dimension)."""
        raise NotImplementedError

    def infer(self, graph: str, inputs: np.ndarray) -> np.ndarray:
        """Run a classifier graph.

        Args:
            graph: an opened graph name (see ``graphs``).
            inputs: (N, 3, S, S) float32 normalised images, N >= 1, C-contiguous preferred
                (anything else is copied once).
        Returns:
            (N, C) float32 logits, a fresh array owned by the caller.
        Raises:
            InputError: wrong dtype/rank/shape or an empty batch (the message says which).
        """
        self._check_open()
        self._check_graph(graph)
        inputs = np.asarray(inputs)
        expected = self.input_shape(graph)
        if inputs.dtype != np.float32:
            raise InputError(f"{graph}: inputs must be float32, got {inputs.dtype}")
        if inputs.ndim != 4 or tuple(inputs.shape[1:]) != tuple(expected):
            raise InputError(f"{graph}: inputs must have shape (N, {', '.join(map(str, expected))}), got {inputs.shape}")
        if inputs.shape[0] == 0:
            raise InputError(f"{graph}: empty batch (N = 0)")
        inputs = np.ascontiguousarray(inputs)
        if inputs.shape[0] <= self.max_batch:
            return self._infer(graph, inputs)
        return np.concatenate(
            [self._infer(graph, inputs[i : i + self.max_batch]) for i in range(0, inputs.shape[0], self.max_batch)]
        )

    def run(self, graph: str, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run any opened graph with named feeds; returns {output name: array}.

        No batch splitting: the caller sizes the feeds (used for the gradient graphs).

        Args:
            feeds: {input name: array}, every input of the graph with its dtype and rank
                (see :meth:`input_specs`).
            outputs: output names to fetch (None: all, in graph order).
        Raises:
            InputError: a missing or unknown input, a wrong dtype, rank or fixed dimension.
            ConfigError: an output the graph does not have (its outputs listed).
        """
        self._check_open()
        self._check_graph(graph)
        feeds = check_feeds(graph, feeds, self.input_specs(graph))
        if outputs is not None:
            known = self.output_names(graph)
            unknown = [name for name in outputs if name not in known]
            if unknown:
                raise ConfigError(f"{graph}: no output(s) {unknown}; the graph's outputs: {list(known)}")
        return self._run(graph, feeds, outputs)

    def input_specs(self, graph: str) -> dict[str, TensorSpec]:
        """{input name: TensorSpec} of an opened graph (what :meth:`run` accepts)."""
        raise NotImplementedError(f"the {self.name} backend runs classifier graphs only (use infer)")

    def output_names(self, graph: str) -> tuple[str, ...]:
        """Output names of an opened graph, in graph order."""
        raise NotImplementedError(f"the {self.name} backend runs classifier graphs only (use infer)")

    @property
    def on_gpu(self) -> bool:
        """True when the graphs run on a CUDA device (the landmark masking then uses CUDA too)."""
        return False

    def close(self) -> None:
        """Release sessions/engines/device memory. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(graphs={list(self.graphs)}, precision={self.precision!r}, max_batch={self.max_batch})"

    # ------------------------------------------------------------------ for subclasses

    def _infer(self, graph: str, inputs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _run(self, graph: str, feeds: dict, outputs: list[str] | None) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"the {self.name} backend runs classifier graphs only (use infer)")

    def _close(self) -> None:
        pass

    def _check_open(self) -> None:
        if self._closed:
            raise DenariusError(f"the {self.name} backend is closed")

    def _check_graph(self, graph: str) -> None:
        if graph not in self._files:
            raise ConfigError(f"graph {graph!r} is not open in this backend; open graphs: {list(self._files)}")
