"""The ONE image pipeline: decode, background removal, square resize, crop, normalise.

Training, export calibration, the engine, the landmark optimiser and the scanner all call
these functions; nobody re-implements normalisation. The parameters are one frozen
dataclass, :class:`PreprocessSpec`, that the model bundle's manifest carries.

Stages and their outputs::

    decode_image(source)          (H, W, 3) uint8 RGB            engine/imageio.py
    canonical_image(source, spec) (resize, resize, 3) uint8 RGB  coin centred, background blanked
    crop_image(canonical, spec)   (crop, crop, 3) uint8 RGB      centre, or random with an RNG
    normalize(images, spec)       (..., 3, crop, crop) float32   (x/255 - mean) / std, channels first
    network_input(source, spec)   (3, crop, crop) float32        the three above for the centre crop, warped
                                                                 straight to the crop (inference's hot path)
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from denarius.engine.errors import ConfigError, InputError
from denarius.engine.imageio import decode_image, read_bytes, read_header

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_PIXELS_CEILING",
    "SIDE_CEILING",
    "PreprocessSpec",
    "CoinDisc",
    "coin_mask",
    "canonical_transform",
    "decode_side",
    "locate_coin",
    "warp_canonical",
    "canonical_image",
    "crop_image",
    "network_input",
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
PIPELINE_VERSIONS = (1, 2)
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
        pipeline_version: how the pixels are reached (part of the contract between training
            and serving, so a bundle keeps the pipeline its models were trained with):
            1 decodes a JPEG at a DCT scale keeping at least 2x the canonical side and makes
            the coin analysis' working copy with one INTER_AREA resize (bundles written
            before version 2 existed read as 1); 2 (the default) decodes at the coarsest
            scale keeping 1.25x (finer again when the coin turns out small) and makes the
            working copy by exact halvings and one bilinear step, ~2x cheaper on a 500-px
            JPEG. See :func:`decode_side` and tests/engine/test_preprocess_reference.py.

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
    pipeline_version: int = 2

    def __post_init__(self):
        _check_int("resize", self.resize, 16, SIDE_CEILING)
        _check_int("crop", self.crop, 16, self.resize)
        _check_int("max_pixels", self.max_pixels, 1, MAX_PIXELS_CEILING)
        _check_int("min_side", self.min_side, 1, SIDE_CEILING)
        if self.pipeline_version not in PIPELINE_VERSIONS or isinstance(self.pipeline_version, bool):
            raise ConfigError(f"pipeline_version must be one of {list(PIPELINE_VERSIONS)}, got {self.pipeline_version!r}")
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
        values.setdefault("pipeline_version", 1)  # written before the field existed: the pipeline of then
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


def _working_copy(rgb: np.ndarray, pipeline_version: int) -> tuple[np.ndarray, float]:
    """``rgb`` shrunk to at most :data:`_WORK_SIDE` px on its longer side, and the scale used.

    Version 1: one INTER_AREA resize. Version 2: halvings first (bilinear at exactly 1/2
    averages each 2 x 2 block, as INTER_AREA would, at a fifth of its cost), then one
    bilinear step of less than 2x.
    """
    height, width = rgb.shape[:2]
    scale = min(1.0, _WORK_SIDE / max(height, width))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    if pipeline_version == 1:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale
    small = rgb
    while small.shape[1] >= 2 * size[0] and small.shape[0] >= 2 * size[1]:
        even = small[: small.shape[0] // 2 * 2, : small.shape[1] // 2 * 2]
        small = cv2.resize(even, (even.shape[1] // 2, even.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if (small.shape[1], small.shape[0]) != size:
        small = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    return small, scale


def _border_values(image: np.ndarray, band: int) -> np.ndarray:
    """The pixels of the ``band``-px frame along the image border, each once: (N, ...) values."""
    inner = image[band:-band]
    strips = (image[:band], image[-band:], inner[:, :band], inner[:, -band:])
    return np.concatenate([strip.reshape(-1, *image.shape[2:]) for strip in strips])


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of a 1-D array, by one partition."""
    position = q / 100.0 * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    part = np.partition(values, (low, high))
    return float(part[low] + (part[high] - part[low]) * (position - low))


def coin_mask(rgb: np.ndarray, *, pipeline_version: int = 2) -> CoinDisc | None:
    """Locate the coin disc in a product-style photo.

    The background is modelled from a strip along the image border (plain, textured or
    shaded); pixels far from it in Lab colour or in local texture are foreground. The
    largest foreground component, hole-filled and replaced by its convex hull, is the coin.
    The analysis runs on a copy downscaled to 128 px.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        pipeline_version: how the working copy is made (see :class:`PreprocessSpec`).
    Returns:
        a :class:`CoinDisc`, or None when no plausible coin is found (tiny component, or
        foreground everywhere such as a tight crop).
    """
    small, scale = _working_copy(rgb, pipeline_version)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)  # (h, w, 3) uint8
    h, w = lab.shape[:2]
    band = max(2, round(0.05 * min(h, w)))

    # Colour distance to the border's median colour, in units of the border's own spread.
    # Lab is 8-bit, so the squared distance per channel is a 256-entry table.
    border = _border_values(lab, band)  # (N, 3) uint8
    middle = np.partition(border, ((len(border) - 1) // 2, len(border) // 2), axis=0)
    median = (middle[(len(border) - 1) // 2].astype(np.float32) + middle[len(border) // 2]) / 2.0
    levels = np.arange(256, dtype=np.float32)[:, None]
    squares = ((levels - median[None, :]) ** 2).reshape(1, 256, 3)  # (1, 256, 3) float32
    dist = cv2.sqrt(cv2.transform(cv2.LUT(lab, squares), np.ones((1, 3), np.float32)))  # (h, w) float32
    # Local texture: struck relief has edges everywhere; cloth has them too, so texture is
    # judged against the border's own texture level.
    texture = cv2.blur(np.abs(cv2.Laplacian(lab[:, :, 0], cv2.CV_32F)), (5, 5))
    dist_level = _percentile(_border_values(dist, band), 95) + 4.0
    texture_level = _percentile(_border_values(texture, band), 95) + 4.0
    fg: np.ndarray = (dist / dist_level + texture / texture_level > 1.0).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    # The texture blur and the rim's own edge response spread the score ~2 px outwards.
    fg = cv2.erode(fg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))

    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8, ltype=cv2.CV_16U)
    if count <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = stats[best, cv2.CC_STAT_AREA]
    if area < 0.02 * h * w or area > 0.97 * h * w:
        return None
    component = (labels == best).astype(np.uint8)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [hull], 1)
    # A cast shadow (or a second object touching the coin) makes the blob much larger than
    # the largest disc inside it. Coins are round: keep the hull only near that disc.
    framed = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # the image edge is outside
    inside = cv2.distanceTransform(framed, cv2.DIST_L2, 5)[1:-1, 1:-1]
    r_in = float(inside.max())
    if cv2.countNonZero(mask) > 1.2 * np.pi * r_in**2:
        iy, ix = np.unravel_index(int(np.argmax(inside)), inside.shape)
        disc = np.zeros_like(mask)
        cv2.circle(disc, (int(ix), int(iy)), int(np.ceil(r_in * 1.08)), 1, thickness=-1)
        # The hull of the foreground pixels near that disc: no background sliver where the
        # disc overshoots the rim on the side away from the shadow.
        hull = cv2.convexHull(cv2.findNonZero(component & disc))
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [hull], 1)
    (cx, cy), radius = cv2.minEnclosingCircle(hull)
    return CoinDisc(mask=mask.astype(bool), scale=scale, cx=cx / scale, cy=cy / scale, radius=radius / scale)


def _square_transform(shape: tuple[int, ...], disc: CoinDisc | None, spec: PreprocessSpec) -> np.ndarray:
    """(2, 3) float64 affine map, image (x, y) -> canonical (x, y), for an image of ``shape``."""
    height, width = shape[:2]
    if disc is not None:
        cx, cy, half = disc.cx, disc.cy, disc.radius * (1.0 + spec.coin_margin)
    else:
        cx, cy, half = width / 2.0, height / 2.0, max(width, height) / 2.0
    scale = spec.resize / (2.0 * half)
    return np.array([[scale, 0.0, spec.resize / 2.0 - scale * cx], [0.0, scale, spec.resize / 2.0 - scale * cy]])


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
    disc = coin_mask(rgb, pipeline_version=spec.pipeline_version) if spec.remove_background else None
    return _square_transform(rgb.shape, disc, spec), disc


# A JPEG is decoded at the coarsest DCT scale (1/2, 1/4, 1/8) whose shorter side is at least
# this many times the canonical side, by pipeline version. Version 2: a coin fills most of a
# product photo, so its disc still meets the canonical size from that decode; when the coin
# found is smaller (the warp would enlarge it), the photo is decoded again at the scale that
# needs no enlarging, and the disc found is reused.
_DECODE_MARGIN = {1: 2.0, 2: 1.25}


def decode_side(spec: PreprocessSpec) -> int:
    """The shorter side (px) a JPEG is first decoded to keep for ``spec``'s canonical image."""
    return math.ceil(_DECODE_MARGIN[spec.pipeline_version] * spec.resize)


def locate_coin(source: Source, spec: PreprocessSpec, *, side: str | None = None) -> tuple[np.ndarray, CoinDisc | None, np.ndarray]:
    """Decode ``source`` as finely as its canonical image needs and find the coin.

    Returns:
        ``(rgb, disc, matrix)``: the (H, W, 3) uint8 decode, the coin or None, and the (2, 3)
        map from that decode's pixels to canonical pixels.
    """
    data = source if isinstance(source, np.ndarray) else read_bytes(source)
    try:
        rgb = decode_image(data, max_pixels=spec.max_pixels, min_side=spec.min_side, keep_side=decode_side(spec))
        matrix, disc = canonical_transform(rgb, spec)
        if spec.pipeline_version >= 2 and matrix[0, 0] > 1.0 and not isinstance(data, np.ndarray):
            rgb, disc, matrix = _decode_finer(data, rgb, disc, matrix, spec)
    except InputError as error:
        raise InputError(error.reason, side=side) from None
    return rgb, disc, matrix


def _decode_finer(data: bytes, rgb: np.ndarray, disc: CoinDisc | None, matrix: np.ndarray,
                  spec: PreprocessSpec) -> tuple[np.ndarray, CoinDisc | None, np.ndarray]:
    """The JPEG ``data`` decoded again at the coarsest DCT scale that needs no enlarging, when
    the warp ``matrix`` would enlarge the reduced decode ``rgb``; the disc found is rescaled,
    not searched again. Returns ``(rgb, disc, matrix)``, the inputs when no finer scale helps."""
    header = read_header(data)
    factor = max(1, round(header.width / rgb.shape[1]))  # the DCT scale of the first decode
    finer = factor
    while finer > 1 and matrix[0, 0] * finer / factor > 1.0:
        finer //= 2
    if finer == factor:
        return rgb, disc, matrix
    rgb = decode_image(data, max_pixels=spec.max_pixels, min_side=spec.min_side, keep_side=min(header.width, header.height) // finer)
    ratio = rgb.shape[1] / header.width * factor
    if disc is not None:
        disc = CoinDisc(mask=disc.mask, scale=disc.scale / ratio, cx=disc.cx * ratio, cy=disc.cy * ratio, radius=disc.radius * ratio)
    return rgb, disc, _square_transform(rgb.shape, disc, spec)


def warp_canonical(rgb: np.ndarray, disc: CoinDisc | None, matrix: np.ndarray, side_px: int, offset: int) -> np.ndarray:
    """The canonical image's square [offset, offset + side_px) of ``rgb``: (side_px, side_px, 3) uint8.

    One affine warp does the square crop (padding with black) and the resize together; the
    background is blanked in canonical space by warping the working-resolution mask there.
    """
    shifted = matrix.copy()
    shifted[:, 2] -= offset
    interpolation = cv2.INTER_AREA if shifted[0, 0] < 1.0 else cv2.INTER_LINEAR
    size = (side_px, side_px)
    canonical = cv2.warpAffine(rgb, shifted, size, flags=interpolation, borderValue=(0, 0, 0))
    if disc is not None:
        shifted[:, :2] /= disc.scale
        mask = cv2.warpAffine(disc.mask.astype(np.uint8) * 255, shifted, size, flags=cv2.INTER_LINEAR)
        np.multiply(canonical, (mask >= 128)[:, :, None], out=canonical)  # the background to 0
    return canonical


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

    A JPEG is decoded at the coarsest DCT scale its pipeline version allows (see
    :func:`decode_side`); tests/engine/test_preprocess_reference.py states how close each
    version's network input stays to the reference.
    """
    rgb, disc, matrix = locate_coin(source, spec, side=side)
    return warp_canonical(rgb, disc, matrix, spec.resize, 0)


def network_input(source: Source, spec: PreprocessSpec = PreprocessSpec(), *, side: str | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """One image -> (3, crop, crop) float32 centre-crop network input, written into ``out`` if given.

    The same pixels as ``normalize(crop_image(canonical_image(source)))``, but the warp
    produces only the centre crop.
    """
    rgb, disc, matrix = locate_coin(source, spec, side=side)
    crop = warp_canonical(rgb, disc, matrix, spec.crop, (spec.resize - spec.crop) // 2)
    return normalize(crop, spec, out=out)


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


def normalize(images: np.ndarray, spec: PreprocessSpec = PreprocessSpec(), *, out: np.ndarray | None = None) -> np.ndarray:
    """(..., H, W, 3) uint8 or float in [0, 255] RGB -> (..., 3, H, W) float32 normalised.

    uint8 input goes through a per-channel 256-entry lookup table: one pass per channel,
    written straight into the channels-first output (the hot path of every request), which
    is ``out`` when given (a (..., 3, H, W) float32 array, e.g. a row of a batch buffer).
    """
    images = np.asarray(images)
    shape = (*images.shape[:-3], 3, *images.shape[-3:-1])
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ConfigError(f"normalize: out must be {shape} float32, got {out.shape} {out.dtype}")
    if images.dtype == np.uint8:
        table = _lookup_table(spec)
        for channel in range(3):
            np.take(table[channel], images[..., channel], out=out[..., channel, :, :])
    else:
        mean = np.asarray(spec.mean, np.float32)
        inv_std = np.float32(1.0) / np.asarray(spec.std, np.float32)
        for channel in range(3):
            out[..., channel, :, :] = (images[..., channel].astype(np.float32) * np.float32(1.0 / 255.0) - mean[channel]) * inv_std[channel]
    return out


@functools.lru_cache(maxsize=16)
def _lookup_table(spec: PreprocessSpec) -> np.ndarray:
    """(3, 256) float32: the normalised value of each 8-bit level, per channel."""
    mean = np.asarray(spec.mean, np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, np.float32)
    table = (np.arange(256, dtype=np.float32)[None, :] * np.float32(1.0 / 255.0) - mean[:, None]) * inv_std[:, None]
    table.setflags(write=False)
    return table


def denormalize(tensor: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Inverse of :func:`normalize`: (..., 3, H, W) float32 -> (..., H, W, 3) uint8 RGB."""
    hwc = np.moveaxis(np.asarray(tensor, np.float32), -3, -1)
    pixels = (hwc * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)) * 255.0
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def preprocess(
    source: Source, spec: PreprocessSpec = PreprocessSpec(), *, rng: np.random.Generator | None = None, side: str | None = None
) -> np.ndarray:
    """One image -> (3, crop, crop) float32 network input (a random crop when ``rng`` is given)."""
    if rng is None:
        return network_input(source, spec, side=side)
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
    out = np.empty((len(sources), 3, spec.crop, spec.crop), np.float32)
    for i, source in enumerate(sources):
        try:
            if rng is None:
                network_input(source, spec, side=side, out=out[i])
            else:
                normalize(crop_image(canonical_image(source, spec, side=side), spec, rng=rng), spec, out=out[i])
        except InputError as error:
            raise InputError(f"image {i}: {error.reason}", side=error.side) from None
    return out
