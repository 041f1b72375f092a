"""Scoring a batch of preprocessed coins: the result types, softmax and the hierarchical ranking.

The :class:`Scorer` is what both the synchronous ``Engine.identify`` and the dynamic
``Batcher`` call: ``preprocess_side`` turns one side's source into the (3, S, S) network
input, ``score_batch`` runs both classifiers on the backend and ranks every coin. It holds
no threads and no queues, so the Engine and the Batcher each build on it without reaching
into one another.

For every coin the two classifiers give p(e | obverse) and p(r | reverse) (softmax computed
in float64 from the logits); every RIC leaf r is scored by ``Hierarchy.joint_scores``::

    score(r) = p(parent(r) | obverse) * p(r | reverse)

The probabilities are calibrated: ``softmax(logits / T)`` with the bundle's temperature per
classifier (``Bundle.calibration``; 1 for a bundle without one), which changes no ranking.
A pair whose open-set score (``Bundle.open_set``, see ``denarius.engine.open_set``) is below
the bundle's threshold is marked ``unknown``; its candidates are still listed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.bundle import SIDES, Bundle
from denarius.engine.errors import InputError
from denarius.engine.open_set import open_set_score, softmax_rows
from denarius.engine.preprocess import network_input

__all__ = [
    "CoinPair",
    "Candidate",
    "Identification",
    "Scorer",
    "softmax64",
    "check_top_k",
    "coerce_pair",
    "batch_rows",
]


@dataclass(frozen=True)
class CoinPair:
    """One coin to identify.

    Each side is encoded image bytes, a path, a decoded (H, W, 3) uint8 RGB array, an
    already preprocessed (3, S, S) float32 array (S = the bundle's input size), or None
    when that side was not photographed. At least one side must be given.
    """

    obverse: object = None
    reverse: object = None
    coin_id: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One ranked answer.

    Attributes:
        ric: RIC label, or None in an obverse-only (emperor) ranking.
        emperor: the emperor (for a RIC leaf: its parent in the hierarchy).
        score: the ranking score in [0, 1]: the joint score p(e|Io) p(r|Ir) for a pair,
            p(emperor|obverse) for obverse only, p(ric|reverse) for reverse only.
        p_ric: p(ric | reverse), or None without a reverse.
        p_emperor: p(emperor | obverse), or None without an obverse.
        obverse_description, reverse_description: RIC catalogue text ("" when unknown).
    """

    ric: str | None
    emperor: str
    score: float
    p_ric: float | None
    p_emperor: float | None
    obverse_description: str = ""
    reverse_description: str = ""

    @property
    def label(self) -> str:
        """The ranked class: the RIC label, or the emperor in an emperor ranking."""
        return self.ric if self.ric is not None else self.emperor


@dataclass(frozen=True)
class Identification:
    """The answer for one coin.

    Attributes:
        coin_id: the caller's id (``CoinPair.coin_id``), passed through.
        mode: "joint" (both sides), "emperor" (obverse only), "ric" (reverse only), or
            "error".
        candidates: best first, at most top_k; empty when ``error`` is set.
        model_version: the bundle's model version.
        error: the InputError that failed this coin, else None.
        unknown: True when the open-set rule says the coin is not in the catalogue (its
            score fell below the bundle's threshold); the candidates are still the best
            guesses. False when the bundle has no rule or the coin has only one side.
        open_set_score: the coin's open-set score (``Bundle.open_set.score``), or None when no
            decision was made (no rule in the bundle, a one-sided coin, an error).
    """

    coin_id: str | None
    mode: str
    candidates: tuple[Candidate, ...]
    model_version: str
    error: InputError | None = field(default=None, compare=False)
    unknown: bool = False
    open_set_score: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top(self) -> Candidate:
        """The best candidate; raises this coin's error if it failed."""
        if self.error is not None:
            raise self.error
        return self.candidates[0]


def softmax64(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits (any float dtype) -> (N, C) float64 probabilities, rows summing to 1."""
    return softmax_rows(logits)


def check_top_k(top_k) -> None:
    """InputError unless ``top_k`` is an integer >= 1."""
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
        raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")


def coerce_pair(pair, *, index: int | None = None) -> CoinPair:
    """A ``CoinPair`` from a CoinPair or an (obverse, reverse) tuple; InputError otherwise."""
    where = "" if index is None else f"coin {index}: "
    if isinstance(pair, tuple) and len(pair) == 2:
        pair = CoinPair(obverse=pair[0], reverse=pair[1])
    if not isinstance(pair, CoinPair):
        raise InputError(f"{where}expected a CoinPair or an (obverse, reverse) tuple, got {type(pair).__name__}")
    if pair.obverse is None and pair.reverse is None:
        raise InputError(f"{where}neither side given: a coin needs an obverse, a reverse, or both")
    return pair


def batch_rows(sides_per_coin: Iterable[Iterable[str]]) -> tuple[list[tuple[int | None, int | None]], dict[str, int]]:
    """Rows of each coin's sides in the per-side batch arrays.

    Args:
        sides_per_coin: per coin, the sides it has ("obverse", "reverse").
    Returns:
        rows: per coin, (row in the obverse batch or None, row in the reverse batch or None);
        counts: {side: rows used}.
    """
    counts = dict.fromkeys(SIDES, 0)
    rows = []
    for sides in sides_per_coin:
        row = {}
        for side in sides:
            row[side] = counts[side]
            counts[side] += 1
        rows.append((row.get("obverse"), row.get("reverse")))
    return rows, counts


def _batch_row(probabilities: np.ndarray | None, row: int) -> np.ndarray:
    """Row ``row`` of a side's batch probabilities, which a coin with that side guarantees."""
    if probabilities is None:
        raise RuntimeError(f"row {row} of a side whose batch was not inferred")
    return probabilities[row]


class Scorer:
    """Preprocesses sides and scores batches with a bundle's two classifiers on one backend.

    Args:
        bundle: the loaded bundle (preprocessing spec, hierarchy, descriptions).
        backend: an open ``Backend`` of that bundle (``infer(model, images)``).
    """

    def __init__(self, bundle: Bundle, backend):
        self.bundle, self.backend = bundle, backend
        self.spec = bundle.preprocess

    @property
    def version(self) -> str:
        return self.bundle.version

    def preprocess_side(self, source, side: str, out: np.ndarray | None = None) -> np.ndarray:
        """One side -> (3, S, S) float32 network input, written into ``out`` when given.

        Raises:
            InputError: undecodable/out-of-bounds image, or a float array of the wrong shape
                (the message names the side).
        """
        size = self.spec.crop
        if isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[0] == 3 and source.dtype.kind == "f":
            if source.shape != (3, size, size):
                raise InputError(f"a preprocessed image must have shape (3, {size}, {size}), got {source.shape}", side=side)
            image = source
        elif isinstance(source, (bytes, bytearray, memoryview, str, Path, os.PathLike, np.ndarray)):
            if isinstance(source, (bytearray, memoryview)):
                source = bytes(source)
            try:
                return network_input(source, self.spec, side=side, out=out)
            except (cv2.error, ValueError, TypeError) as error:
                if isinstance(error, InputError):
                    raise
                # OpenCV/NumPy refusing an odd array is still this image's fault, not the batch's.
                raise InputError(f"cannot preprocess this image ({type(error).__name__}: {error})", side=side) from None
        else:
            raise InputError(f"unsupported image type {type(source).__name__}: give bytes, a path or an array", side=side)
        if out is None:
            return np.ascontiguousarray(image, dtype=np.float32)
        out[...] = image
        return out

    def score_batch(self, obverse, reverse, rows, coin_ids, top_ks) -> list[Identification]:
        """Infer and rank one batch.

        Args:
            obverse: (No, 3, S, S) float32 obverse images, or None when No = 0.
            reverse: (Nr, 3, S, S) float32 reverse images, or None when Nr = 0.
            rows: per coin, (row in obverse or None, row in reverse or None); see ``batch_rows``.
            coin_ids, top_ks: per coin.
        Returns:
            one Identification per coin, in ``rows`` order.
        """
        hierarchy, rule = self.bundle.hierarchy, self.bundle.open_set
        z_emp = self._calibrated_logits("emperor", obverse)
        z_ric = self._calibrated_logits("ric", reverse)
        p_emp = None if z_emp is None else softmax_rows(z_emp)
        p_ric = None if z_ric is None else softmax_rows(z_ric)
        both = [j for j, (o, r) in enumerate(rows) if o is not None and r is not None]
        joint, open_set = {}, {}
        if both:
            assert z_emp is not None and z_ric is not None and p_emp is not None and p_ric is not None  # rows in each batch
            obverse_rows, reverse_rows = [rows[j][0] for j in both], [rows[j][1] for j in both]
            scores = hierarchy.joint_scores(p_emp[obverse_rows], p_ric[reverse_rows])
            joint = dict(zip(both, scores, strict=True))
            if rule is not None:
                values = open_set_score(rule.score, z_emp[obverse_rows], z_ric[reverse_rows], hierarchy)
                open_set = dict(zip(both, values.tolist(), strict=True))
        results = []
        for j, (o, r) in enumerate(rows):
            # a row number means that side's batch was inferred
            pe = None if o is None else _batch_row(p_emp, o)
            pr = None if r is None else _batch_row(p_ric, r)
            result = self._rank(coin_ids[j], pe, pr, joint.get(j), top_ks[j])
            if j in open_set:
                assert rule is not None
                value = float(open_set[j])
                result = replace(result, open_set_score=value, unknown=bool(rule.decide(np.array([value]))[0]))
            results.append(result)
        return results

    def _calibrated_logits(self, model: str, images) -> np.ndarray | None:
        """(N, C) float64 logits / T of one model, or None for an empty side."""
        if images is None or not len(images):
            return None
        logits = np.asarray(self.backend.infer(model, images), dtype=np.float64)
        return logits / self.bundle.calibration.temperature(model)

    def failed(self, coin_id, error: InputError) -> Identification:
        """The Identification of a coin that failed with ``error``."""
        return Identification(coin_id=coin_id, mode="error", candidates=(), model_version=self.version, error=error)

    def _rank(self, coin_id, p_emp, p_ric, joint, top_k) -> Identification:
        hierarchy, descriptions = self.bundle.hierarchy, self.bundle.descriptions
        if p_ric is None:  # obverse only: an emperor ranking
            order = np.argsort(-p_emp, kind="stable")[:top_k]
            candidates = tuple(
                Candidate(ric=None, emperor=hierarchy.emperors[e], score=float(p_emp[e]), p_ric=None, p_emperor=float(p_emp[e]))
                for e in order
            )
            return Identification(coin_id, "emperor", candidates, self.version)
        score = p_ric if joint is None else joint
        order = np.argsort(-score, kind="stable")[:top_k]
        ranked: list[Candidate] = []
        for r in order:
            ric, parent = hierarchy.rics[r], int(hierarchy.parent[r])
            text = descriptions.get(ric) or {}
            ranked.append(Candidate(
                ric=ric,
                emperor=hierarchy.emperors[parent],
                score=float(score[r]),
                p_ric=float(p_ric[r]),
                p_emperor=None if p_emp is None else float(p_emp[parent]),
                obverse_description=str(text.get("obverse", "")),
                reverse_description=str(text.get("reverse", "")),
            ))
        return Identification(coin_id, "ric" if joint is None else "joint", tuple(ranked), self.version)
