"""Geometric verification: same specimen, same die, or a different coin.

For each side the query's ORB descriptors are matched to the listed photo's (Lowe's ratio
test), and RANSAC fits a similarity (rotation, uniform scale, shift; OpenCV
``estimateAffinePartial2D``) to the matched keypoints. Many inliers mean the same design,
i.e. at least the same die. Die-mates share the design but not the flan: under the
design's similarity, the same specimen's flan outline (``flan.py``) lands on the listed
outline, while a die-mate's lies elsewhere (another flan radius and shape, the die struck
off centre and turned by other amounts). The outline residual on either side decides: the
two sides share one flan, and one side's rim may be hidden (a tight crop, a cast shadow
taken for the rim).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from denarius.engine.watchlist.descriptor import SideFeatures
from denarius.engine.watchlist.flan import outline_residual

__all__ = ["VerifyConfig", "SideCheck", "Verification", "check_side", "verify"]

SAME_SPECIMEN, SAME_DIE, DIFFERENT = "same_specimen", "same_die", "different"


@dataclass(frozen=True)
class VerifyConfig:
    """Thresholds of the decision (measured on synthetic specimens; docs/watchlist/README.md).

    Attributes:
        ratio: Lowe's ratio test for ORB matches.
        query_matched: the query's strongest keypoints matched per side (250 of 400 verify
            as many of the bench's re-photographs at 0.7x the matching time).
        ransac_px: RANSAC inlier threshold in canonical-crop pixels.
        min_inliers: inliers on the weaker side for "same design" (the same die).
        max_flan: largest flan outline residual (fraction of the radius) on the better
            side for the same specimen.

    Chosen on 400 re-photographed specimens of 80 dies (specimen seed 23, not the bench's)
    against their own listing and their 4 die-mates (1,600 pairs): at 12 inliers and 0.012,
    65% of the own-specimen pairs and none of the die-mate pairs are the same specimen
    (0.015: 69% and 0.25%; the old rule, 40 inliers and a colour test: 35% at 1.8%).
    """

    ratio: float = 0.85
    query_matched: int = 250
    ransac_px: float = 3.0
    min_inliers: int = 12
    max_flan: float = 0.012


@dataclass(frozen=True)
class SideCheck:
    """One side's geometric check.

    Attributes:
        inliers: RANSAC inliers (0 when no similarity was found).
        matrix: (2, 3) float64 similarity, query crop -> listed crop pixels, or None.
        flan: how far the query's flan outline lies from the listed one under the fitted
            similarity, as a fraction of the listed radius (``flan.outline_residual``; inf
            when either outline is missing).
        query_points, listed_points: (K, 2) float32 the inlier correspondences.
    """

    inliers: int
    matrix: np.ndarray | None
    flan: float
    query_points: np.ndarray
    listed_points: np.ndarray


@dataclass(frozen=True)
class Verification:
    """The decision over both sides: ``verdict`` is same_specimen, same_die or different;
    ``score`` the inliers of the weaker side (the ranking key among candidates)."""

    verdict: str
    score: int
    obverse: SideCheck
    reverse: SideCheck


_NONE = np.zeros((0, 2), np.float32)


def check_side(query: SideFeatures, listed: SideFeatures, config: VerifyConfig = VerifyConfig()) -> SideCheck:
    """Match one side of the query against one side of a listed photo."""
    empty = SideCheck(0, None, float("inf"), _NONE, _NONE)
    if len(query.descriptors) < 2 or len(listed.descriptors) < 2:
        return empty
    # the two nearest listed descriptors of the query's strongest (Hamming), and Lowe's ratio test
    distances, nearest = cv2.batchDistance(query.descriptors[:config.query_matched], listed.descriptors, cv2.CV_32S,
                                           normType=cv2.NORM_HAMMING, K=2)
    good = np.flatnonzero(distances[:, 0] < config.ratio * distances[:, 1])
    if len(good) < 4:
        return empty
    source = query.points[good]
    target = listed.points[nearest[good, 0]]
    matrix, mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=config.ransac_px, maxIters=1000, confidence=0.99
    )
    if matrix is None or mask is None:
        return empty
    keep = mask.ravel().astype(bool)
    return SideCheck(
        inliers=int(keep.sum()),
        matrix=matrix,
        flan=outline_residual(query.outline, listed.outline, matrix),
        query_points=source[keep],
        listed_points=target[keep],
    )


def verify(
    query: tuple[SideFeatures, SideFeatures], listed: tuple[SideFeatures, SideFeatures], config: VerifyConfig = VerifyConfig()
) -> Verification:
    """Decide for a (obverse, reverse) query against a listed (obverse, reverse) specimen."""
    obverse = check_side(query[0], listed[0], config)
    reverse = check_side(query[1], listed[1], config)
    score = min(obverse.inliers, reverse.inliers)
    if score < config.min_inliers:
        verdict = DIFFERENT
    elif min(obverse.flan, reverse.flan) <= config.max_flan:
        verdict = SAME_SPECIMEN
    else:
        verdict = SAME_DIE
    return Verification(verdict=verdict, score=score, obverse=obverse, reverse=reverse)
