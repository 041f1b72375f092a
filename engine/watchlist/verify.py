"""Geometric verification: same specimen, same die, or a different coin.

For each side the query's ORB descriptors are matched to the listed photo's (Lowe's ratio
test), and RANSAC fits a similarity (rotation, uniform scale, shift; OpenCV
``estimateAffinePartial2D``) to the matched keypoints. Many inliers mean the same design,
i.e. at least the same die. Die-mates share the design but not the flan: under the
design's similarity, the same specimen's flan outline (``flan.py``) lands on the listed
outline, while a die-mate's lies elsewhere (another flan radius and shape, the die struck
off centre and turned by other amounts). The two sides share one flan: their outline
residuals are weighed together, and one side alone decides only when it agrees closely
(the other side's rim may be hidden by a tight crop, or a cast shadow taken for it).

The second evidence is the surface: die-mates share the design but not the wear, pits,
scratches and patina. Under the design's similarity every listed keypoint is carried onto
the query's crop, described again there at its carried position, turn and pyramid level,
and compared with the listed descriptor (``surface_agreement``). ORB's own orientation
follows the relief's shading, which the light turns (median 11 degrees between two photos
of one specimen, the descriptor ~20 bits further per 10 degrees); carried, the turn is the
design's. The same specimen agrees on most of its keypoints, a die-mate on the design's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from denarius.engine.watchlist.descriptor import SideFeatures, describe_at
from denarius.engine.watchlist.faiss_setup import faiss
from denarius.engine.watchlist.flan import outline_residual

__all__ = ["VerifyConfig", "SideCheck", "Verification", "check_side", "decide", "surface_agreement", "verify"]

SAME_SPECIMEN, SAME_DIE, DIFFERENT = "same_specimen", "same_die", "different"


@dataclass(frozen=True)
class VerifyConfig:
    """Thresholds of the decision (measured on synthetic specimens; docs/watchlist/README.md).

    Attributes:
        ratio: Lowe's ratio test for ORB matches.
        query_matched: the query's strongest keypoints matched per side (250 of 400 verify
            as many of the bench's re-photographs at 0.7x the matching time).
        ransac_px: RANSAC inlier threshold in canonical-crop pixels.
        min_inliers: RANSAC inliers for "the same design" on a side.
        min_inliers_alone: RANSAC inliers a side needs to decide alone by its outline (a
            fit on a dozen matches, some on the rim, can carry one round outline onto another).
        max_flan: largest flan outline residual (``flan.outline_residual``, a fraction of
            the radius) of one side with the design for the same specimen.
        max_flan_both: largest mean of both sides' residuals, both with the design, for the
            same specimen.
        max_flan_scale: largest difference in size between the carried query outline and
            the listed one (a fraction) for a residual to count.
        surface_bits: largest Hamming distance (of 256 bits) at which a carried listed
            keypoint agrees with its description on the query's surface.
        min_surface: smallest surface agreement of each of the two sides, both with the
            design, for the same specimen.

    Chosen on two sets of specimen seed 23 (not the bench's): 400 re-photographed
    specimens of 80 dies against their own listing and their 4 die-mates (1,600 pairs): 69%
    of the own-specimen pairs and none of the die-mate pairs are the same specimen; and a
    list of 4,000 (800 dies) matched by 500 re-photographs and 500 unlisted die-mates:
    recall@1 0.592, no false match (docs/watchlist/README.md). The surface bound and
    ``min_inliers_alone`` on a third seed-23 set (400 re-photographs against their own
    listing and 4 die-mates each): own pairs called the same specimen 0.728 -> 0.740,
    die-mate pairs unchanged (1 of 1,600, by its outline), and a list of 4,000 of specimen
    seed 29 (recall@1 0.554 -> 0.594, false matches 2 -> 1); raised from 0.45 to 0.60 after
    the bench's list showed die-mates agreeing on 0.48-0.53 of both sides.
    """

    ratio: float = 0.85
    query_matched: int = 250
    ransac_px: float = 3.0
    min_inliers: int = 12
    min_inliers_alone: int = 16
    max_flan: float = 0.006
    max_flan_both: float = 0.012
    max_flan_scale: float = 0.02
    surface_bits: int = 40
    min_surface: float = 0.6


@dataclass(frozen=True)
class SideCheck:
    """One side's geometric check.

    Attributes:
        inliers: RANSAC inliers (0 when no similarity was found).
        matrix: (2, 3) float64 similarity, query crop -> listed crop pixels, or None.
        flan: how far the query's flan outline lies from the listed one under the fitted
            similarity, as a fraction of the listed radius (``flan.outline_residual``; inf
            when either outline is missing, the side has under ``min_inliers`` or the
            outlines' sizes differ by more than ``max_flan_scale``).
        query_points, listed_points: (K, 2) float32 the inlier correspondences.
        surface: the share of listed keypoints that agree on the query's surface
            (:func:`surface_agreement`); NaN when not measured (:func:`verify` measures it
            only where it can decide; a query without its surface, a specimen listed
            without keypoint geometry).
    """

    inliers: int
    matrix: np.ndarray | None
    flan: float
    query_points: np.ndarray
    listed_points: np.ndarray
    surface: float = float("nan")


@dataclass(frozen=True)
class Verification:
    """The decision over both sides: ``verdict`` is same_specimen, same_die or different;
    ``score`` the inliers of the weaker side (the ranking key among candidates)."""

    verdict: str
    score: int
    obverse: SideCheck
    reverse: SideCheck


_NONE = np.zeros((0, 2), np.float32)


def _flan_residual(query: SideFeatures, listed: SideFeatures, matrix: np.ndarray, config: VerifyConfig) -> float:
    """The outline residual under the design's fit (a side with the design only: no other
    fit is worth carrying the outline by); inf when the outlines' sizes differ by more
    than ``max_flan_scale``."""
    residual, scale = outline_residual(query.outline, listed.outline, matrix)
    return residual if abs(scale - 1.0) <= config.max_flan_scale else float("inf")


def surface_agreement(query: SideFeatures, listed: SideFeatures, matrix: np.ndarray, config: VerifyConfig = VerifyConfig()) -> float:
    """The share of the listed side's keypoints whose descriptor, computed again on the
    query's surface where ``matrix`` (the design's fit, query crop -> listed crop) carries
    them, lies within ``config.surface_bits`` of the listed one.

    Only keypoints carried onto the query's coin, inside ORB's border, count; NaN when
    fewer than ``config.min_inliers`` do, or the query has no surface or the listed side no
    keypoint geometry.
    """
    if len(listed.geometry) != len(listed.points) or not len(listed.points):
        return float("nan")
    inverse = cv2.invertAffineTransform(matrix)  # listed crop -> query crop
    scale = float(np.hypot(inverse[0, 0], inverse[1, 0]))
    turn = float(np.degrees(np.arctan2(inverse[1, 0], inverse[0, 0])))  # OpenCV angles: the same sense
    points = (listed.points.astype(np.float64) @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)
    geometry = listed.geometry + np.array([turn, 0.0, 0.0], np.float32)
    geometry[:, 1] *= scale
    kept, descriptors = describe_at(query, points, geometry)
    if len(kept) < config.min_inliers:
        return float("nan")
    bits = np.unpackbits(np.bitwise_xor(descriptors, listed.descriptors[kept]), axis=1).sum(axis=1)
    return float(np.mean(bits <= config.surface_bits))


def check_side(query: SideFeatures, listed: SideFeatures, config: VerifyConfig = VerifyConfig()) -> SideCheck:
    """Match one side of the query against one side of a listed photo."""
    empty = SideCheck(0, None, float("inf"), _NONE, _NONE)
    if len(query.descriptors) < 2 or len(listed.descriptors) < 2:
        return empty
    # the two nearest listed descriptors of the query's strongest (Hamming; faiss's exact
    # search takes 0.4x the time of cv2.batchDistance), and Lowe's ratio test
    listed_codes = faiss.IndexBinaryFlat(8 * listed.descriptors.shape[1])
    listed_codes.add(np.ascontiguousarray(listed.descriptors))
    distances, nearest = listed_codes.search(np.ascontiguousarray(query.descriptors[:config.query_matched]), 2)
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
    inliers = int(keep.sum())
    return SideCheck(
        inliers=inliers,
        matrix=matrix,
        flan=_flan_residual(query, listed, matrix, config) if inliers >= config.min_inliers else float("inf"),
        query_points=source[keep],
        listed_points=target[keep],
    )


def decide(obverse: SideCheck, reverse: SideCheck, config: VerifyConfig = VerifyConfig()) -> Verification:
    """The verdict from both sides' checks.

    A side "shows the design" with ``min_inliers``. Same specimen: both sides show it and
    their flan residuals average at most ``max_flan_both`` (two measurements of one flan),
    or one side with ``min_inliers_alone`` has a residual of at most ``max_flan`` (the other
    side's rim may be cropped, shadowed or taken from the background), or both show it and each
    side's surface agrees at least ``min_surface`` (the specimen's own wear and pits,
    whatever its rim). Same die: both sides show the design. Otherwise different.
    """
    checks = (obverse, reverse)
    score = min(obverse.inliers, reverse.inliers)
    both = score >= config.min_inliers
    if (both and (obverse.flan + reverse.flan) / 2.0 <= config.max_flan_both) or any(
        check.inliers >= config.min_inliers_alone and check.flan <= config.max_flan for check in checks
    ) or (both and obverse.surface >= config.min_surface and reverse.surface >= config.min_surface):  # NaN: not measured
        verdict = SAME_SPECIMEN
    elif both:
        verdict = SAME_DIE
    else:
        verdict = DIFFERENT
    return Verification(verdict=verdict, score=score, obverse=obverse, reverse=reverse)


def verify(
    query: tuple[SideFeatures, SideFeatures], listed: tuple[SideFeatures, SideFeatures], config: VerifyConfig = VerifyConfig()
) -> Verification:
    """Decide for a (obverse, reverse) query against a listed (obverse, reverse) specimen.

    The surfaces are compared only where they can change the verdict: both sides show the
    design and the outlines did not decide (a same-die verdict; ~2 ms a side), the side
    with fewer inliers first, and the other only when the first agrees (both must).
    """
    checks = [check_side(q, listed_side, config) for q, listed_side in zip(query, listed, strict=True)]
    verdict = decide(checks[0], checks[1], config)
    if verdict.verdict != SAME_DIE:
        return verdict
    for side in sorted(range(2), key=lambda s: checks[s].inliers):
        matrix = checks[side].matrix
        surface = float("nan") if matrix is None else surface_agreement(query[side], listed[side], matrix, config)
        checks[side] = replace(checks[side], surface=surface)
        if not surface >= config.min_surface:  # NaN included: the other side cannot change the verdict
            break
    return decide(checks[0], checks[1], config)
