"""Calibrated confidence and the "not in the catalogue" decision.

Two small pieces of a bundle's manifest, both optional (an older bundle has neither)::

    "calibration": {"emperor": {"temperature": 1.7}, "ric": {"temperature": 2.1}, ...}
    "open_set":    {"score": "agreement", "threshold": 0.41, "far": 0.05, "auroc": 0.97, ...}

Temperature scaling (Guo et al. 2017): every probability the engine reports is
``softmax(logits / T)`` with one T per classifier, fitted at export on held-out coins; it
changes no ranking. Without ``calibration`` T = 1.

The open-set score of a coin photographed on both sides is one of :data:`OPEN_SET_SCORES`,
computed from the calibrated logits; higher means "more like a coin of the catalogue". A coin
whose score is below ``open_set.threshold`` (chosen at export for a stated false-accept rate
on coins outside the training catalogue) is reported ``unknown``; its candidates are still
listed. Without ``open_set`` no coin is ever unknown. One-sided requests get no decision
(the threshold was chosen on pairs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from denarius.engine.errors import BundleError
from denarius.engine.hierarchy import Hierarchy

__all__ = ["OPEN_SET_SCORES", "Calibration", "OpenSet", "open_set_score", "softmax_rows"]

TEMPERATURE_BOUNDS = (1e-3, 1e3)


def softmax_rows(z: np.ndarray) -> np.ndarray:
    """(N, C) float64 -> rows of softmax (float64)."""
    z = np.array(z, dtype=np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def _max_joint(z_emp: np.ndarray, z_ric: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """The best candidate's calibrated joint score p(e|obv) p(r|rev)."""
    return hierarchy.joint_scores(softmax_rows(z_emp), softmax_rows(z_ric)).max(axis=1)


def _energy(z_emp: np.ndarray, z_ric: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """Negative free energy of both classifiers, logsumexp(z_e) + logsumexp(z_r) (Liu et al. 2020)."""
    return _logsumexp(z_emp) + _logsumexp(z_ric)


def _agreement(z_emp: np.ndarray, z_ric: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """Probability that both sides name the same emperor: sum_e p(e|obv) * sum_{r in e} p(r|rev)."""
    p_emp, p_ric = softmax_rows(z_emp), softmax_rows(z_ric)
    from_reverse = np.zeros_like(p_emp)
    np.add.at(from_reverse.T, hierarchy.parent, p_ric.T)
    return (p_emp * from_reverse).sum(axis=1)


def _min_side(z_emp: np.ndarray, z_ric: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """The less confident side's top probability, min(max p(e|obv), max p(r|rev))."""
    return np.minimum(softmax_rows(z_emp).max(axis=1), softmax_rows(z_ric).max(axis=1))


# name -> f(calibrated emperor logits (N, E), calibrated RIC logits (N, R), hierarchy) -> (N,) float64
OPEN_SET_SCORES: dict[str, Callable[[np.ndarray, np.ndarray, Hierarchy], np.ndarray]] = {
    "max_joint": _max_joint,
    "energy": _energy,
    "agreement": _agreement,
    "min_side": _min_side,
}


def open_set_score(name: str, z_emp: np.ndarray, z_ric: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """(N,) open-set score ``name`` of N pairs from their calibrated logits (higher = known)."""
    try:
        function = OPEN_SET_SCORES[name]
    except KeyError:
        raise ValueError(f"unknown open-set score {name!r}; choose from {sorted(OPEN_SET_SCORES)}") from None
    z_emp, z_ric = np.asarray(z_emp, np.float64), np.asarray(z_ric, np.float64)
    if z_emp.ndim != 2 or z_ric.ndim != 2 or len(z_emp) != len(z_ric):
        raise ValueError(f"logits of shapes {z_emp.shape} and {z_ric.shape} are not two (N, C) arrays of one batch")
    return np.asarray(function(z_emp, z_ric, hierarchy), dtype=np.float64)


def _finite(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BundleError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Calibration:
    """Per-classifier temperatures (1 = uncalibrated) and the fit's report."""

    temperatures: Mapping[str, float] = field(default_factory=lambda: {"emperor": 1.0, "ric": 1.0})
    report: Mapping = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return bool(self.report) or any(t != 1.0 for t in self.temperatures.values())

    def temperature(self, model: str) -> float:
        return float(self.temperatures.get(model, 1.0))

    def to_dict(self) -> dict:
        return {**{m: {"temperature": t} for m, t in self.temperatures.items()}, **({"report": dict(self.report)} if self.report else {})}

    @classmethod
    def from_manifest(cls, data, where: str) -> Calibration:
        """From the manifest's ``calibration`` object; None/absent = T = 1 for both."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise BundleError(f"{where}: calibration must be an object, got {type(data).__name__}")
        temperatures = {}
        for model in ("emperor", "ric"):
            entry = data.get(model, {"temperature": 1.0})
            if not isinstance(entry, dict):
                raise BundleError(f"{where}: calibration.{model} must be an object with a temperature")
            t = _finite(entry.get("temperature", 1.0), f"calibration.{model}.temperature", where)
            if not TEMPERATURE_BOUNDS[0] <= t <= TEMPERATURE_BOUNDS[1]:
                raise BundleError(f"{where}: calibration.{model}.temperature {t} is outside {TEMPERATURE_BOUNDS}")
            temperatures[model] = t
        report = data.get("report", {})
        return cls(temperatures=temperatures, report=dict(report) if isinstance(report, dict) else {})


@dataclass(frozen=True)
class OpenSet:
    """The open-set rule: ``unknown`` when ``score(coin) < threshold``."""

    score: str
    threshold: float
    far: float | None = None
    auroc: float | None = None
    report: Mapping = field(default_factory=dict)

    def decide(self, values: np.ndarray) -> np.ndarray:
        """(N,) bool: True = unknown."""
        return np.asarray(values, np.float64) < self.threshold

    def to_dict(self) -> dict:
        return {"score": self.score, "threshold": self.threshold, "far": self.far, "auroc": self.auroc,
                **({"report": dict(self.report)} if self.report else {})}

    @classmethod
    def from_manifest(cls, data, where: str) -> OpenSet | None:
        """From the manifest's ``open_set`` object; None/absent = no decision."""
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BundleError(f"{where}: open_set must be an object, got {type(data).__name__}")
        score = data.get("score")
        if score not in OPEN_SET_SCORES:
            raise BundleError(f"{where}: open_set.score {score!r} is not one of {sorted(OPEN_SET_SCORES)}")
        threshold = _finite(data.get("threshold"), "open_set.threshold", where)
        far = None if data.get("far") is None else _finite(data["far"], "open_set.far", where)
        auroc = None if data.get("auroc") is None else _finite(data["auroc"], "open_set.auroc", where)
        report = data.get("report", {})
        return cls(score=score, threshold=threshold, far=far, auroc=auroc, report=dict(report) if isinstance(report, dict) else {})
