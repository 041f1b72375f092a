"""Sufficiency: does the top of a heatmap, alone, keep the class?

For each q in ``SUFFICIENCY_QS`` the q% most salient pixels of the map (ties in raster
order, as in the deletion curve) are kept and every other pixel becomes the reference
(blurred or black, as for the methods); p(c) of that image is the score at q. The
sufficiency AUC is the trapezoid area under p(c) over q, divided by the span of q
(0.05 .. 0.40), so it is a mean p(c) in [0, 1]; higher is better. It asks what the paper's
method is built for: the smallest region that keeps the class (the deletion AUC asks the
opposite question: how fast p(c) falls as the top is removed).
"""

from __future__ import annotations

import numpy as np

from denarius.evaluation.metrics import removed_probabilities, salience_rank

__all__ = ["SUFFICIENCY_QS", "sufficiency_curve", "sufficiency_auc"]

SUFFICIENCY_QS = (0.05, 0.10, 0.20, 0.40)  # shares of the pixels kept


def sufficiency_curve(model, crop: np.ndarray, heatmap: np.ndarray, target: int, *, qs=SUFFICIENCY_QS,
                      reference: np.ndarray | None = None) -> np.ndarray:
    """p(target) with only the top-q share of ``heatmap``'s pixels kept, per q.

    Args:
        model: a :class:`denarius.engine.landmarks.model.LandmarkModel`.
        crop: (H, W, 3) in [0, 255]. heatmap: (H, W). reference: (H, W, 3) what a
            removed pixel becomes (None: black). qs: shares in (0, 1].
    Returns:
        (len(qs),) float64, one forward call.
    """
    rank = salience_rank(heatmap)
    kept = np.array([round(heatmap.size * q) for q in qs])
    removed = (rank[None, :] >= kept[:, None]).reshape(len(qs), *heatmap.shape)
    return removed_probabilities(model, crop, removed, target=target, reference=reference)


def sufficiency_auc(curve: np.ndarray, qs=SUFFICIENCY_QS) -> float:
    """Trapezoid area of ``curve`` over ``qs`` divided by the span of ``qs`` (a mean p(c))."""
    qs = np.asarray(qs, np.float64)
    curve = np.asarray(curve, np.float64)
    return float(np.sum((curve[1:] + curve[:-1]) / 2.0 * np.diff(qs)) / (qs[-1] - qs[0]))
