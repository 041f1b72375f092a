"""The two baselines of the paper, over the same regions and with the same output.

- :func:`occlusion` (Zeiler & Fergus): blank each region (an occluder w x w slid with
  stride 3, or a superpixel) and record the drop of the class probability
  p(c | I) - p(c | I with r_k blanked); the per-pixel map averages the drops of all
  regions covering a pixel (C * sum_k drop_k I_k, the same composition as the optimiser).
  The occluder is the optimiser's reference, so "removed" means the same for both
  methods: the region blurred (default), or black (pixel value 0, the paper's masking).
  Occluded images go through the network in batches; the cost is K + 1 forward passes.
- :func:`saliency` (Simonyan et al.): one forward + backward pass of the gradient graph
  gives d loss / d I with loss = -log p(c | I) = -(S_c - logsumexp S); saliency is the max
  over channels of its absolute value in [0, 255] pixel space (so the per-channel
  normalisation does not reweight channels). This is the gradient of the log-probability,
  not of the raw score S_c (the bundle's gradient graph differentiates the loss); for a
  confident prediction the two agree. The moving average with the window size is the mean
  saliency of each region, spread back by the composition (so a pixel averages the
  windows covering it); with superpixels it is the superpixel mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from denarius.engine.errors import Cancelled, InputError
from denarius.engine.landmarks import composition
from denarius.engine.landmarks.model import LandmarkModel, softmax
from denarius.engine.landmarks.regions import Regions
from denarius.engine.preprocess import normalize

__all__ = ["BaselineResult", "occlusion", "saliency"]


@dataclass
class BaselineResult:
    """Per-image outcome of a baseline (arrays have B rows).

    Attributes:
        scores: (B, K) float32 per-region score (probability drop, or mean saliency).
        heatmaps: (B, H, W) float32 per-pixel map, C * sum_k score_k I_k (not rescaled).
        targets: (B,) int64. p_full: (B,) float64 p(c | I).
        forward_equivalents: (B,) float64. seconds: wall time of the batch.
    """

    scores: np.ndarray
    heatmaps: np.ndarray
    targets: np.ndarray
    p_full: np.ndarray
    forward_equivalents: np.ndarray
    seconds: float


def _check_images(images: np.ndarray, regions: Regions) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"images must be (B, H, W, 3), got shape {images.shape}")
    if images.shape[1:3] != (regions.height, regions.width):
        raise InputError(f"images of size {images.shape[1:3]} do not match regions of size {(regions.height, regions.width)}")
    return images


def _targets(targets, probs: np.ndarray) -> np.ndarray:
    if targets is None:
        return probs.argmax(axis=1).astype(np.int64)
    targets = np.broadcast_to(np.asarray(targets, np.int64), (len(probs),)).copy()
    if targets.min(initial=0) < 0 or targets.max(initial=0) >= probs.shape[1]:
        raise InputError(f"target indices must lie in [0, {probs.shape[1]}), got {targets.tolist()}")
    return targets


def occlusion(
    model: LandmarkModel,
    images: np.ndarray,
    regions: Regions,
    *,
    targets=None,
    batch_size: int = 64,
    reference: np.ndarray | None = None,
    should_stop=None,
    progress: bool = False,
) -> BaselineResult:
    """Occlusion sensitivity.

    Args:
        images: (B, H, W, 3) uint8 (or float in [0, 255]) crops at the model's input size.
        regions: occluder positions (windows w x w with stride 3 in the paper) or superpixels.
        targets: None (predicted class) or (B,) class indices.
        batch_size: occluded images per forward call.
        reference: (B, H, W, 3) what an occluded region becomes
            (:func:`denarius.engine.landmarks.composition.reference_images`); None: black.
        should_stop: optional callable checked before every forward call; True raises
            :class:`denarius.engine.errors.Cancelled`.
    Returns:
        :class:`BaselineResult` with scores = probability drops (can be negative).
    """
    start = time.perf_counter()
    images = _check_images(images, regions)
    if reference is not None and np.shape(reference) != images.shape:
        raise InputError(f"reference of shape {np.shape(reference)} does not match images of shape {images.shape}")
    spec = model.spec
    probs = softmax(model.logits(normalize(images, spec)))
    targets = _targets(targets, probs)
    p_full = probs[np.arange(len(images)), targets]
    k = regions.count
    scores = np.zeros((len(images), k), np.float32)
    chunks = [(b, lo) for b in range(len(images)) for lo in range(0, k, batch_size)]
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="occlusion", unit="batch", leave=False)
    for done, (b, lo) in enumerate(chunks):
        if should_stop is not None and should_stop():
            raise Cancelled(f"occlusion stopped after {done} of {len(images) * -(-k // batch_size)} batches: the caller gave up")
        ks = np.arange(lo, min(k, lo + batch_size))
        occluded = composition.replace_pixels(images[b], regions.indicator(ks), None if reference is None else reference[b])
        p = softmax(model.logits(normalize(occluded, spec)))[:, targets[b]]
        scores[b, ks] = p_full[b] - p
    heatmaps = composition.mask_weights(regions, scores)
    return BaselineResult(scores, heatmaps, targets, p_full, np.full(len(images), 1.0 + k), time.perf_counter() - start)


def saliency(model: LandmarkModel, images: np.ndarray, regions: Regions, *, targets=None) -> BaselineResult:
    """Gradient saliency, smoothed by the regions (see module docstring).

    Returns:
        :class:`BaselineResult` with scores = mean saliency per region (>= 0).
    """
    start = time.perf_counter()
    images = _check_images(images, regions)
    spec = model.spec
    probe = normalize(images, spec)
    if targets is None:
        cost = 4.0  # one forward pass to find the predicted class, then forward + backward
        targets = model.logits(probe).argmax(axis=1)
    else:
        cost = 3.0
    targets = np.broadcast_to(np.asarray(targets, np.int64), (len(images),)).copy()
    if targets.min(initial=0) < 0 or targets.max(initial=0) >= len(model.classes):
        raise InputError(f"target indices must lie in [0, {len(model.classes)}), got {targets.tolist()}")
    logits, _, grad = model.loss_and_grad(probe, targets)
    p_full = softmax(logits)[np.arange(len(images)), targets]
    pixel = np.abs(composition.pixel_gradient(grad, spec)).max(axis=-1)  # (B, H, W)
    area = regions.areas().astype(np.float32)
    scores = composition.region_sums(regions, pixel) / np.maximum(area, 1.0)
    heatmaps = composition.mask_weights(regions, scores)
    return BaselineResult(scores, heatmaps, targets, p_full, np.full(len(images), cost), time.perf_counter() - start)
