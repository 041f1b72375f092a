"""Peers on the same model: Captum's attributions of the bundle's PyTorch AlexNet.

``landmarks-eval --peers captum`` scores these beside our methods with the same metrics
(the metrics' forward passes run on the bundle's onnxruntime model; only the heatmaps come
from PyTorch). The network is rebuilt from the bundle's fp32 ONNX weights
(:func:`denarius.training.onnx_weights.model_from_onnx`), so it is the model our methods
explain. torch and captum are imported inside (the ``train`` extra).

Methods (input: the normalised crop, as the network sees it; target: the class our
methods explain for that image):

- ``captum_occlusion``: ``Occlusion`` on p(c) (softmax), sliding window (3, w, w), strides
  (3, s, s), baseline = the normalised reference image (blurred crop, or black = pixel
  value 0), i.e. the same question as our occlusion; Captum averages the drops of the
  windows covering a pixel, as our coverage normaliser does. Where ``(S - w) % s != 0``
  Captum's last window is cut at the border while ours is shifted inside, so the two
  differ in the last rows and columns.
- ``captum_saliency``: ``Saliency`` (|d logit_c / d x|), max over channels.
- ``captum_integrated_gradients``: ``IntegratedGradients`` on the logit from the same
  reference as baseline, ``ig_steps`` Gauss-Legendre steps, summed over channels.
- ``captum_gradcam``: ``LayerGradCam`` on the last ReLU of ``features`` (after conv5),
  positive part, upsampled bilinearly to the crop.

Every map is min-max rescaled to [0, 1] (:func:`denarius.engine.landmarks.result.rescale`),
as our maps are. Cost: forward 1, forward + backward 3 (our counter's units): occlusion
K + 1, saliency and Grad-CAM 3, integrated gradients 3 * ig_steps.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from denarius.engine.errors import ConfigError
from denarius.engine.landmarks.result import rescale
from denarius.engine.preprocess import normalize

__all__ = ["PEERS", "CAPTUM_METHODS", "CaptumPeers"]

logger = logging.getLogger(__name__)

CAPTUM_METHODS = ("captum_occlusion", "captum_saliency", "captum_integrated_gradients", "captum_gradcam")
PEERS = {"captum": CAPTUM_METHODS}  # --peers NAME -> the methods it adds


class CaptumPeers:
    """Captum's four attributions of one bundle model.

    Args:
        bundle: a loaded :class:`denarius.engine.bundle.Bundle`. name: its model ("emperor", "ric").
        window, stride: Captum Occlusion's sliding window and stride (px).
        ig_steps: integration steps of integrated gradients.
        methods: a subset of :data:`CAPTUM_METHODS`.
    """

    def __init__(self, bundle, name: str, *, window: int, stride: int, ig_steps: int = 32, methods=CAPTUM_METHODS):
        try:
            import captum.attr  # noqa: F401
            import torch
        except ImportError as error:
            raise ConfigError("--peers captum needs torch and captum: pip install 'denarius[train]'") from error
        from denarius.training.onnx_weights import model_from_onnx

        unknown = [m for m in methods if m not in CAPTUM_METHODS]
        if unknown:
            raise ConfigError(f"unknown Captum peers {unknown}; valid: {', '.join(CAPTUM_METHODS)}")
        if window < 1 or stride < 1 or ig_steps < 1:
            raise ConfigError(f"window, stride and ig_steps must be >= 1, got {window}, {stride}, {ig_steps}")
        info = bundle.models[name]
        self.spec = bundle.preprocess
        if window > self.spec.crop:
            raise ConfigError(f"window {window} is larger than the model's {self.spec.crop}-px input")
        self.window, self.stride, self.ig_steps = int(window), int(stride), int(ig_steps)
        self.methods = tuple(methods)
        self.model = model_from_onnx(bundle.file(name, "fp32"), num_classes=len(info.classes), input_size=info.input_size)
        for module in self.model.modules():  # Captum's hooks need the activations kept
            if isinstance(module, torch.nn.ReLU):
                module.inplace = False
        self._torch = torch

    def _probabilities(self, x):
        return self._torch.softmax(self.model(x), dim=1)

    def forward_equivalents(self, method: str) -> float:
        """Cost of one image's map in forward-pass equivalents (forward 1, + backward 3)."""
        if method == "captum_occlusion":
            shifts = int(np.ceil((self.spec.crop - self.window) / self.stride)) + 1  # Captum's window count per axis
            return float(shifts * shifts + 1)
        return float(3 * self.ig_steps) if method == "captum_integrated_gradients" else 3.0

    def heatmaps(self, crops: np.ndarray, targets, *, references: np.ndarray | None) -> tuple[dict, dict]:
        """Every peer's maps of a batch.

        Args:
            crops: (B, S, S, 3) uint8 RGB centre crops. targets: (B,) class indices.
            references: (B, S, S, 3) float32 in [0, 255], what a removed pixel becomes
                (None: black, pixel value 0).
        Returns:
            ``({method: (B, S, S) float32 in [0, 1]}, {method: seconds for the batch})``.
        """
        from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

        torch = self._torch
        x = torch.from_numpy(normalize(np.asarray(crops), self.spec))
        fill = np.zeros(np.shape(crops), np.float32) if references is None else np.asarray(references, np.float32)
        baseline = torch.from_numpy(normalize(fill, self.spec))
        target = torch.as_tensor(np.asarray(targets, np.int64))
        maps, seconds = {}, {}
        for method in self.methods:
            start = time.perf_counter()
            if method == "captum_occlusion":
                attr = Occlusion(self._probabilities).attribute(
                    x, sliding_window_shapes=(3, self.window, self.window), strides=(3, self.stride, self.stride),
                    baselines=baseline, target=target, perturbations_per_eval=64,
                ).mean(dim=1)
            elif method == "captum_saliency":
                attr = Saliency(self.model).attribute(x.clone().requires_grad_(True), target=target, abs=True).amax(dim=1)
            elif method == "captum_integrated_gradients":
                attr = IntegratedGradients(self.model).attribute(
                    x, baselines=baseline, target=target, n_steps=self.ig_steps, internal_batch_size=self.ig_steps,
                ).sum(dim=1)
            else:
                layer = self.model.features[11]  # ReLU after conv5, before the last max pool
                cam = LayerGradCam(self.model, layer).attribute(x, target=target, relu_attributions=True)
                attr = LayerAttribution.interpolate(cam, (x.shape[2], x.shape[3]), interpolate_mode="bilinear")[:, 0]
            seconds[method] = time.perf_counter() - start
            maps[method] = np.stack([rescale(a) for a in attr.detach().numpy()])
        return maps, seconds
