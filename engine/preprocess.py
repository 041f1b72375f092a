"""The ONE image pipeline: decode, background removal, square resize, crop, normalise.

Training, export calibration, the engine, the landmark optimiser and the scanner all call
these functions; nobody re-implements normalisation. The parameters are one frozen
dataclass, :class:`PreprocessSpec`, that the model bundle's manifest carries.

Stages and their outputs::

    decode_image(source)          (H, W, 3) uint8 RGB            engine/imageio.py
    canonical_image(source, spec) (resize, resize, 3) uint8 RGB  coin centred, background blanked
    crop_image(canonical, spec)   (crop, crop, 3) uint8 RGB      centre, or random with an RNG
    normalize(images, spec)       (..., 3, crop, crop) float32   (x/255 - mean) / std, channels first
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from denarius.engine.errors import ConfigError, InputError
from denarius.engine.imageio import decode_image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_PIXELS_CEILING",
    "SIDE_CEILING",
    "PreprocessSpec",
    "CoinDisc",
    "coin_mask",
    "canonical_transform",
    "canonical_image",
    "crop_image",
    "normalize",
    "denormalize",
    "preprocess",
    "preprocess_batch",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The runtime's own maxima: no PreprocessSpec (a bundle's manifest, a checkpoint, a flag) may
# exceed them. 40 Mpx is the default per-image limit, which the decode budget's per-image cap
# (640 MiB, engine/decode_budget.py) admits even as RGBA 16-bit; 4096 px bounds every side.
MAX_PIXELS_CEILING = 40_000_000
SIDE_CEILING = 4096
Source = bytes | str | os.PathLike | np.ndarray


def _check_int(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in [low, high]; ConfigError naming ``name`` otherwise (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ConfigError(f"{name} must be in [{low:,}, {high:,}], got {int(value):,}")
    return int(value)


def _check_float(name: str, value, low: float, high: float) -> float:
    """``value`` as a finite float in [low, high]; ConfigError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise ConfigError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")
    return number


@dataclass(frozen=True)
class PreprocessSpec:
    """Input contract of a Denarius model; stored in every checkpoint and bundle.

    Attributes:
        resize: side of the square canonical image (the paper: 256).
        crop: side of the network input (the paper: 224); centre crop at inference.
        mean, std: per-channel normalisation in RGB order, on [0, 1] pixel values.
        channel_order: "RGB" (the only order the models are trained with).
        remove_background: find the coin disc and blank everything outside it.
        coin_margin: fraction of the coin diameter kept around it in the canonical image.
        max_pixels: images whose header claims more pixels are refused before decoding
            (at most :data:`MAX_PIXELS_CEILING`).
        min_side: images with a shorter side are refused (a 1x1 "photo" is an error).

    Every field is checked against the runtime's own bounds (:data:`SIDE_CEILING`,
    :data:`MAX_PIXELS_CEILING`, finite floats), so a bundle's manifest cannot lift a limit.

    Raises:
        ConfigError: a field of the wrong type or out of bounds; the message names it.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    remove_background: bool = True
    coin_margin: float = 0.04
    max_pixels: int = 40_000_000
    min_side: int = 16

    def __post_init__(self):
        _check_int("resize", self.resize, 16, SIDE_CEILING)
        _check_int("crop", self.crop, 16, self.resize)
        _check_int("max_pixels", self.max_pixels, 1, MAX_PIXELS_CEILING)
        _check_int("min_side", self.min_side, 1, SIDE_CEILING)
        if self.channel_order != "RGB":
            raise ConfigError(f"channel_order must be 'RGB', got {self.channel_order!r}")
        if not isinstance(self.remove_background, bool):
            raise ConfigError(f"remove_background must be true or false, got {self.remove_background!r}")
        _check_float("coin_margin", self.coin_margin, 0.0, 1.0)
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not isinstance(values, (tuple, list)) or len(values) != 3:
                raise ConfigError(f"{name} needs 3 values (R, G, B), got {values!r}")
            low = 1e-3 if name == "std" else -1e3
            object.__setattr__(self, name, tuple(_check_float(name, v, low, 1e3) for v in values))

    @classmethod
    def for_input_size(cls, crop: int, **overrides) -> PreprocessSpec:
        """Spec for a network input of ``crop`` px, keeping the paper's 256/224 ratio."""
        return cls(resize=int(round(crop * 256 / 224)), crop=crop, **overrides)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown preprocessing keys {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


# --------------------------------------------------------------------------- background


@dataclass(frozen=True)
class CoinDisc:
    """Where the coin is: a foreground mask at a working resolution and its enclosing circle.

    Attributes:
        mask: (h, w) bool at the working resolution (``scale`` times the image size).
        scale: working / original resolution.
        cx, cy, radius: enclosing circle of the coin in original-image pixels.
    """

    mask: np.ndarray
    scale: float
    cx: float
    cy: float
    radius: float

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask at the original image's (H, W), bool."""
        return cv2.resize(self.mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


_WORK_SIDE = 128  # background analysis resolution: enough for a disc, cheap on 2 cores


def coin_mask(rgb: np.ndarray) -> CoinDisc | None:
    """Locate the coin disc in a product-style photo.

    The background is modelled from a strip along the image border (plain, textured or
    shaded); pixels far from it in Lab colour or in local texture are foreground. The
    largest foreground component, hole-filled and replaced by its convex hull, is the coin.
    The analysis runs on a copy downscaled to 128 px.

    Args:
        rgb: (H, W, 3) uint8 RGB.
    Returns:
        a :class:`CoinDisc`, or None when no plausible coin is found (tiny component, or
        foreground everywhere such as a tight crop).
    """
    height, width = rgb.shape[:2]
    scale = min(1.0, _WORK_SIDE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    h, w = lab.shape[:2]
    band = max(2, round(0.05 * min(h, w)))
    border = np.zeros((h, w), bool)
    border[:band], border[-band:], border[:, :band], border[:, -band:] = True, True, True, True

    # Colour distance to the border's median colour, in units of the border's own spread.
    diff = lab - np.median(lab[border], axis=0)
    dist = np.sqrt(np.einsum("hwc,hwc->hw", diff, diff))
    # Local texture: struck relief has edges everywhere; cloth has them too, so texture is
    # judged against the border's own texture level.
    texture = cv2.blur(np.abs(cv2.Laplacian(lab[:, :, 0], cv2.CV_32F)), (5, 5))
    score = dist / (np.percentile(dist[border], 95) + 4.0) + texture / (np.percentile(texture[border], 95) + 4.0)
    fg = (score > 1.0).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    # The texture blur and the rim's own edge response spread the score ~2 px outwards.
    fg = cv2.erode(fg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))

    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = stats[best, cv2.CC_STAT_AREA]
    if area < 0.02 * h * w or area > 0.97 * h * w:
        return None
    contours, _ = cv2.findContours((labels == best).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [hull], 1)
    # A cast shadow (or a second object touching the coin) makes the blob much larger than
    # the largest disc inside it. Coins are round: keep the hull only near that disc.
    inside = cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    r_in = float(inside.max())
    if mask.sum() > 1.2 * np.pi * r_in**2:
        iy, ix = np.unravel_index(int(np.argmax(inside)), inside.shape)
        disc = np.zeros_like(mask)
        cv2.circle(disc, (int(ix), int(iy)), int(np.ceil(r_in * 1.08)), 1, thickness=-1)
        # The hull of the foreground pixels near that disc: no background sliver where the
        # disc overshoots the rim on the side away from the shadow.
        hull = cv2.convexHull(cv2.findNonZero((labels == best).astype(np.uint8) & disc))
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [hull], 1)
    (cx, cy), radius = cv2.minEnclosingCircle(hull)
    return CoinDisc(mask=mask.astype(bool), scale=scale, cx=cx / scale, cy=cy / scale, radius=radius / scale)


def canonical_transform(rgb: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> tuple[np.ndarray, CoinDisc | None]:
    """The affine map from a decoded photo to its canonical image, and the coin found.

    With background removal the square is centred on the coin disc (diameter plus
    ``coin_margin``); without it (or when no coin is found) the whole image is padded to a
    square, aspect kept.

    Args:
        rgb: (H, W, 3) uint8 RGB decoded photo.
    Returns:
        ``(matrix, disc)``: (2, 3) float64 affine matrix, photo (x, y) -> canonical (x, y)
        pixel coordinates; the :class:`CoinDisc` or None.
    """
    height, width = rgb.shape[:2]
    disc = coin_mask(rgb) if spec.remove_background else None
    if disc is not None:
        cx, cy, half = disc.cx, disc.cy, disc.radius * (1.0 + spec.coin_margin)
    else:
        cx, cy, half = width / 2.0, height / 2.0, max(width, height) / 2.0
    scale = spec.resize / (2.0 * half)
    matrix = np.array([[scale, 0.0, spec.resize / 2.0 - scale * cx], [0.0, scale, spec.resize / 2.0 - scale * cy]])
    return matrix, disc


def canonical_image(source: Source, spec: PreprocessSpec = PreprocessSpec(), *, side: str | None = None) -> np.ndarray:
    """Decode, blank the background and resize to the square canonical image.

    See :func:`canonical_transform` for where the square lies.

    Args:
        source: encoded bytes, a path, or a decoded (H, W, 3) uint8 RGB array.
        side: "obverse"/"reverse", only used to name the side in error messages.
    Returns:
        (spec.resize, spec.resize, 3) uint8 RGB.
    Raises:
        InputError: the image cannot be decoded, is out of bounds or needs more decode memory
            than the budget's per-image cap (message names the side).
        Overloaded: the process' decode budget stayed full (see engine/decode_budget.py).

    A JPEG at least 2x/4x/8x the needed side is decoded at that DCT scale; the network input
    then stays within a mean |difference| of 0.05 (normalised units, about 3 levels in 255)
    of the full decode's (tests/engine/test_decode_budget.py).
    """
    try:
        # A coin fills most of a product photo: twice the canonical side keeps full detail.
        rgb = decode_image(source, max_pixels=spec.max_pixels, min_side=spec.min_side, keep_side=2 * spec.resize)
    except InputError as error:
        raise InputError(error.reason, side=side) from None
    matrix, disc = canonical_transform(rgb, spec)
    # One affine warp does the square crop (padding with black) and the resize together.
    interpolation = cv2.INTER_AREA if matrix[0, 0] < 1.0 else cv2.INTER_LINEAR
    size = (spec.resize, spec.resize)
    canonical = cv2.warpAffine(rgb, matrix, size, flags=interpolation, borderValue=(0, 0, 0))
    if disc is not None:
        # Blank the background in canonical space: warp the working-resolution mask there.
        mask_matrix = matrix.copy()
        mask_matrix[:, :2] /= disc.scale
        mask = cv2.warpAffine(disc.mask.astype(np.uint8) * 255, mask_matrix, size, flags=cv2.INTER_LINEAR)
        canonical[mask < 128] = 0
    return canonical


def crop_image(canonical: np.ndarray, spec: PreprocessSpec = PreprocessSpec(), *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop the network input from a canonical image.

    Args:
        canonical: (resize, resize, 3) uint8.
        rng: None for the centre crop (inference); a Generator for a random crop (training).
    Returns:
        (crop, crop, 3) uint8, a view into ``canonical``.
    """
    slack = canonical.shape[0] - spec.crop
    if slack < 0:
        raise ConfigError(f"canonical image {canonical.shape[:2]} smaller than crop {spec.crop}")
    if rng is None:
        top = left = slack // 2
    else:
        top, left = (int(v) for v in rng.integers(0, slack + 1, size=2))
    return canonical[top : top + spec.crop, left : left + spec.crop]


def normalize(images: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """(..., H, W, 3) uint8 or float in [0, 255] RGB -> (..., 3, H, W) float32 normalised.

    uint8 input goes through a per-channel 256-entry lookup table: one pass per channel,
    written straight into the channels-first output (the hot path of every request).
    """
    images = np.asarray(images)
    out = np.empty((*images.shape[:-3], 3, *images.shape[-3:-1]), np.float32)
    mean = np.asarray(spec.mean, np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, np.float32)
    if images.dtype == np.uint8:
        table = (np.arange(256, dtype=np.float32)[None, :] * np.float32(1.0 / 255.0) - mean[:, None]) * inv_std[:, None]
        for channel in range(3):
            np.take(table[channel], images[..., channel], out=out[..., channel, :, :])
    else:
        for channel in range(3):
            out[..., channel, :, :] = (images[..., channel].astype(np.float32) * np.float32(1.0 / 255.0) - mean[channel]) * inv_std[channel]
    return out


def denormalize(tensor: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Inverse of :func:`normalize`: (..., 3, H, W) float32 -> (..., H, W, 3) uint8 RGB."""
    hwc = np.moveaxis(np.asarray(tensor, np.float32), -3, -1)
    pixels = (hwc * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)) * 255.0
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def preprocess(
    source: Source, spec: PreprocessSpec = PreprocessSpec(), *, rng: np.random.Generator | None = None, side: str | None = None
) -> np.ndarray:
    """One image -> (3, crop, crop) float32 network input."""
    return normalize(crop_image(canonical_image(source, spec, side=side), spec, rng=rng), spec)


def preprocess_batch(
    sources: Sequence[Source],
    spec: PreprocessSpec = PreprocessSpec(),
    *,
    rng: np.random.Generator | None = None,
    side: str | None = None,
) -> np.ndarray:
    """Many images -> (N, 3, crop, crop) float32; identical to stacking :func:`preprocess`.

    Raises:
        InputError: naming the index of the first bad image. Callers that must not let one
            bad image fail the others (the engine, the scanner) preprocess item by item.
    """
    crops = np.empty((len(sources), spec.crop, spec.crop, 3), np.uint8)
    for i, source in enumerate(sources):
        try:
            crops[i] = crop_image(canonical_image(source, spec, side=side), spec, rng=rng)
        except InputError as error:
            raise InputError(f"image {i}: {error.reason}", side=error.side) from None
    return normalize(crops, spec)
