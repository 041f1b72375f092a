"""What the two onnxruntime backends (ort-cpu, ort-cuda) share: one session per graph from
:func:`~denarius.engine.backends.sessions.open_session`, the graphs' tensor descriptions,
the classifier's input/output (from the bundle manifest's names, ``GraphFile``) and the
dict-based ``run`` used by the gradient graphs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from denarius.engine.backends.base import Backend, GraphFile, TensorSpec
from denarius.engine.backends.sessions import input_specs, open_session, output_names
from denarius.engine.errors import BundleError, ConfigError

__all__ = ["OrtBackend", "ClassifierIO"]

logger = logging.getLogger(__name__)


class ClassifierIO:
    """The classifier side of one graph: input name/dtype/(3, S, S) shape and output name.

    Raises:
        BundleError: the graph has the manifest's input but not its output, or the input is
            not (N, 3, S, S) with fixed S.
    """

    def __init__(self, path, spec: GraphFile, inputs: Mapping[str, TensorSpec], outputs: Sequence[str]):
        node = inputs[spec.input_name]
        if spec.output_name not in outputs:
            raise BundleError(f"{path}: no output named {spec.output_name!r}; outputs: {sorted(outputs)}")
        shape = tuple(d for d in node.shape[1:] if d is not None)
        if len(shape) != 3 or len(node.shape) != 4:
            raise BundleError(f"{path}: input {node.name!r} has shape {node.shape}, expected (N, 3, S, S)")
        self.input = node.name
        self.output = spec.output_name
        self.dtype = node.dtype
        self.shape: tuple[int, ...] = shape


class OrtBackend(Backend):
    """Base of the onnxruntime backends: opens every graph with the given session options
    and providers (subclasses choose them) and answers ``run``, ``input_specs``, ``session``."""

    def _open_sessions(self, *, options, providers: Sequence) -> None:
        self._sessions: dict = {}
        self._inputs: dict[str, dict[str, TensorSpec]] = {}
        self._outputs: dict[str, tuple[str, ...]] = {}
        self._classifiers: dict[str, ClassifierIO] = {}
        for graph, spec in self._files.items():
            session = open_session(spec.path, options=options, providers=providers)
            self._sessions[graph] = session
            self._inputs[graph] = input_specs(session)
            self._outputs[graph] = output_names(session)
            if spec.input_name in self._inputs[graph]:
                self._classifiers[graph] = ClassifierIO(spec.path, spec, self._inputs[graph], self._outputs[graph])

    def session(self, graph: str):
        """The underlying ``onnxruntime.InferenceSession`` (for benchmarks and tools)."""
        self._check_graph(graph)
        return self._sessions[graph]

    def input_specs(self, graph: str) -> dict[str, TensorSpec]:
        self._check_graph(graph)
        return dict(self._inputs[graph])

    def output_names(self, graph: str) -> tuple[str, ...]:
        self._check_graph(graph)
        return self._outputs[graph]

    def classifier(self, graph: str) -> ClassifierIO:
        """The classifier description ``infer`` uses; ConfigError for a graph without the
        manifest's input (use ``run``)."""
        self._check_graph(graph)
        io = self._classifiers.get(graph)
        if io is None:
            raise ConfigError(
                f"graph {graph!r} has no input {self._files[graph].input_name!r}: it is not a classifier; "
                f"call run() with its inputs {sorted(self._inputs[graph])}")
        return io

    def input_shape(self, graph: str) -> tuple[int, ...]:
        return self.classifier(graph).shape

    def _run(self, graph: str, feeds: dict, outputs: list[str] | None) -> dict[str, np.ndarray]:
        names = list(outputs or self._outputs[graph])
        return dict(zip(names, self._sessions[graph].run(names, feeds), strict=True))

    def _close(self) -> None:
        self._sessions.clear()
