"""What the watchlist keeps of one photographed side: ORB keypoints and the flan outline.

All come from the canonical crop (:func:`denarius.engine.preprocess.canonical_image`:
coin centred, scaled to its diameter, background blanked), so a re-photograph at another
scale or framing lands on about the same pixels up to a turn about the centre.

- Local features: up to :data:`ORB_FEATURES` ORB keypoints (strongest first) on the
  contrast-equalised grey crop (CLAHE evens out the light), inside the coin disc; (N, 2)
  float32 xy in crop pixels, (N, 32) uint8 binary descriptors and (N, 3) float32 keypoint
  geometry (ORB's angle, size, pyramid level). Retrieval (``keypoint_index.py``) looks the
  strongest up; verification (``verify.py``) matches them all, and re-describes a listed
  side's keypoints on the query's own surface (the equalised crop and its coin mask, kept
  for a query only, never stored) where the design's fit carries them.
- Flan outline (``flan.py``): (RAYS, 2) points of the coin's rim found on the decoded photo
  to sub-pixel precision, carried into crop pixels; verification checks that the same
  specimen's outline lands on the listed one under the design's fit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from denarius.engine.preprocess import PreprocessSpec, locate_coin, warp_canonical
from denarius.engine.watchlist.flan import RAYS, flan_outline

__all__ = [
    "FEATURES_VERSION",
    "ORB_FEATURES",
    "WATCHLIST_SPEC",
    "NO_OUTLINE",
    "NO_GEOMETRY",
    "SideFeatures",
    "side_features",
    "side_features_from_canonical",
    "describe_at",
]

# What a listed specimen's stored features were computed by; stored per specimen (store.py).
# 2: ORB keypoints and the flan outline; 3: the rim searched near the coarse coin mask;
# 4: keypoint geometry (angle, size, level) for the surface comparison.
FEATURES_VERSION = 4
ORB_FEATURES = 400
WATCHLIST_SPEC = PreprocessSpec(resize=256, crop=224)
NO_OUTLINE = np.full((RAYS, 2), np.nan, np.float32)
NO_OUTLINE.flags.writeable = False
NO_GEOMETRY = np.zeros((0, 3), np.float32)
NO_GEOMETRY.flags.writeable = False


@dataclass(frozen=True)
class SideFeatures:
    """One side of one photo, as the watchlist stores it.

    Attributes:
        points: (N, 2) float32 keypoint positions (x, y) in canonical-crop pixels.
        descriptors: (N, 32) uint8 ORB descriptors (N may be 0 for a featureless side).
        outline: (RAYS, 2) float32 flan outline (x, y) in canonical-crop pixels, NaN where
            the rim was not seen (all NaN when no outline was found).
        geometry: (N, 3) float32 per keypoint: ORB angle (degrees), size (px), pyramid
            level; (0, 3) for a specimen listed before it was kept.
        surface: (256, 256) uint8 the equalised grey crop the descriptors were computed
            on, or None (stored specimens: only a query needs it).
        coin: (256, 256) uint8 where keypoints may lie on ``surface`` (255), or None.
    """

    points: np.ndarray
    descriptors: np.ndarray
    outline: np.ndarray = field(default_factory=lambda: NO_OUTLINE)
    geometry: np.ndarray = field(default_factory=lambda: NO_GEOMETRY)
    surface: np.ndarray | None = field(default=None, repr=False)
    coin: np.ndarray | None = field(default=None, repr=False)


_PER_THREAD = threading.local()


def _orb():
    """This thread's ORB detector: OpenCV does not promise that one detector object may run
    on several threads at once (the server extracts features on a pool of threads)."""
    orb = getattr(_PER_THREAD, "orb", None)
    if orb is None:
        orb = _PER_THREAD.orb = cv2.ORB_create(nfeatures=ORB_FEATURES)
    return orb


def side_features(source, *, side: str | None = None) -> SideFeatures:
    """Features of one photo (bytes, path or (H, W, 3) uint8 RGB).

    Raises:
        InputError: the photo cannot be decoded (the message names the side).
    """
    rgb, disc, matrix = locate_coin(source, WATCHLIST_SPEC, side=side)
    canonical = warp_canonical(rgb, disc, matrix, WATCHLIST_SPEC.resize, 0)
    outline = flan_outline(rgb, disc)
    if outline is not None:  # photo pixels -> crop pixels
        outline = (outline.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
    return side_features_from_canonical(canonical, outline=outline)


def side_features_from_canonical(canonical: np.ndarray, *, outline: np.ndarray | None = None) -> SideFeatures:
    """Features of a (256, 256, 3) uint8 RGB canonical crop; ``outline`` its flan outline in
    crop pixels ((RAYS, 2), see ``flan.py``) when the photo it came from was seen."""
    grey = cv2.cvtColor(canonical, cv2.COLOR_RGB2GRAY)
    grey = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(grey)
    coin = (canonical.max(axis=2) > 0).astype(np.uint8) * 255
    # keep keypoints off the blanked edge: its step is the mask's, not the coin's
    coin = cv2.erode(coin, np.ones((5, 5), np.uint8))
    keypoints, descriptors = _orb().detectAndCompute(grey, coin)
    if descriptors is None or not keypoints:
        points, descriptors, geometry = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), NO_GEOMETRY
    else:
        # strongest first: retrieval (keypoint_index.py) uses the first few hundred
        order = np.argsort([-k.response for k in keypoints], kind="stable")
        points = np.array([keypoints[i].pt for i in order], np.float32)
        geometry = np.array([(keypoints[i].angle, keypoints[i].size, keypoints[i].octave) for i in order], np.float32)
        descriptors = descriptors[order]
    return SideFeatures(points=points, descriptors=descriptors, outline=NO_OUTLINE if outline is None else outline,
                        geometry=geometry, surface=grey, coin=coin)


def describe_at(features: SideFeatures, points: np.ndarray, geometry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ORB descriptors computed on ``features``' surface at given keypoints.

    Args:
        features: a query side (with ``surface`` and ``coin``).
        points: (K, 2) float32 keypoint positions in its crop pixels.
        geometry: (K, 3) float32 angle (degrees), size, pyramid level of each.
    Returns:
        ``(kept, descriptors)``: (M,) int64 indices into ``points`` of the keypoints that lie
        on the coin and far enough inside the crop for ORB, and their (M, 32) uint8
        descriptors. Empty when ``features`` has no surface.
    """
    empty = np.zeros(0, np.int64), np.zeros((0, 32), np.uint8)
    if features.surface is None or features.coin is None or not len(points):
        return empty
    height, width = features.coin.shape
    column, row = np.round(points[:, 0]).astype(np.int64), np.round(points[:, 1]).astype(np.int64)
    on_crop = (column >= 0) & (row >= 0) & (column < width) & (row < height)
    on_coin = np.flatnonzero(on_crop)[features.coin[row[on_crop], column[on_crop]] > 0]
    keypoints = [cv2.KeyPoint(float(points[i, 0]), float(points[i, 1]), float(geometry[i, 1]), float(geometry[i, 0]) % 360.0,
                              0.0, int(geometry[i, 2]), int(i)) for i in on_coin]
    computed, descriptors = _orb().compute(features.surface, keypoints)  # drops those too near the border
    if descriptors is None or not computed:
        return empty
    return np.array([k.class_id for k in computed], np.int64), descriptors
