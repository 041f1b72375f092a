"""Calibration and the open-set threshold, fitted at export on held-out coins.

``denarius export RUN --out B --calibrate-on HELDOUT.csv --unknown-manifest UNKNOWN.csv
--open-set-far 0.05``:

1. Both fp32 classifiers score every held-out pair (``pair_logits``); images byte-identical
   to a training image are dropped first (``drop_training_images``).
2. The held-out coins are split in two (seeded): one temperature per classifier is fitted
   on the *fit* half by minimising the negative log-likelihood (``fit_temperature``); the
   expected calibration error (``expected_calibration_error``, 15 equal-width bins on the
   top-1 confidence) is reported on the *test* half before and after.
3. The unknown manifest holds coins of emperors and types outside the catalogue (the
   generator with another seed); rows whose emperor or RIC label the bundle knows are
   dropped (``outside_catalogue``). Every score of ``OPEN_SET_SCORES`` is computed from the
   calibrated logits; its AUROC separates the test half (known) from the unknown coins.
   The best AUROC wins (or the one asked for); its threshold accepts at most ``far`` of the
   unknown coins (``threshold_for_far``).
4. A reliability diagram and a risk-coverage curve are written as PNGs (matplotlib).

The bench (``denarius bench --sections open_world``) reuses these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denarius.engine.bundle import sha256_file
from denarius.engine.errors import ConfigError
from denarius.engine.hierarchy import Hierarchy
from denarius.engine.manifest import image_digests
from denarius.engine.open_set import OPEN_SET_SCORES, open_set_score, softmax_rows
from denarius.engine.preprocess import PreprocessSpec

__all__ = [
    "PairLogits",
    "pair_logits",
    "drop_training_images",
    "outside_catalogue",
    "split_halves",
    "fit_temperature",
    "expected_calibration_error",
    "auroc",
    "threshold_for_far",
    "false_accept_rate",
    "fit_open_world",
    "reliability_diagram",
    "risk_coverage_plot",
]

logger = logging.getLogger(__name__)

ECE_BINS = 15


@dataclass(frozen=True)
class PairLogits:
    """Raw (uncalibrated) logits of coin pairs and their labels (-1 = not in the class table)."""

    emperor: np.ndarray  # (N, E) float64
    ric: np.ndarray  # (N, R) float64
    emperor_labels: np.ndarray  # (N,) int64
    ric_labels: np.ndarray  # (N,) int64
    coin_ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.emperor)

    def subset(self, index) -> PairLogits:
        index = np.asarray(index, np.int64)
        return PairLogits(self.emperor[index], self.ric[index], self.emperor_labels[index], self.ric_labels[index],
                          tuple(self.coin_ids[i] for i in index) if self.coin_ids else ())

    def save(self, path: Path) -> None:
        np.savez(path, emperor=self.emperor, ric=self.ric, emperor_labels=self.emperor_labels, ric_labels=self.ric_labels,
                 coin_ids=np.asarray(self.coin_ids, dtype=str))

    @classmethod
    def load(cls, path: Path) -> PairLogits:
        with np.load(path) as data:
            return cls(data["emperor"], data["ric"], data["emperor_labels"], data["ric_labels"], tuple(map(str, data["coin_ids"])))


def drop_training_images(records: list, training_records: list) -> tuple[list, int]:
    """Records none of whose images is byte-identical (sha256) to a training image; and how many were dropped."""
    seen = image_digests(training_records)
    kept = [r for r in records if sha256_file(r.obverse) not in seen and sha256_file(r.reverse) not in seen]
    return kept, len(records) - len(kept)


def outside_catalogue(records: list, hierarchy: Hierarchy, merged: dict | None = None) -> tuple[list, int]:
    """Records whose emperor and RIC label the bundle does not know; and how many were dropped."""
    known_rics = set(hierarchy.rics) | {o for originals in (merged or {}).values() for o in originals}
    emperors = set(hierarchy.emperors)
    kept = [r for r in records if r.emperor not in emperors and r.ric not in known_rics]
    return kept, len(records) - len(kept)


def pair_logits(
    records: Sequence, *, files: dict, spec: PreprocessSpec, hierarchy: Hierarchy, merged: dict | None = None,
    names: dict | None = None, progress: str | None = None,
) -> PairLogits:
    """Run both fp32 classifiers on every readable pair of ``records``.

    Args:
        files: {"emperor": fp32 ONNX path, "ric": fp32 ONNX path}.
        names: {model: (input name, output name)}; default ("image", "logits").
    Pairs with an unreadable side are skipped (with a warning from the preprocessing).
    """
    from denarius.engine.backends.sessions import open_session
    from denarius.export.quantize import preprocess_images

    names = names or {}
    obverse, kept_o = preprocess_images([r.obverse for r in records], spec, progress=progress and f"{progress}: obverse")
    reverse, kept_r = preprocess_images([r.reverse for r in records], spec, progress=progress and f"{progress}: reverse")
    both = np.intersect1d(kept_o, kept_r)
    obverse = obverse[np.searchsorted(kept_o, both)]
    reverse = reverse[np.searchsorted(kept_r, both)]
    logits = {}
    for model, images in (("emperor", obverse), ("ric", reverse)):
        session = open_session(files[model])
        input_name, output_name = names.get(model, ("image", "logits"))
        out = [session.run([output_name], {input_name: images[i:i + 64]})[0] for i in range(0, len(images), 64)]
        classes = len(hierarchy.emperors if model == "emperor" else hierarchy.rics)
        logits[model] = np.concatenate(out).astype(np.float64) if out else np.zeros((0, classes))
    to_class = {original: label for label, originals in (merged or {}).items() for original in originals}
    e_index = {name: i for i, name in enumerate(hierarchy.emperors)}
    r_index = {name: i for i, name in enumerate(hierarchy.rics)}
    chosen = [records[i] for i in both]
    return PairLogits(
        emperor=logits["emperor"], ric=logits["ric"],
        emperor_labels=np.asarray([e_index.get(r.emperor, -1) for r in chosen], np.int64),
        ric_labels=np.asarray([r_index.get(to_class.get(r.ric, r.ric), -1) for r in chosen], np.int64),
        coin_ids=tuple(r.coin_id for r in chosen),
    )


def split_halves(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of range(n) into a fitting half and a test half."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising the mean NLL of softmax(logits / T) (golden-section search on log T).

    Rows with label -1 are ignored. The NLL is convex in 1/T, so the search finds its minimum.
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    if not len(labels):
        raise ConfigError("fitting a temperature needs held-out coins of known classes; none were given")
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(logits, labels, np.exp(a)), _nll(logits, labels, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(logits, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def _bins(confidence: np.ndarray, correct: np.ndarray, bins: int) -> list[dict]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(mask.sum()),
                    "confidence": float(confidence[mask].mean()) if mask.any() else None,
                    "accuracy": float(correct[mask].mean()) if mask.any() else None})
    return out


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """ECE of the top-1 confidence: sum over equal-width bins of |accuracy - confidence| * share of coins."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels, np.int64)
    keep = labels >= 0
    probabilities, labels = probabilities[keep], labels[keep]
    if not len(labels):
        return float("nan")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    gaps = [abs(b["accuracy"] - b["confidence"]) * b["count"] for b in _bins(confidence, correct, bins) if b["count"]]
    return float(sum(gaps) / len(labels))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(score(known) > score(unknown)) + 0.5 P(tie): the area under the ROC curve (Mann-Whitney)."""
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if not len(known) or not len(unknown):
        return float("nan")
    values = np.concatenate([known, unknown])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2
    rank_sum = ranks[: len(known)].sum()
    return float((rank_sum - len(known) * (len(known) + 1) / 2) / (len(known) * len(unknown)))


def threshold_for_far(unknown: np.ndarray, far: float) -> float:
    """A threshold t with mean(unknown >= t) <= far: midway between the k-th and (k+1)-th highest unknown scores, k = floor(far n)."""
    if not 0 <= far < 1:
        raise ConfigError(f"the open-set false-accept rate must be in [0, 1), got {far}")
    values = np.sort(np.asarray(unknown, np.float64))[::-1]
    if not len(values):
        raise ConfigError("choosing an open-set threshold needs coins outside the catalogue; none were given")
    k = int(np.floor(far * len(values)))
    below = values[k]
    above = values[k - 1] if k > 0 else below + max(1e-6, abs(below) * 1e-6)
    return float((below + above) / 2)


def false_accept_rate(unknown: np.ndarray, threshold: float) -> float:
    """Share of unknown coins accepted as known (score >= threshold)."""
    unknown = np.asarray(unknown, np.float64)
    return float(np.mean(unknown >= threshold)) if len(unknown) else float("nan")


def calibrated(logits: PairLogits, temperatures: dict) -> tuple[np.ndarray, np.ndarray]:
    """(emperor logits / T_e, RIC logits / T_r)."""
    return logits.emperor / temperatures["emperor"], logits.ric / temperatures["ric"]


def scores_of(logits: PairLogits, temperatures: dict, hierarchy: Hierarchy) -> dict[str, np.ndarray]:
    """Every open-set score of these pairs, from the calibrated logits."""
    z_emp, z_ric = calibrated(logits, temperatures)
    return {name: open_set_score(name, z_emp, z_ric, hierarchy) for name in OPEN_SET_SCORES}


def joint_correct(logits: PairLogits, temperatures: dict, hierarchy: Hierarchy) -> np.ndarray:
    """(N,) bool: the top joint candidate is the coin's RIC type."""
    z_emp, z_ric = calibrated(logits, temperatures)
    best = hierarchy.joint_scores(softmax_rows(z_emp), softmax_rows(z_ric)).argmax(axis=1)
    return best == logits.ric_labels


def fit_open_world(
    known: PairLogits, hierarchy: Hierarchy, *, unknown: PairLogits | None = None, far: float = 0.05,
    score: str | None = None, seed: int = 0,
) -> dict:
    """Fit temperatures (fit half of ``known``), report ECE (test half), choose the open-set rule.

    Returns:
        {"calibration": Calibration.to_dict()-style object, "open_set": OpenSet.to_dict()-style
        object or None (no unknown coins), "curves": what the plots need}.
    """
    if score is not None and score not in OPEN_SET_SCORES:
        raise ConfigError(f"unknown open-set score {score!r}; choose from {sorted(OPEN_SET_SCORES)}")
    if len(known) < 4:
        raise ConfigError(f"calibration needs at least 4 readable held-out coins, got {len(known)}")
    fit_index, test_index = split_halves(len(known), seed=seed)
    fit, test = known.subset(fit_index), known.subset(test_index)
    temperatures, ece, reliability = {}, {}, {}
    for model, labels_of in (("emperor", "emperor_labels"), ("ric", "ric_labels")):
        z_fit, z_test = getattr(fit, model), getattr(test, model)
        t = fit_temperature(z_fit, getattr(fit, labels_of))
        temperatures[model] = t
        labels = getattr(test, labels_of)
        before, after = softmax_rows(z_test), softmax_rows(z_test / t)
        ece[model] = {"before": round(expected_calibration_error(before, labels), 5),
                      "after": round(expected_calibration_error(after, labels), 5)}
        keep = labels >= 0
        reliability[model] = {
            name: _bins(p[keep].max(axis=1), (p[keep].argmax(axis=1) == labels[keep]).astype(float), ECE_BINS)
            for name, p in (("before", before), ("after", after))
        }
    report = {"fit_coins": len(fit), "test_coins": len(test), "bins": ECE_BINS, "ece": ece, "seed": seed}
    result: dict = {
        "calibration": {**{m: {"temperature": round(t, 6)} for m, t in temperatures.items()}, "report": report},
        "open_set": None,
        "curves": {"reliability": reliability},
    }
    if unknown is None or not len(unknown):
        return result
    known_scores = scores_of(test, temperatures, hierarchy)
    unknown_scores = scores_of(unknown, temperatures, hierarchy)
    aurocs = {name: round(auroc(known_scores[name], unknown_scores[name]), 5) for name in OPEN_SET_SCORES}
    chosen = score or max(aurocs, key=lambda name: aurocs[name])
    threshold = threshold_for_far(unknown_scores[chosen], far)
    correct = joint_correct(test, temperatures, hierarchy)
    accepted = known_scores[chosen] >= threshold
    result["open_set"] = {
        "score": chosen, "threshold": threshold, "far": far, "auroc": aurocs[chosen],
        "report": {
            "auroc": aurocs,
            "known_coins": len(test), "unknown_coins": len(unknown),
            "false_accept_rate": round(false_accept_rate(unknown_scores[chosen], threshold), 5),
            "known_accepted": round(float(accepted.mean()), 5),
            "known_accepted_correct": round(float(correct[accepted].mean()), 5) if accepted.any() else None,
            "chosen_by": "requested" if score else "highest AUROC",
        },
    }
    result["curves"]["risk_coverage"] = {
        name: risk_coverage(known_scores[name], correct, unknown_scores[name]) for name in OPEN_SET_SCORES
    }
    result["curves"]["aurocs"] = aurocs
    return result


def risk_coverage(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> dict:
    """Accepting the highest-scoring coins first (known and unknown together): coverage vs risk.

    Risk = share of accepted coins answered wrongly (an unknown coin accepted, or a known coin
    whose top candidate is wrong); coverage = share of all coins accepted.
    """
    values = np.concatenate([known, unknown])
    wrong = np.concatenate([~np.asarray(correct, bool), np.ones(len(unknown), bool)])
    order = np.argsort(-values, kind="stable")
    cumulative = np.cumsum(wrong[order])
    accepted = np.arange(1, len(values) + 1)
    step = max(1, len(values) // 200)
    picks = np.r_[np.arange(0, len(values), step), len(values) - 1]
    return {"coverage": (accepted[picks] / len(values)).round(5).tolist(), "risk": (cumulative[picks] / accepted[picks]).round(5).tolist()}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram(curves: dict, ece: dict, path: Path, *, title: str = "") -> Path:
    """Accuracy vs confidence per bin, before and after temperature scaling, one panel per classifier."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4.2))
    for ax, (model, by_stage) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for stage, style in (("before", dict(color="tab:red", marker="o")), ("after", dict(color="tab:blue", marker="s"))):
            points = [(b["confidence"], b["accuracy"]) for b in by_stage[stage] if b["count"]]
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, label=f"{stage} (ECE {ece[model][stage]:.3f})", **style)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="top-1 confidence", ylabel="accuracy", title=f"{model} classifier")
        ax.legend(fontsize=8, loc="upper left")
    return _save(plt, fig, path, title)


def _save(plt, fig, path: Path, title: str) -> Path:
    """Title, lay out, write and close a figure; returns its path."""
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def risk_coverage_plot(curves: dict, aurocs: dict, path: Path, *, chosen: str | None = None, title: str = "") -> Path:
    """Risk vs coverage for every open-set score (known and unknown coins together)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, curve in curves.items():
        mark = " (chosen)" if name == chosen else ""
        ax.plot(curve["coverage"], curve["risk"], linewidth=2.2 if name == chosen else 1.2, label=f"{name}: AUROC {aurocs[name]:.3f}{mark}")
    ax.set(xlabel="coverage (share of coins accepted)", ylabel="risk (share of accepted answered wrongly)", xlim=(0, 1), ylim=(0, None),
           title="risk-coverage, known + unknown coins")
    ax.legend(fontsize=8)
    return _save(plt, fig, path, title)
