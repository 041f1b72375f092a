"""``denarius scan --landmarks``: the characteristic landmark boxes of each identified coin.

For every coin of a batch, the obverse is explained for the identified emperor and the
reverse for the identified RIC type (the best candidate), with the paper's optimised mask
(``denarius.engine.landmarks.compute_landmarks``, default ``LandmarkConfig``: 11 px windows, stride
3, epsilon 0.5) on the same centre crops the classifiers saw. Sliding windows do not depend
on the image, so each side of a whole batch is one batched optimisation.

Per side the line gets::

    {"target": "Probus", "p_full": 0.83, "p_masked": 0.41,
     "regions": [{"x": 12, "y": 30, "width": 11, "height": 11, "score": 0.97}, ...]}

with boxes in pixels of the network input (crop x crop), best first.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from denarius.engine.bundle import SIDES
from denarius.engine.errors import BundleError

__all__ = ["LandmarkBoxes", "region_boxes"]


def region_boxes(top_regions: list[dict]) -> list[dict]:
    """``[{"box": [x0, y0, x1, y1], "score"}]`` -> ``[{"x", "y", "width", "height", "score"}]``."""
    return [
        {"x": int(r["box"][0]), "y": int(r["box"][1]), "width": int(r["box"][2] - r["box"][0]),
         "height": int(r["box"][3] - r["box"][1]), "score": float(r["score"])}
        for r in top_regions
    ]


class LandmarkBoxes:
    """Gradient models of an engine's bundle, opened on first use.

    Raises (on first use):
        BundleError: the bundle has no gradient graph for a classifier (export it with one).
    """

    def __init__(self, engine):
        self.engine = engine
        self._models: dict = {}
        self._lock = threading.Lock()
        for side in SIDES:
            from denarius.engine.landmarks import GradientModel

            name = GradientModel.model_for_side(engine.bundle, side)
            if not engine.bundle.has(name, "grad"):
                raise BundleError(
                    f"--landmarks needs the gradient graph of the {name} model, which {engine.bundle.path} lacks; "
                    "export the bundle with gradient graphs (denarius export)")

    def _model(self, side: str):
        from denarius.engine.landmarks import GradientModel

        with self._lock:
            if side not in self._models:
                self._models[side] = GradientModel.from_bundle(self.engine.bundle, GradientModel.model_for_side(self.engine.bundle, side))
            return self._models[side]

    def annotate(self, arrays: Sequence[tuple[np.ndarray, np.ndarray]], results: Sequence) -> list[dict]:
        """Landmarks of identified coins.

        Args:
            arrays: per coin, the (obverse, reverse) (3, S, S) float32 network inputs.
            results: per coin, its engine ``Identification`` (no error).
        Returns:
            per coin ``{"obverse": {...}, "reverse": {...}}`` (see the module docstring).
        """
        from denarius.engine.landmarks import LandmarkConfig, compute_landmarks
        from denarius.engine.preprocess import denormalize

        if not arrays:
            return []
        spec = self.engine.spec
        out: list[dict] = [{} for _ in arrays]
        for s, side in enumerate(SIDES):
            # denormalize inverts normalize exactly on uint8 pixels: these are the crops
            crops = denormalize(np.stack([pair[s] for pair in arrays]), spec)  # (B, S, S, 3) uint8
            top = [r.candidates[0] for r in results]
            targets = [c.emperor if side == "obverse" else c.ric for c in top]
            maps = compute_landmarks(self._model(side), crops, config=LandmarkConfig(), targets=targets)
            for i, landmark_map in enumerate(maps):
                out[i][side] = {
                    "target": landmark_map.label,
                    "p_full": float(landmark_map.p_full),
                    "p_masked": None if landmark_map.p_masked is None else float(landmark_map.p_masked),
                    "regions": region_boxes(landmark_map.top_regions),
                }
        return out

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                model.close()
            self._models.clear()
