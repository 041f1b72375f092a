"""One image's map scored into every per-image value of ``landmarks-eval``.

:class:`MapScorer` computes, for one heatmap, the pointing game (the earlier rule and
TorchRay's, tie-robust), energy, the deletion AUC and the sufficiency curve, appends them to
the side's :class:`~denarius.evaluation.summary.SideTable` and keeps the map in the
:class:`~denarius.evaluation.heatmaps.HeatmapStore`; :func:`add_images` records each image's
class, ground truth and point baselines once.
"""

from __future__ import annotations

import numpy as np

from denarius.evaluation.ground_truth import Truth
from denarius.evaluation.heatmaps import HeatmapStore
from denarius.evaluation.metrics import deletion_auc, deletion_curve, energy, pointing_hit
from denarius.evaluation.pointing import centre_point, point_hits, random_point_hit, tie_robust_hit, torchray_hit
from denarius.evaluation.sufficiency import sufficiency_curve
from denarius.evaluation.summary import SideTable

__all__ = ["MapScorer", "add_images"]


class MapScorer:
    """Scores maps of one side into its :class:`SideTable` and :class:`HeatmapStore`.

    Args:
        model: the side's :class:`~denarius.engine.landmarks.model.LandmarkModel` (the metrics' forward passes).
        table, store: where the values and maps go (store None: maps not kept).
        tolerance_px: the pointing game's tolerance in crop pixels. deletion_steps: points of the deletion curve minus one.
    """

    def __init__(self, model, table: SideTable, store: HeatmapStore | None, *, tolerance_px: float, deletion_steps: int):
        self.model, self.table, self.store = model, table, store
        self.tolerance_px, self.deletion_steps = tolerance_px, deletion_steps

    def add(self, key: str, heatmap: np.ndarray, *, crop, truth: Truth, target: int, reference, vacuous=None) -> None:
        """Score one map of method ``key`` (call once per image, in the table's image order).

        Args:
            heatmap: (S, S) float in [0, 1]. crop: (S, S, 3) uint8. target: the class index explained.
            reference: (S, S, 3) float32 what a removed pixel becomes (None: black).
            vacuous: the optimiser's vacuous flag (None for methods without one).
        """
        values = self.table.values[key]
        nan = float("nan")
        if truth.polygons:
            values["pointing_game"].append(float(pointing_hit(heatmap, truth.polygons, tolerance_px=self.tolerance_px)))
            values["pointing_game_torchray"].append(float(torchray_hit(heatmap, truth.hits)))
            values["pointing_game_tie_robust"].append(tie_robust_hit(heatmap, truth.hits))
            values["energy"].append(energy(heatmap, truth.inside))
        else:
            for name in ("pointing_game", "pointing_game_torchray", "pointing_game_tie_robust", "energy"):
                values[name].append(nan)
        curve = deletion_curve(self.model, crop, heatmap, target, steps=self.deletion_steps, reference=reference)
        values["deletion_auc"].append(deletion_auc(curve))
        sufficiency = sufficiency_curve(self.model, crop, heatmap, target, reference=reference)
        values["sufficiency"].append(sufficiency)
        if vacuous is not None:
            values["vacuous"].append(float(vacuous))
        if self.store is not None:
            self.store.add_map(key, heatmap, sufficiency=sufficiency, deletion_auc=values["deletion_auc"][-1])


def add_images(table: SideTable, store: HeatmapStore | None, batch, truths: list[Truth], maps) -> None:
    """A batch's images in the side's table (and store): the class explained, ground truth, baselines."""
    for it, truth, m in zip(batch, truths, maps, strict=True):
        size = truth.inside.shape
        table.coin_ids.append(it.coin_id)
        table.labels.append(m.label)
        table.has_ground_truth.append(bool(truth.polygons))
        table.centre.append(float(point_hits(truth.inside, centre_point(size), truth.tolerance_px)))
        table.random.append(random_point_hit(truth.hits, truth.coin))
        if store is not None:
            store.add_image(coin_id=it.coin_id, label=m.label, target=m.target, ground_truth=truth.inside,
                            has_ground_truth=bool(truth.polygons), coin=truth.coin, crop_matrix=truth.matrix)
