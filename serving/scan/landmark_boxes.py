"""``denarius scan --landmarks``: the characteristic landmark boxes of each identified coin.

For every coin of a batch, the obverse is explained for the identified emperor and the
reverse for the identified RIC type (the best candidate), with the paper's optimised mask
(the engine's :class:`~denarius.engine.landmarks.service.LandmarkService`, default
``LandmarkConfig``: 11 px windows, stride 3, epsilon 0.5) on the same centre crops the
classifiers saw, through the engine's own backend. Sliding windows do not depend
on the image, so each side of a whole batch is one batched optimisation.

Per side the line gets::

    {"target": "Probus", "p_full": 0.83, "p_masked": 0.41,
     "regions": [{"x": 12, "y": 30, "width": 11, "height": 11, "score": 0.97}, ...]}

with boxes in pixels of the network input (crop x crop), best first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from denarius.engine.bundle import SIDES
from denarius.engine.errors import BundleError
from denarius.engine.landmarks.service import LandmarkService

__all__ = ["LandmarkBoxes", "region_boxes"]


def region_boxes(top_regions: list[dict]) -> list[dict]:
    """``[{"box": [x0, y0, x1, y1], "score"}]`` -> ``[{"x", "y", "width", "height", "score"}]``."""
    return [
        {"x": int(r["box"][0]), "y": int(r["box"][1]), "width": int(r["box"][2] - r["box"][0]),
         "height": int(r["box"][3] - r["box"][1]), "score": float(r["score"])}
        for r in top_regions
    ]


class LandmarkBoxes:
    """The landmark service of an engine, checked for gradient graphs up front.

    Raises:
        BundleError: the bundle has no gradient graph for a classifier (export it with one).
    """

    def __init__(self, engine):
        self.engine = engine
        self.service = LandmarkService.from_engine(engine)
        for side in SIDES:
            try:
                self.service.require_gradient(self.service.model_name(side))
            except BundleError as error:
                raise BundleError(f"--landmarks: {error}") from None

    def annotate(self, arrays: Sequence[tuple[np.ndarray, np.ndarray]], results: Sequence) -> list[dict]:
        """Landmarks of identified coins.

        Args:
            arrays: per coin, the (obverse, reverse) (3, S, S) float32 network inputs.
            results: per coin, its engine ``Identification`` (no error).
        Returns:
            per coin ``{"obverse": {...}, "reverse": {...}}`` (see the module docstring).
        """
        from denarius.engine.landmarks import LandmarkConfig

        if not arrays:
            return []
        out: list[dict] = [{} for _ in arrays]
        for s, side in enumerate(SIDES):
            model = self.service.model_name(side)
            crops = self.service.crops_from_inputs(np.stack([pair[s] for pair in arrays]), model=model)  # (B, S, S, 3) uint8
            top = [r.candidates[0] for r in results]
            targets = [c.emperor if side == "obverse" else c.ric for c in top]
            maps = self.service.compute(crops, model=model, config=LandmarkConfig(), targets=targets)
            for i, landmark_map in enumerate(maps):
                out[i][side] = {
                    "target": landmark_map.label,
                    "p_full": float(landmark_map.p_full),
                    "p_masked": None if landmark_map.p_masked is None else float(landmark_map.p_masked),
                    "regions": region_boxes(landmark_map.top_regions),
                }
        return out

    def close(self) -> None:
        """Close the gradient backends; the engine's backend stays the engine's."""
        self.service.close()
