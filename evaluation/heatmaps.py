"""The heatmaps ``landmarks-eval`` scored, saved so that anyone can score them again.

One file per side, ``heatmaps_<side>.npz`` (NumPy ``savez_compressed``), N images of S px:

    methods          (M,) str     method keys: "optimized@11" (ours: method@window), "captum_saliency" (peers)
    heatmaps         (M, N, S, S) float32 in [0, 1], the maps exactly as scored
    ground_truth     (N, S, S) bool   union of the discriminative polygons in crop pixels
                                      (pixel centres inside; all False without any)
    has_ground_truth (N,) bool
    coin             (N, S, S) bool   the coin disc preprocessing found (random-point baseline)
    labels           (N,) str     the class each image is explained for (TorchRay's per-class mean)
    targets          (N,) int64   its index in the side's model
    coin_ids         (N,) str
    crop_matrices    (N, 2, 3) float64  photo (x, y) -> crop (x, y) affine map
    sufficiency      (M, N, Q) float64  p(c) with the top q kept, q in ``sufficiency_qs``
    sufficiency_qs   (Q,) float64
    deletion_auc     (M, N) float64
    tolerance_px     ()  float64  TorchRay's tolerance at this crop size (15 * S / 224)
    crop_size        ()  int64

tests/evaluation/test_rescore.py scores these files with its own implementation of
TorchRay's rule and checks that it gets scores.json's figures.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["HeatmapStore"]


class HeatmapStore:
    """Collects one side's maps image by image, then writes the npz (module docstring)."""

    def __init__(self, side: str, *, tolerance_px: float, crop_size: int, qs):
        self.side = side
        self.tolerance_px = float(tolerance_px)
        self.crop_size = int(crop_size)
        self.qs = tuple(qs)
        self.images: dict = defaultdict(list)  # field -> per image
        self.maps: dict = defaultdict(list)  # method -> per image (S, S) float32
        self.sufficiency: dict = defaultdict(list)
        self.deletion: dict = defaultdict(list)

    def add_image(self, *, coin_id: str, label: str, target: int, ground_truth: np.ndarray, has_ground_truth: bool,
                  coin: np.ndarray, crop_matrix: np.ndarray) -> None:
        """One image's ground truth and geometry (call once per image, in scoring order)."""
        for key, value in (("coin_ids", coin_id), ("labels", label), ("targets", int(target)), ("ground_truth", ground_truth),
                           ("has_ground_truth", bool(has_ground_truth)), ("coin", coin), ("crop_matrices", crop_matrix)):
            self.images[key].append(value)

    def add_map(self, method: str, heatmap: np.ndarray, *, sufficiency: np.ndarray, deletion_auc: float) -> None:
        """One image's map of ``method`` with its sufficiency curve and deletion AUC."""
        self.maps[method].append(np.asarray(heatmap, np.float32))
        self.sufficiency[method].append(np.asarray(sufficiency, np.float64))
        self.deletion[method].append(float(deletion_auc))

    def save(self, out_dir: Path) -> Path | None:
        """Write ``out_dir/heatmaps_<side>.npz``; None when no image was added."""
        count = len(self.images["coin_ids"])
        if not count:
            return None
        methods = [m for m, maps in self.maps.items() if len(maps) == count]
        path = Path(out_dir) / f"heatmaps_{self.side}.npz"
        np.savez_compressed(
            path,
            methods=np.array(methods, dtype=str),
            heatmaps=np.stack([np.stack(self.maps[m]) for m in methods]).astype(np.float32),
            ground_truth=np.stack(self.images["ground_truth"]).astype(bool),
            has_ground_truth=np.array(self.images["has_ground_truth"], bool),
            coin=np.stack(self.images["coin"]).astype(bool),
            labels=np.array(self.images["labels"], dtype=str),
            targets=np.array(self.images["targets"], np.int64),
            coin_ids=np.array(self.images["coin_ids"], dtype=str),
            crop_matrices=np.stack(self.images["crop_matrices"]).astype(np.float64),
            sufficiency=np.stack([np.stack(self.sufficiency[m]) for m in methods]),
            sufficiency_qs=np.array(self.qs, np.float64),
            deletion_auc=np.array([self.deletion[m] for m in methods], np.float64),
            tolerance_px=np.float64(self.tolerance_px),
            crop_size=np.int64(self.crop_size),
        )
        return path
