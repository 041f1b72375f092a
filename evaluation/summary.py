"""Per-image scores of ``landmarks-eval`` and the figures made of them, each with its interval.

:class:`SideTable` holds one side's images in order: the class each is explained for, its
ground truth, the point baselines, and for every scored method (``"optimized@11"``,
``"captum_saliency"`` ...) its per-image values. :func:`summarize` turns one method's
values over one or more sides into the figures of ``scores.json`` with 95% bootstrap
intervals (:mod:`denarius.evaluation.bootstrap`, resampling images); :func:`baselines`
does the same for the centre and random points.

Figures (``None`` where no image qualifies):

- ``pointing_game``: the heatmap's first maximum within ``tolerance`` of a discriminative
  polygon, averaged over images (the rule of the earlier tables);
- ``pointing_game_torchray`` / ``_tie_robust`` / ``_difficult``: TorchRay's rule
  (:mod:`denarius.evaluation.pointing`), the mean over classes of per-class hit rates, on
  the images with ground truth / with ties shared / on the images the centre point misses;
- ``energy``, ``deletion_auc`` (lower is better), ``sufficiency`` (p(c) per kept share q),
  ``sufficiency_auc`` (higher is better), ``vacuous_rate``: means over images.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from denarius.evaluation.bootstrap import RESAMPLES, SEED, class_mean_interval, mean_interval
from denarius.evaluation.pointing import class_mean
from denarius.evaluation.sufficiency import SUFFICIENCY_QS, sufficiency_auc

__all__ = ["SideTable", "summarize", "baselines", "q_key"]

IMAGE_MEANS = ("pointing_game", "energy")  # over images with ground truth
CLASS_MEANS = ("pointing_game_torchray", "pointing_game_tie_robust")


def q_key(q: float) -> str:
    """The key of kept share ``q`` in ``sufficiency`` (e.g. "0.05")."""
    return f"{q:.2f}"


@dataclass
class SideTable:
    """One side's images, in the order they were scored.

    Attributes:
        side: "obverse" or "reverse".
        coin_ids, labels: per image; ``labels`` is the class the image is explained for.
        has_ground_truth: per image, whether it has a discriminative polygon.
        centre, random: per image, the centre point's hit and a random coin point's expected hit.
        values: method -> metric -> per-image values (``pointing_game``, ``pointing_game_torchray``,
            ``pointing_game_tie_robust``, ``energy``: NaN without ground truth;
            ``deletion_auc``, ``sufficiency`` (len(qs),), ``vacuous``).
        cost: method -> [(seconds, forward equivalents, images)] per batch.
    """

    side: str
    coin_ids: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    has_ground_truth: list = field(default_factory=list)
    centre: list = field(default_factory=list)
    random: list = field(default_factory=list)
    values: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    cost: dict = field(default_factory=lambda: defaultdict(list))

    @property
    def difficult(self) -> np.ndarray:
        """(n,) bool: images with ground truth where the centre point misses."""
        return np.asarray(self.has_ground_truth, bool) & ~np.asarray(self.centre, bool)


def _column(tables, method: str, metric: str) -> np.ndarray:
    parts = [np.asarray(t.values[method][metric], np.float64) for t in tables if t.values[method][metric]]
    return np.concatenate(parts) if parts else np.zeros(0)


def _gather(tables, name: str) -> np.ndarray:
    parts = [np.asarray(getattr(t, name)) for t in tables]
    return np.concatenate(parts) if parts else np.zeros(0)


def _figure(values, labels, *, by_class: bool, resamples: int, seed: int):
    if by_class:
        return class_mean(values, labels), class_mean_interval(values, labels, resamples=resamples, seed=seed)
    values = np.asarray(values, np.float64)
    return (float(values.mean()) if values.size else None), mean_interval(values, resamples=resamples, seed=seed)


def summarize(tables, method: str, *, qs=SUFFICIENCY_QS, resamples: int = RESAMPLES, seed: int = SEED) -> dict | None:
    """The figures of ``method`` over the images of ``tables`` (None if it scored none).

    Returns:
        figure -> value, plus ``intervals`` (figure -> [low, high]), ``images``,
        ``images_with_ground_truth``, ``difficult_images``, ``seconds_per_image`` and
        ``forward_equivalents`` (per image).
    """
    tables = [t for t in tables if t.values[method]["deletion_auc"]]
    if not tables:
        return None
    labels = _gather(tables, "labels")
    truth = _gather(tables, "has_ground_truth").astype(bool)
    difficult = np.concatenate([t.difficult for t in tables])
    out: dict = {}
    intervals: dict = {}

    def put(name, values, subset, *, by_class):
        out[name], intervals[name] = _figure(values[subset], labels[subset], by_class=by_class, resamples=resamples, seed=seed)

    for name in IMAGE_MEANS:
        put(name, _column(tables, method, name), truth, by_class=False)
    for name in CLASS_MEANS:
        put(name, _column(tables, method, name), truth, by_class=True)
    put("pointing_game_difficult", _column(tables, method, "pointing_game_torchray"), difficult, by_class=True)
    everything = np.ones(len(labels), bool)
    put("deletion_auc", _column(tables, method, "deletion_auc"), everything, by_class=False)
    curves = np.concatenate([np.asarray(t.values[method]["sufficiency"], np.float64).reshape(-1, len(qs)) for t in tables])
    out["sufficiency"], intervals["sufficiency"] = {}, {}
    for j, q in enumerate(qs):
        value, interval = _figure(curves[:, j], labels, by_class=False, resamples=resamples, seed=seed)
        out["sufficiency"][q_key(q)], intervals["sufficiency"][q_key(q)] = value, interval
    put("sufficiency_auc", np.array([sufficiency_auc(c, qs) for c in curves]), everything, by_class=False)
    vacuous = _column(tables, method, "vacuous")
    out["vacuous_rate"], intervals["vacuous_rate"] = _figure(vacuous, labels, by_class=False, resamples=resamples, seed=seed) \
        if vacuous.size else (None, None)
    cost = np.array([row for t in tables for row in t.cost[method]], np.float64).reshape(-1, 3)
    images = int(cost[:, 2].sum())
    out.update(
        seconds_per_image=float(cost[:, 0].sum() / images), forward_equivalents=float(cost[:, 1].sum() / images),
        images=len(labels), images_with_ground_truth=int(truth.sum()), difficult_images=int(difficult.sum()),
        intervals=intervals,
    )
    return out


def baselines(tables, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """The centre point and a uniform random point on the coin, by TorchRay's rule.

    Returns:
        {"centre": {...}, "random": {...}}, each with ``pointing_game_torchray``,
        ``pointing_game_tie_robust`` (a point has no ties: the same), ``pointing_game_difficult``
        (the centre's is 0 by definition), ``images_with_ground_truth``, ``difficult_images``
        and ``intervals``.
    """
    labels = _gather(tables, "labels")
    truth = _gather(tables, "has_ground_truth").astype(bool)
    difficult = np.concatenate([t.difficult for t in tables]) if tables else np.zeros(0, bool)
    out = {}
    for name in ("centre", "random"):
        hits = _gather(tables, name).astype(np.float64)
        row, intervals = {}, {}
        row["pointing_game_torchray"], intervals["pointing_game_torchray"] = _figure(
            hits[truth], labels[truth], by_class=True, resamples=resamples, seed=seed)
        row["pointing_game_tie_robust"] = row["pointing_game_torchray"]
        intervals["pointing_game_tie_robust"] = intervals["pointing_game_torchray"]
        row["pointing_game_difficult"], intervals["pointing_game_difficult"] = _figure(
            hits[difficult], labels[difficult], by_class=True, resamples=resamples, seed=seed)
        row.update(images_with_ground_truth=int(truth.sum()), difficult_images=int(difficult.sum()), intervals=intervals)
        out[name] = row
    return out
