"""The network as the landmark methods see it: class probabilities and loss gradients.

:class:`GradientModel` runs a bundle's fp32 classifier (``<name>.onnx``) for forward
passes and its gradient graph (``<name>.grad.onnx``: inputs ``image``, ``target``;
outputs ``logits``, ``loss`` = -log softmax[target], ``grad_image``) for loss gradients,
both with onnxruntime, and counts the cost in forward-pass equivalents: a forward pass of
one image is 1, a forward + backward pass of one image is 3 (a backward counts as two).

The optimiser and the baselines only need the small :class:`LandmarkModel` protocol, so an
engine backend (CUDA, TensorRT) can stand in for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from denarius.engine.errors import BundleError, ConfigError, InputError
from denarius.engine.preprocess import PreprocessSpec

__all__ = ["LandmarkModel", "GradientModel", "softmax", "FORWARD", "FORWARD_BACKWARD"]

logger = logging.getLogger(__name__)

FORWARD = 1  # forward-pass equivalents of one image's forward pass
FORWARD_BACKWARD = 3  # forward + backward (a backward counts as two)


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


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) -> (N, C) float64 probabilities, stable for any finite logits."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _session(source, providers: Sequence[str] | None, threads: int | None):
    if not isinstance(source, (str, os.PathLike)):
        return source  # an InferenceSession made elsewhere (the engine's backend)
    import onnxruntime as ort

    path = Path(source)
    if not path.is_file():
        raise BundleError(f"ONNX file {path} does not exist")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))


class GradientModel:
    """onnxruntime classifier + gradient graph with a forward-pass-equivalent counter.

    Args:
        classifier: path of the fp32 ONNX classifier (input ``image``, output ``logits``)
            or an onnxruntime InferenceSession.
        gradient: path (or session) of the gradient graph; None allows forward passes only.
        spec: the model's preprocessing (the crop size is the network input size).
        classes: class names in logit order.
        providers: onnxruntime execution providers (default CPU).
        max_batch: images per session call; larger requests are split.
    """

    def __init__(
        self,
        classifier,
        gradient=None,
        *,
        spec: PreprocessSpec,
        classes: Sequence[str],
        providers: Sequence[str] | None = None,
        max_batch: int = 64,
        threads: int | None = None,
    ):
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        self.spec = spec
        self.classes = tuple(classes)
        self.max_batch = int(max_batch)
        self.forward_equivalents = 0
        self._forward = _session(classifier, providers, threads)
        self._gradient = _session(gradient, providers, threads) if gradient is not None else None

    @classmethod
    def from_bundle(cls, bundle, model: str, *, providers: Sequence[str] | None = None, max_batch: int = 64, threads: int | None = None) -> GradientModel:
        """Model ``"ric"`` or ``"emperor"`` of a loaded :class:`denarius.engine.bundle.Bundle`."""
        if model not in bundle.models:
            raise ConfigError(f"unknown model {model!r}; the bundle has {sorted(bundle.models)}")
        info = bundle.models[model]
        gradient = bundle.file(model, "grad") if bundle.has(model, "grad") else None
        spec = bundle.preprocess
        if spec.crop != info.input_size:
            spec = PreprocessSpec.from_dict({**spec.to_dict(), "crop": info.input_size})
        return cls(bundle.file(model, "fp32"), gradient, spec=spec, classes=info.classes, providers=providers, max_batch=max_batch, threads=threads)

    @staticmethod
    def model_for_side(bundle, side: str) -> str:
        """Name of the bundle model that reads ``side`` ("obverse" -> emperor, "reverse" -> ric)."""
        for name, info in bundle.models.items():
            if info.side == side:
                return name
        valid = sorted(info.side for info in bundle.models.values())
        raise InputError(f"no model reads side {side!r}; valid sides: {valid}")

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
            shown = ", ".join(self.classes[:20]) + (" ..." if len(self.classes) > 20 else "")
            raise InputError(f"unknown target label {label!r}; valid labels: {shown}") from None

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        size = self.spec.crop
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise InputError(f"model input must be (N, 3, {size}, {size}) float32, got {images.shape}")
        return images

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 normalised -> (N, C) float32; costs N forward equivalents."""
        images = self._check(images)
        out = [self._forward.run(["logits"], {"image": images[i : i + self.max_batch]})[0] for i in range(0, len(images), self.max_batch)]
        self.forward_equivalents += FORWARD * len(images)
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

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
        for i in range(0, len(images), self.max_batch):
            lo, ls, gr = self._gradient.run(
                ["logits", "loss", "grad_image"], {"image": images[i : i + self.max_batch], "target": targets[i : i + self.max_batch]}
            )
            logits.append(lo)
            losses.append(ls)
            grads.append(gr)
        self.forward_equivalents += FORWARD_BACKWARD * len(images)
        return np.concatenate(logits), np.concatenate(losses), np.concatenate(grads)

    def close(self) -> None:
        self._forward = self._gradient = None

    def __enter__(self) -> GradientModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
