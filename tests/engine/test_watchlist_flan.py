"""The flan outline: found to sub-pixel precision on real JPEG photos of a drawn coin with a
known outline (plain, cloth-like and shadowed backgrounds), and compared under a similarity;
the verdict from both sides' checks (outlines and surfaces); a watchlist of the earlier
version (global descriptors, no outlines) opens and matches."""

from __future__ import annotations

import functools
import sqlite3

import cv2
import numpy as np
import pytest

from denarius.engine.preprocess import coin_mask
from denarius.engine.watchlist import Watchlist
from denarius.engine.watchlist.flan import RAYS, flan_outline, outline_residual
from denarius.engine.watchlist.verify import DIFFERENT, SAME_DIE, SAME_SPECIMEN, SideCheck, VerifyConfig, decide
from denarius.training.synth.catalogue import build_catalogue
from denarius.training.synth.presets import make_config
from denarius.training.synth.specimen import SpecimenKey, SpecimenPhotographer

HARMONICS = ((2, 0.012, 0.4), (3, 0.008, 2.0), (5, 0.006, 4.1))


def _radius(angle: np.ndarray, radius: float) -> np.ndarray:
    r = np.ones_like(angle)
    for k, amplitude, phase in HARMONICS:
        r += amplitude * np.cos(k * angle + phase)
    return radius * r


def _photo(background: str, *, size: int = 480, centre=(236.0, 250.0), radius: float = 190.0, quality: int = 85) -> bytes:
    """A JPEG of a textured copper flan with the outline of HARMONICS on ``background``."""
    rng = np.random.default_rng(3)
    if background == "cloth":
        image = np.clip(rng.normal(90, 18, (size, size, 3)), 0, 255).astype(np.float32)
        image = cv2.GaussianBlur(image, (0, 0), 1.2) * np.array([0.6, 0.8, 1.1], np.float32)
    else:
        image = np.full((size, size, 3), 235.0, np.float32)
    angle = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    r = _radius(angle, radius)
    outline = np.stack([centre[0] + r * np.cos(angle), centre[1] + r * np.sin(angle)], 1)
    supersample = 8
    mask = np.zeros((size * supersample, size * supersample), np.uint8)
    cv2.fillPoly(mask, [np.round(outline * supersample).astype(np.int32)], 255, cv2.LINE_AA)
    alpha = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)[:, :, None] / 255.0
    if background == "shadow":  # a soft shadow cast to the lower right
        shifted = cv2.warpAffine(alpha[:, :, 0], np.float32([[1, 0, 12], [0, 1, 12]]), (size, size))
        image *= (1 - 0.45 * cv2.GaussianBlur(shifted, (0, 0), 9.0))[:, :, None]
    relief = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 2.0) * 60
    coin = np.stack([70 + relief, 110 + relief, 170 + relief], axis=2)  # BGR copper
    image = image * (1 - alpha) + coin * alpha
    ok, jpeg = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return jpeg.tobytes()


@pytest.mark.parametrize("background", ["plain", "cloth", "shadow"])
def test_the_outline_is_found_to_a_pixel(background):
    data = _photo(background)
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    outline = flan_outline(rgb, coin_mask(rgb))
    assert outline is not None and outline.shape == (RAYS, 2)
    seen = np.isfinite(outline).all(axis=1)
    assert seen.mean() > 0.8, f"only {seen.mean():.0%} of the rim found on {background}"
    offsets = outline[seen] - (236.0, 250.0)
    error = np.hypot(offsets[:, 0], offsets[:, 1]) - _radius(np.arctan2(offsets[:, 1], offsets[:, 0]), 190.0)
    assert np.median(np.abs(error)) < 0.6, f"median {np.median(np.abs(error)):.2f} px off the true rim on {background}"
    assert np.percentile(np.abs(error), 90) < 2.0


def test_no_outline_without_a_disc():
    assert flan_outline(np.zeros((64, 64, 3), np.uint8), None) is None


def _similarity(turn_deg: float, scale: float, shift=(0.0, 0.0), centre=(128.0, 128.0)) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D(centre, turn_deg, scale)
    matrix[:, 2] += shift
    return matrix


def test_the_residual_is_zero_for_the_same_outline_and_grows_with_a_die_mates_differences():
    angle = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    r = _radius(angle, 110.0)
    listed = np.stack([128 + r * np.cos(angle), 128 + r * np.sin(angle)], 1).astype(np.float32)
    # the same flan photographed turned by 70 degrees: the design's fit turns it back
    turn = _similarity(-70.0, 1.0)
    query = (listed.astype(np.float64) @ turn[:, :2].T + turn[:, 2]).astype(np.float32)
    back = cv2.invertAffineTransform(turn)
    residual, scale = outline_residual(query, listed, back)
    assert residual < 1e-3 and scale == pytest.approx(1.0, abs=1e-3)
    # another flan size relative to the design (3%): the shape agrees, the scale says so
    residual, scale = outline_residual(query, listed, _similarity(0, 1.03) @ np.vstack([back, [0, 0, 1]]))
    assert residual < 2e-3 and scale == pytest.approx(1.03, abs=2e-3)
    # the design struck 4 px off centre
    residual, scale = outline_residual(query, listed, back + np.array([[0, 0, 4.0], [0, 0, 0]]))
    assert residual > 0.01
    # half the rim hidden still compares; under a third does not
    hidden = query.copy()
    hidden[: RAYS // 2] = np.nan
    assert outline_residual(hidden, listed, back)[0] < 1e-3
    hidden[: 3 * RAYS // 4] = np.nan
    assert outline_residual(hidden, listed, back)[0] == float("inf")


@functools.lru_cache(maxsize=1)
def _listing_and_rephoto() -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """One synthetic specimen's listing photo and re-photograph (both sides, JPEG bytes)."""
    config = make_config("tiny", min_size=320, max_size=320)
    photographer = SpecimenPhotographer(build_catalogue(config, 0), config, seed=5)
    shots = [photographer.photograph(SpecimenKey(0, 0, 0), photo) for photo in (0, 1)]
    return tuple((shot["obverse"][0], shot["reverse"][0]) for shot in shots)  # type: ignore[return-value]


def test_a_watchlist_of_the_earlier_version_opens_and_matches_same_die(tmp_path):
    listing, rephoto = _listing_and_rephoto()
    folder = tmp_path / "old"
    with Watchlist(folder) as watchlist:
        watchlist.add("s1", *listing)
    with sqlite3.connect(folder / "watchlist.sqlite") as db:  # back to the earlier version's schema and files
        db.execute("ALTER TABLE features DROP COLUMN outline")
        db.execute("ALTER TABLE features DROP COLUMN geometry")
        db.execute("ALTER TABLE specimens DROP COLUMN features_version")
        db.execute("ALTER TABLE features ADD COLUMN chroma BLOB NOT NULL DEFAULT x'00'")
        db.execute("ALTER TABLE features ADD COLUMN vector BLOB NOT NULL DEFAULT x'00'")
    (folder / "keypoints.index").unlink()
    (folder / "index.hnsw").write_bytes(b"hnsw")
    with Watchlist(folder) as watchlist:
        assert watchlist.listed_by_earlier_features() == 1
        matches = watchlist.match(*rephoto)
        assert [m.specimen.specimen_id for m in matches] == ["s1"]
        assert matches[0].verdict == "same_die"  # no outline stored: never claimed as the same specimen
        watchlist.add("s2", *listing)  # new rows keep their outline
        assert watchlist.listed_by_earlier_features() == 1  # s1 until it is added again
    assert not (folder / "index.hnsw").exists() and (folder / "keypoints.index").is_file()
    with sqlite3.connect(folder / "watchlist.sqlite") as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(features)")]
        assert "vector" not in columns and "chroma" not in columns
        assert db.execute("SELECT COUNT(*) FROM features WHERE outline IS NOT NULL").fetchone()[0] == 2
        assert db.execute("SELECT COUNT(*) FROM features WHERE geometry IS NOT NULL").fetchone()[0] == 2


def _check(inliers: int, flan: float, surface: float = float("nan")) -> SideCheck:
    return SideCheck(inliers=inliers, matrix=None, flan=flan, query_points=np.zeros((0, 2), np.float32),
                     listed_points=np.zeros((0, 2), np.float32), surface=surface)


@pytest.mark.parametrize(
    ("obverse", "reverse", "verdict"),
    [
        ((60, 0.004), (50, 0.009), SAME_SPECIMEN),  # one side's outline alone is close enough
        ((60, 0.010), (50, 0.013), SAME_SPECIMEN),  # both sides, neither alone: their mean is
        ((40, 0.0099), (30, 0.041), SAME_DIE),  # a die-mate: one side near, the other side far
        ((60, 0.2), (50, 0.3), SAME_DIE),  # the design matches, the flan does not
        ((4, 0.43), (32, 0.005), SAME_SPECIMEN),  # the obverse cropped or blurred away
        ((4, 0.43), (32, 0.007), DIFFERENT),  # one side only, not close enough; no die either
        ((4, 0.43), (14, 0.001), DIFFERENT),  # one side alone, its design fitted on too few matches
        ((60, float("inf")), (50, float("inf")), SAME_DIE),  # no outlines: the die at most
        ((60, 0.2, 0.70), (50, 0.3, 0.65), SAME_SPECIMEN),  # rims off, both surfaces agree
        ((60, 0.2, 0.90), (50, 0.3, 0.35), SAME_DIE),  # a die-mate's design-rich side does not carry the other
        ((60, 0.2, 0.90), (8, 0.3), DIFFERENT),  # one side's surface alone never decides
        ((60, float("inf"), 0.9), (50, float("inf")), SAME_DIE),  # a side without a measured surface
    ],
)
def test_the_verdict_weighs_both_sides_outlines_and_surfaces(obverse, reverse, verdict):
    assert decide(_check(*obverse), _check(*reverse), VerifyConfig()).verdict == verdict
