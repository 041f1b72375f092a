"""The flan outline of a photographed coin, to sub-pixel precision, and how well two agree.

Die-mates share every line of the design; what tells them apart is the flan: its outline,
and where the die met it (how large the design is on the flan, how far off centre, at what
turn). Verification (``verify.py``) fits the similarity that carries the query's design
onto the listed photo's design; under it, the same specimen's flan outline lands on the
listed outline, a die-mate's does not (another flan radius, other bumps, another
off-centre strike).

The outline is found along :data:`RAYS` rays from the coin disc's centre
(:func:`denarius.engine.preprocess.coin_mask`, found at 128 px): on each ray the
outermost *sharp* colour edge (the flan's rim against the background; a cast shadow's
edge is soft, the beaded border lies inside). Two passes: the first within a band about
the coarse coin mask's boundary on each ray (an edge further out is the background's:
cloth, a faint shadow), the second in a band about a robust Fourier fit of the first.
Rays that leave the photo, or whose edge strays from the fit, are NaN.
"""

from __future__ import annotations

import cv2
import numpy as np

from denarius.engine.preprocess import CoinDisc

__all__ = ["RAYS", "flan_outline", "outline_residual"]

RAYS = 128
_HARMONICS = 8  # the robust fit's order: flans are smooth, with a few bumps
_STEP_PX = 0.5  # sampling step along a ray
_SHARP_SIGMA_PX = 1.0
_WIDE_SIGMA_PX = 4.0
_MIN_PEAK_FRACTION = 0.3  # of the ray's strongest edge
_MIN_SHARPNESS = 1.8  # sharp/wide gradient ratio; ~2.8 for a 1-px edge, ~1.1 for a shadow's
_ANGLES = np.linspace(0.0, 2.0 * np.pi, RAYS, endpoint=False)
# (RAYS, 1 + 2 * _HARMONICS): r(theta) = a0 + sum_k a_k cos k theta + b_k sin k theta
_DESIGN = np.stack([np.ones(RAYS)] + [f(k * _ANGLES) for k in range(1, _HARMONICS + 1) for f in (np.cos, np.sin)], axis=1)
# the residual is this quantile of the rays' distances: a stretch of rim taken from the
# background (cloth, a hard shadow) moves the median, not the rays that found the rim
_RESIDUAL_QUANTILE = 0.4
_FIRST_BAND = 0.08  # of the radius, about the coarse mask's boundary
_SECOND_BAND = 0.07  # of the radius, about the first pass's fit


def _ray_edges(lab: np.ndarray, cx: float, cy: float, expected: np.ndarray, half_width: float) -> np.ndarray:
    """(RAYS,) radius of the outermost sharp edge on each ray from (cx, cy) within
    ``expected`` +- ``half_width`` px ((RAYS,) px, NaN: ray not searched); NaN where that
    place is outside the photo."""
    reach = np.where(np.isfinite(expected), expected, np.nanmean(expected))
    radii = np.arange(max(1.0, float(reach.min()) - half_width - 2.0), float(reach.max()) + half_width + 2.0, _STEP_PX,
                      dtype=np.float32)
    cos, sin = np.cos(_ANGLES).astype(np.float32), np.sin(_ANGLES).astype(np.float32)
    map_x = (cx + cos[:, None] * radii[None, :]).astype(np.float32)
    map_y = (cy + sin[:, None] * radii[None, :]).astype(np.float32)
    profiles = cv2.remap(lab, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # (RAYS, n, 3)

    def gradient(sigma_px: float) -> np.ndarray:  # (RAYS, n - 2): |d Lab / dr| at radii[1:-1]
        smooth = cv2.GaussianBlur(profiles, (0, 0), sigmaX=sigma_px / _STEP_PX, sigmaY=0.01)
        return np.linalg.norm(smooth[:, 2:] - smooth[:, :-2], axis=2)

    sharp, wide = gradient(_SHARP_SIGMA_PX), gradient(_WIDE_SIGMA_PX)
    window = np.abs(radii[None, 1:-1] - reach[:, None]) <= half_width
    in_window = np.where(window, sharp, 0.0)
    peak = np.zeros(sharp.shape, bool)
    peak[:, 1:-1] = (sharp[:, 1:-1] >= sharp[:, :-2]) & (sharp[:, 1:-1] > sharp[:, 2:])
    edge = (peak & window & (sharp >= _MIN_PEAK_FRACTION * in_window.max(axis=1, keepdims=True))
            & (sharp > _MIN_SHARPNESS * wide))
    outermost = edge.shape[1] - 1 - np.argmax(edge[:, ::-1], axis=1)
    index = np.clip(np.where(edge.any(axis=1), outermost, np.argmax(in_window, axis=1)), 1, sharp.shape[1] - 2)
    rows = np.arange(RAYS)
    before, at, after = sharp[rows, index - 1], sharp[rows, index], sharp[rows, index + 1]
    curvature = before - 2.0 * at + after
    safe = np.abs(curvature) > 1e-6
    offset = np.clip(np.where(safe, 0.5 * (before - after) / np.where(safe, curvature, 1.0), 0.0), -1.0, 1.0)
    found = radii[0] + (index + 1 + offset) * _STEP_PX
    height, width = lab.shape[:2]
    x, y = cx + cos * found, cy + sin * found
    inside = (x > 3) & (y > 3) & (x < width - 4) & (y < height - 4) & np.isfinite(expected)
    return np.where(inside, found, np.nan)


def _mask_radii(disc: CoinDisc, shape: tuple[int, ...]) -> np.ndarray:
    """(RAYS,) px from the disc's centre to the coarse coin mask's boundary (NaN: no mask on the ray)."""
    mask = disc.mask.astype(np.float32)
    sx, sy = mask.shape[1] / shape[1], mask.shape[0] / shape[0]
    radii = np.arange(0.3 * disc.radius, 1.4 * disc.radius, _STEP_PX, dtype=np.float32)
    cos, sin = np.cos(_ANGLES).astype(np.float32), np.sin(_ANGLES).astype(np.float32)
    # pixel centres: photo x -> mask (x + 0.5) * sx - 0.5
    map_x = ((disc.cx + cos[:, None] * radii + 0.5) * sx - 0.5).astype(np.float32)
    map_y = ((disc.cy + sin[:, None] * radii + 0.5) * sy - 0.5).astype(np.float32)
    inside = cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 0.5
    last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
    return np.where(inside.any(axis=1), radii[last], np.nan)


def _fitted_radii(coefficients: np.ndarray, cx: float, cy: float) -> tuple[float, float, np.ndarray]:
    """The Fourier fit (about (cx, cy)) as a centre (its first harmonic) and (RAYS,) radii about it."""
    radius = _DESIGN @ coefficients
    x, y = cx + np.cos(_ANGLES) * radius, cy + np.sin(_ANGLES) * radius
    centre_x, centre_y = cx + coefficients[1], cy + coefficients[2]
    angles = np.mod(np.arctan2(y - centre_y, x - centre_x), 2.0 * np.pi)
    order = np.argsort(angles)
    radii = np.interp(_ANGLES, angles[order], np.hypot(x - centre_x, y - centre_y)[order], period=2.0 * np.pi)
    return centre_x, centre_y, radii


def _robust_fit(radii: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Fourier fit of r(theta) up to :data:`_HARMONICS`, refitted without outliers.

    Returns:
        ``(coefficients, kept)``: (1 + 2 * _HARMONICS,) [a0, cos 1, sin 1, cos 2, ...] and the
        (RAYS,) bool rays it kept; None when too few rays are usable.
    """
    design = _DESIGN
    valid = np.isfinite(radii)
    kept = valid
    values = np.nan_to_num(radii)
    coefficients = None
    for _ in range(4):
        if kept.sum() < 3 * design.shape[1]:
            break
        coefficients = np.linalg.lstsq(design[kept], values[kept], rcond=None)[0]
        residual = np.abs(values - design @ coefficients)
        spread = 1.4826 * float(np.median(residual[kept])) + 0.3
        kept = valid & (residual < 3.5 * spread)
    if coefficients is None:
        return None
    return coefficients, kept


def flan_outline(rgb: np.ndarray, disc: CoinDisc | None) -> np.ndarray | None:
    """The flan outline in ``rgb``'s pixels.

    Args:
        rgb: (H, W, 3) uint8 RGB photo (the decode the disc was found on).
        disc: the coarse coin disc in the same pixels, or None.
    Returns:
        (RAYS, 2) float32 outline points (x, y) at evenly spaced angles about the disc's
        refined centre, NaN where the rim was not seen; None when no outline was found
        (no disc, or under a third of the rim visible).
    """
    if disc is None or disc.radius < 8:
        return None
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    cx, cy = disc.cx, disc.cy
    expected = _mask_radii(disc, rgb.shape)
    for band in (_FIRST_BAND, _SECOND_BAND):
        if np.isfinite(expected).sum() < RAYS / 3:
            return None
        radii = _ray_edges(lab, cx, cy, expected, band * disc.radius)
        fit = _robust_fit(radii)
        if fit is None or fit[1].sum() < RAYS / 3:
            return None
        coefficients, kept = fit
        if not np.isfinite(coefficients).all() or not 0.6 * disc.radius < coefficients[0] < 1.3 * disc.radius:
            return None
        if band == _FIRST_BAND:
            cx, cy, expected = _fitted_radii(coefficients, cx, cy)
    radii = np.where(kept, radii, np.nan)
    return np.stack([cx + np.cos(_ANGLES) * radii, cy + np.sin(_ANGLES) * radii], axis=1).astype(np.float32)


def outline_residual(query: np.ndarray, listed: np.ndarray, matrix: np.ndarray) -> tuple[float, float]:
    """How far the query's outline, carried by ``matrix``, lies from the listed outline.

    The carried outline's size relative to the listed one is fitted first (the median ratio
    of their radii along each ray): a blurred or low-resolution photo finds its rim a pixel
    or two off, which scales the whole outline, while a die-mate's flan differs in shape and
    in where the design sits on it. The caller bounds that scale separately.

    Args:
        query, listed: (RAYS, 2) float32 outlines (NaN rays allowed), in canonical-crop pixels.
        matrix: (2, 3) similarity, query crop -> listed crop (the design's fit).
    Returns:
        ``(residual, scale)``: the 40th percentile of the rays' |radial distance| between the
        carried query outline and the listed one times ``scale``, as a fraction of the listed
        outline's mean radius, and that fitted scale; ``(inf, nan)`` when fewer than a third
        of the rays can be compared.
    """
    missing = (float("inf"), float("nan"))
    usable = np.isfinite(listed).all(axis=1)
    if usable.sum() < RAYS / 3:
        return missing
    centre = np.nanmean(listed, axis=0)
    offsets = listed[usable] - centre
    angles = np.arctan2(offsets[:, 1], offsets[:, 0])
    order = np.argsort(angles)
    angles, radii = angles[order], np.hypot(offsets[:, 0], offsets[:, 1])[order]
    points = query[np.isfinite(query).all(axis=1)].astype(np.float64) @ matrix[:, :2].T + matrix[:, 2] - centre
    if len(points) < RAYS / 3:
        return missing
    expected = np.interp(np.arctan2(points[:, 1], points[:, 0]), angles, radii, period=2.0 * np.pi)
    found = np.hypot(points[:, 0], points[:, 1])
    scale = float(np.median(found / expected))
    distances = np.abs(found - scale * expected)
    return float(np.quantile(distances, _RESIDUAL_QUANTILE)) / float(radii.mean()), scale
