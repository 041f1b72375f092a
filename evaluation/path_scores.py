"""The pointing game along the optimiser's path.

The optimised heatmap is the mask's persistence: its mean over the iterates visited (see
:mod:`denarius.engine.landmarks.optimizer`). Scoring the persistence the optimiser would have
returned had it stopped after t iterations shows where its answer comes from. The first
steps follow the loss gradient at x = 1, a first-order estimate of what removing each
region alone costs the class (the question occlusion asks). Later steps follow the
constraint: which regions, kept together, are enough to hold p(c) above
p(c | full) - epsilon (the smallest sufficient set the method is defined by). Where a
model's sufficient evidence lies outside the ground truth's discriminative elements, the
curve falls as the optimiser converges; where it lies on them, it rises.

Input per image: a :class:`denarius.engine.landmarks.result.LandmarkMap` computed with
``checkpoints`` (``persistence_by_iteration``), its regions and the discriminative
polygons in crop pixels.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from denarius.engine.landmarks import composition
from denarius.engine.landmarks.regions import Regions
from denarius.engine.landmarks.result import LandmarkMap
from denarius.evaluation.bootstrap import RESAMPLES, SEED, mean_interval
from denarius.evaluation.metrics import pointing_hit

__all__ = ["PATH_CHECKPOINTS", "PathScores", "plot_path"]

logger = logging.getLogger(__name__)

PATH_CHECKPOINTS = (2, 3, 5, 10, 20, 30, 50, 100)  # after 1 iteration only x = 1 was visited: a constant map


class PathScores:
    """Pointing-game hits per side and checkpoint, accumulated image by image."""

    def __init__(self, checkpoints=PATH_CHECKPOINTS):
        self.checkpoints = tuple(int(c) for c in checkpoints)
        self._hits: dict = defaultdict(lambda: defaultdict(list))  # side -> t -> [bool]

    def add(self, side: str, landmark_map: LandmarkMap, regions: Regions, polygons: list[np.ndarray], *, tolerance_px: float) -> None:
        """Score one optimised map at every checkpoint.

        Args:
            landmark_map: computed with ``checkpoints=self.checkpoints``.
            regions: the map's regions (H, W match its heatmap).
            polygons: discriminative polygons, (n, 2) float arrays in crop pixels; an
                image without one is skipped, as in the pointing game.
        """
        if not polygons:
            return
        path = landmark_map.persistence_by_iteration
        if path is None or set(path) != set(self.checkpoints):
            raise ValueError("the map was not computed with this scorer's checkpoints")
        persistence = np.stack([path[t] for t in self.checkpoints]).astype(np.float32)  # (n, K)
        for t, heatmap in zip(self.checkpoints, composition.mask_weights(regions, persistence), strict=True):
            self._hits[side][t].append(pointing_hit(heatmap, polygons, tolerance_px=tolerance_px))

    def summary(self, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
        """side -> {"iterations": [t, ...], "pointing_game": [rate, ...], "intervals": [[low, high], ...], "images": n}
        (95% bootstrap intervals over images, :mod:`denarius.evaluation.bootstrap`)."""
        return {
            side: {
                "iterations": list(self.checkpoints),
                "pointing_game": [float(np.mean(by_t[t])) for t in self.checkpoints],
                "intervals": [mean_interval(np.asarray(by_t[t], np.float64), resamples=resamples, seed=seed) for t in self.checkpoints],
                "images": len(by_t[self.checkpoints[0]]),
            }
            for side, by_t in self._hits.items()
        }


def plot_path(scores: dict, path: Path) -> Path | None:
    """Pointing game vs iterations per side, the baselines as dashed lines (PNG).

    Args:
        scores: the ``scores.json`` dict of :func:`denarius.evaluation.eval.evaluate` (uses
            ``path``, ``window`` and ``by_side``).
    Returns:
        the PNG's path, or None when matplotlib is not installed (it comes with the
        ``serve`` and ``train`` extras).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no %s (pip install matplotlib)", path)
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours = {"obverse": "tab:orange", "reverse": "tab:blue"}
    for side, curve in scores.get("path", {}).items():
        colour = colours.get(side)
        label = f"optimised, {side} ({curve['images']} images)"
        ax.plot(curve["iterations"], curve["pointing_game"], marker="o", color=colour, label=label)
        baselines = scores.get("by_side", {}).get(side, {}).get(str(scores["window"]), {})
        for method, style in (("occlusion", "--"), ("saliency", ":")):
            if baselines.get(method) and baselines[method]["pointing_game"] is not None:
                ax.axhline(baselines[method]["pointing_game"], color=colour, linestyle=style, linewidth=1, label=f"{method}, {side}")
    ax.set_xscale("log")
    checkpoints = next(iter(scores["path"].values()))["iterations"] if scores.get("path") else []
    ax.set_xticks(checkpoints, [str(t) for t in checkpoints])
    ax.minorticks_off()
    ax.set_xlabel("optimiser iterations (heatmap = persistence so far)")
    ax.set_ylabel("pointing game")
    ax.set_ylim(0, 1)
    ax.set_title(f"Pointing game along the optimiser's path, window {scores['window']}, epsilon {scores['epsilon']}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
