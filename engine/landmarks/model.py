"""The network as the landmark methods see it: class probabilities and loss gradients.

:class:`GradientModel` is a thin adaptor over engine backends: forward passes run the
classifier graph (``"ric"`` / ``"emperor"``) with ``Backend.infer`` on the backend the
caller gives (the Engine's own, so a served landmark search and Identify share one
session), loss gradients run the bundle's gradient graph (``"<name>.grad"``: inputs the
classifier's input and ``target``; outputs the classifier's output, ``loss`` =
-log softmax[target], ``grad_image``) with ``Backend.run``. Tensor names come from the
bundle manifest (``ModelInfo.input_name`` / ``output_name``). It counts the cost in
forward-pass equivalents: a forward pass of one image is 1, a forward + backward pass of
one image is 3 (a backward counts as two).

:class:`denarius.engine.landmarks.service.LandmarkService` builds these on the engine's
backends; the optimiser and the baselines only need the small :class:`LandmarkModel`
protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from denarius.engine.backends import open_backend
from denarius.engine.errors import BundleError, ConfigError, InputError
from denarius.engine.preprocess import PreprocessSpec
from denarius.engine.scoring import softmax64 as softmax  # the one softmax; optimiser and baselines import it from here

__all__ = ["LandmarkModel", "GradientModel", "softmax", "model_for_side", "unknown_label", "FORWARD", "FORWARD_BACKWARD",
           "GRAD_TARGET", "GRAD_LOSS", "GRAD_IMAGE"]

logger = logging.getLogger(__name__)

FORWARD = 1  # forward-pass equivalents of one image's forward pass
FORWARD_BACKWARD = 3  # forward + backward (a backward counts as two)
# The gradient graph's own tensors (export/gradgraph.py); its image input and logits output
# carry the classifier's names from the manifest.
GRAD_TARGET, GRAD_LOSS, GRAD_IMAGE = "target", "loss", "grad_image"


@runtime_checkable
class LandmarkModel(Protocol):
    """What the landmark methods need from a classifier.

    Attributes:
        spec: preprocessing of the model's input (normalisation, crop size).
        classes: class names in logit order.
        forward_equivalents: running cost counter (see module docstring).
    """

    spec: PreprocessSpec
    classes: tuple[str, ...]
    forward_equivalents: int

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 normalised -> (N, C) float32 logits."""

    def loss_and_grad(self, images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> logits (N, C), loss (N,) = -log softmax[target], grad_image (N, 3, S, S)."""


def unknown_label(label, classes: Sequence[str], *, side: str | None = None) -> InputError:
    """The InputError for a class label a model does not have (the first 20 valid ones listed)."""
    shown = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
    where = f" for the {side}" if side else ""
    return InputError(f"unknown target label {label!r}{where}; valid labels: {shown}")


def model_for_side(bundle, side: str) -> str:
    """Name of the bundle model that reads ``side`` ("obverse" -> emperor, "reverse" -> ric).

    Raises:
        InputError: no model reads that side (the valid sides listed).
    """
    for name, info in bundle.models.items():
        if info.side == side:
            return name
    valid = sorted(info.side for info in bundle.models.values())
    raise InputError(f"no model reads side {side!r}; valid sides: {valid}")


def model_spec(bundle, model: str) -> PreprocessSpec:
    """The bundle's preprocessing with the crop at ``model``'s input size."""
    spec, size = bundle.preprocess, bundle.models[model].input_size
    return spec if spec.crop == size else PreprocessSpec.from_dict({**spec.to_dict(), "crop": size})


class GradientModel:
    """A classifier + its gradient graph on engine backends, with a forward-pass-equivalent counter.

    Args:
        classifier: a :class:`~denarius.engine.backends.Backend` with graph ``name`` open.
        gradient: a Backend with graph ``"<name>.grad"`` open; None allows forward passes only.
        name: the bundle model ("emperor" or "ric").
        spec: the model's preprocessing (the crop size is the network input size).
        classes: class names in logit order.
        input_name, output_name: the classifier's tensor names (bundle manifest).
        max_batch: images per gradient-graph call; larger requests are split (the
            classifier backend splits its own calls).
        owned: backends this model closes in :meth:`close` (those it opened itself).
    """

    def __init__(
        self,
        classifier,
        gradient=None,
        *,
        name: str,
        spec: PreprocessSpec,
        classes: Sequence[str],
        input_name: str = "image",
        output_name: str = "logits",
        max_batch: int = 64,
        owned: Sequence = (),
    ):
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        if name not in classifier.graphs:
            raise ConfigError(f"graph {name!r} is not open in the classifier backend; open graphs: {list(classifier.graphs)}")
        if gradient is not None and f"{name}.grad" not in gradient.graphs:
            raise ConfigError(f"graph {name + '.grad'!r} is not open in the gradient backend; open graphs: {list(gradient.graphs)}")
        self.name = name
        self.spec = spec
        self.classes = tuple(classes)
        self.max_batch = int(max_batch)
        self.forward_equivalents = 0
        self.input_name, self.output_name = input_name, output_name
        self._forward = classifier
        self._gradient = gradient
        self._owned = tuple(owned)

    @classmethod
    def on_backends(cls, bundle, model: str, classifier, gradient=None, *, max_batch: int = 64) -> GradientModel:
        """Model ``model`` of ``bundle`` on already opened backends (not closed by :meth:`close`).

        Args:
            classifier: a Backend with graph ``model`` open (e.g. ``engine.backend``).
            gradient: a Backend with graph ``"<model>.grad"`` open, or None (forward only).
        """
        if model not in bundle.models:
            raise ConfigError(f"unknown model {model!r}; the bundle has {sorted(bundle.models)}")
        info = bundle.models[model]
        return cls(classifier, gradient, name=model, spec=model_spec(bundle, model), classes=info.classes,
                   input_name=info.input_name, output_name=info.output_name, max_batch=max_batch)

    @classmethod
    def from_bundle(cls, bundle, model: str, *, backend: str = "ort-cpu", max_batch: int = 64, threads: int | None = None) -> GradientModel:
        """Model ``"ric"`` or ``"emperor"`` of a loaded :class:`denarius.engine.bundle.Bundle`
        on backends of its own (fp32 classifier + gradient graph, opened with ``open_backend``
        and closed by :meth:`close`); the served path uses :class:`LandmarkService` instead."""
        if model not in bundle.models:
            raise ConfigError(f"unknown model {model!r}; the bundle has {sorted(bundle.models)}")
        graphs = (model, f"{model}.grad") if bundle.has(model, "grad") else (model,)
        opened = open_backend(bundle, backend, "fp32", graphs=graphs, max_batch=max_batch, threads=threads)
        info = bundle.models[model]
        return cls(opened, opened if len(graphs) == 2 else None, name=model, spec=model_spec(bundle, model),
                   classes=info.classes, input_name=info.input_name, output_name=info.output_name,
                   max_batch=max_batch, owned=(opened,))

    @staticmethod
    def model_for_side(bundle, side: str) -> str:
        """Name of the bundle model that reads ``side`` (see :func:`model_for_side`)."""
        return model_for_side(bundle, side)

    @property
    def has_gradient(self) -> bool:
        return self._gradient is not None

    @property
    def input_size(self) -> int:
        return self.spec.crop

    def class_index(self, label: str | int) -> int:
        """Index of a class label (or a valid index); InputError listing valid labels."""
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if 0 <= int(label) < len(self.classes):
                return int(label)
            raise InputError(f"target index {label} out of range [0, {len(self.classes)})")
        try:
            return self.classes.index(str(label))
        except ValueError:
            raise unknown_label(label, self.classes) from None

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        size = self.spec.crop
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise InputError(f"model input must be (N, 3, {size}, {size}) float32, got {images.shape}")
        return images

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 normalised -> (N, C) float32; costs N forward equivalents."""
        images = self._check(images)
        if not len(images):
            return np.zeros((0, len(self.classes)), np.float32)
        out = self._forward.infer(self.name, images)
        self.forward_equivalents += FORWARD * len(images)
        return out

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) -> (N, C) float64 softmax probabilities."""
        return softmax(self.logits(images))

    def loss_and_grad(self, images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One forward + backward pass per image (3 equivalents each).

        Returns:
            logits (N, C) float32, loss (N,) float32 = -log softmax(logits)[target],
            grad_image (N, 3, S, S) float32 = d loss / d image (normalised input space).
        """
        if self._gradient is None:
            raise BundleError("this model has no gradient graph (<name>.grad.onnx); re-export the bundle with gradients")
        images = self._check(images)
        targets = np.ascontiguousarray(targets, np.int64).reshape(-1)
        if len(targets) != len(images):
            raise InputError(f"{len(images)} images but {len(targets)} targets")
        logits, losses, grads = [], [], []
        graph, names = f"{self.name}.grad", [self.output_name, GRAD_LOSS, GRAD_IMAGE]
        for i in range(0, len(images), self.max_batch):
            out = self._gradient.run(
                graph, {self.input_name: images[i : i + self.max_batch], GRAD_TARGET: targets[i : i + self.max_batch]}, names
            )
            logits.append(out[names[0]])
            losses.append(out[GRAD_LOSS])
            grads.append(out[GRAD_IMAGE])
        self.forward_equivalents += FORWARD_BACKWARD * len(images)
        return np.concatenate(logits), np.concatenate(losses), np.concatenate(grads)

    def close(self) -> None:
        """Close the backends this model opened itself (not shared ones). Idempotent."""
        for backend in self._owned:
            backend.close()
        self._owned = ()

    def __enter__(self) -> GradientModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
