"""LandmarkMap: what every landmark method returns, and its overlay rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = ["LandmarkMap", "rescale", "overlay", "coin_view", "coin_overlay", "top_regions", "OVERLAY_SIZE"]


def rescale(values: np.ndarray) -> np.ndarray:
    """Min-max rescale to [0, 1] float32; a constant (or empty) array maps to zeros.

    Non-finite entries are treated as the minimum, so the result never holds NaN.
    """
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.float32)
    lo, hi = values[finite].min(), values[finite].max()
    out = np.where(finite, values, lo) - lo
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(values.shape, np.float32)
    return (out / (hi - lo)).astype(np.float32)


def top_regions(scores: np.ndarray, boxes: np.ndarray, *, count: int = 5, min_iou: float = 0.3) -> list[dict]:
    """The highest-scoring regions, skipping boxes overlapping a kept one by IoU > min_iou.

    Args:
        scores: (K,) per-region score. boxes: (K, 4) int x0, y0, x1, y1 (exclusive).
    Returns:
        up to ``count`` dicts ``{"box": [x0, y0, x1, y1], "score": float}``, best first.
    """
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    kept: list[dict] = []
    for k in order:
        box = boxes[k].astype(np.float64)
        ok = True
        for other in kept:
            o = np.asarray(other["box"], np.float64)
            iw = max(0.0, min(box[2], o[2]) - max(box[0], o[0]))
            ih = max(0.0, min(box[3], o[3]) - max(box[1], o[1]))
            inter = iw * ih
            union = (box[2] - box[0]) * (box[3] - box[1]) + (o[2] - o[0]) * (o[3] - o[1]) - inter
            if union > 0 and inter / union > min_iou:
                ok = False
                break
        if ok:
            kept.append({"box": [int(v) for v in boxes[k]], "score": float(scores[k])})
            if len(kept) >= count:
                break
    return kept


OVERLAY_FLOOR = 0.25  # map values at or below this leave the photo's own colour
OVERLAY_SIZE = 512  # side of a whole-coin overlay (px)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.6, floor: float = OVERLAY_FLOOR) -> np.ndarray:
    """Blend a heatmap over an image where it is high: red = more discriminative (jet).

    Each pixel takes the colour map with weight ``alpha * clip((h - floor) / (1 - floor), 0, 1)``,
    so the coin keeps its own colour and relief outside the hot regions.

    Args:
        image: (H, W, 3) uint8 RGB. heatmap: (h, w) in [0, 1], resized to (H, W) if needed.
        alpha: the colour map's weight where the map is 1. floor: map value below which
            nothing is drawn, in [0, 1).
    Returns:
        (H, W, 3) uint8 RGB.
    """
    image = np.asarray(image, np.uint8)
    heat: np.ndarray = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0.0, 1.0)
    if heat.shape != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap((heat * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    weight = (float(alpha) * np.clip((heat - floor) / (1.0 - floor), 0.0, 1.0))[..., None]
    return np.round(image * (1.0 - weight) + colour * weight).astype(np.uint8)


def coin_view(rgb: np.ndarray, crop_matrix: np.ndarray, *, resize: int, crop: int, size: int = OVERLAY_SIZE) -> np.ndarray:
    """The whole coin of a photo at ``size`` px: the canonical square (disc + margin, so the
    legend at the rim is not cut as the network's centre crop cuts it), from the photo's
    own pixels (background kept).

    Args:
        rgb: (H, W, 3) uint8 RGB decoded photo. crop_matrix: (2, 3) photo -> centre-crop
            affine matrix (``LandmarkMap.source_transform``). resize, crop: the model's
            canonical and crop sides (``PreprocessSpec.resize`` / ``.crop``).
    Returns:
        (size, size, 3) uint8 RGB; :func:`coin_overlay` draws a crop-sized heatmap on it.
    """
    matrix = np.asarray(crop_matrix, np.float64).copy()
    matrix[:, 2] += (resize - crop) // 2  # centre crop -> canonical square
    matrix *= size / resize
    scale = float(np.hypot(*matrix[0, :2]))
    if scale < 0.5:  # shrink with area averaging first: warpAffine alone would alias
        factor = min(1.0, 2.0 * scale)
        rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        matrix[:, :2] /= factor
    return cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def coin_overlay(view: np.ndarray, heatmap: np.ndarray, *, resize: int, alpha: float = 0.6) -> np.ndarray:
    """Draw a centre-crop heatmap on a :func:`coin_view`: (size, size, 3) uint8 RGB.

    Args:
        view: (size, size, 3) uint8 from :func:`coin_view`. heatmap: (crop, crop) in [0, 1].
        resize: the model's canonical side; the crop lies centred in it.
    """
    size, crop = view.shape[0], heatmap.shape[0]
    scale, offset = size / resize, (resize - crop) // 2
    to_view = np.array([[scale, 0.0, scale * offset], [0.0, scale, scale * offset]])
    heat = cv2.warpAffine(np.asarray(heatmap, np.float32), to_view, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return overlay(view, heat, alpha=alpha)


@dataclass
class LandmarkMap:
    """Characteristic landmarks of one image for one class.

    Attributes:
        method: "optimized" | "occlusion" | "saliency".
        target: class index; label: class name.
        mask: (K,) float32 per-region values (optimised mask in [0, 1], probability drops,
            or mean saliency).
        heatmap: (H, W) float32 in [0, 1] at the network input (crop) size: the per-pixel
            map C * sum_k s_k I_k rescaled to [0, 1], where s is the optimiser's ladder
            survival, persistence or mask (``LandmarkConfig.heatmap``) or the baseline's
            region score (a constant map: zeros for the baselines, its own value for
            "optimized"); the optimised map's pixels off the coin are lowered to the coin's
            minimum (``LandmarkConfig.support``).
        image: (H, W, 3) uint8 RGB, the crop the map refers to (for overlays).
        p_full: p(c | full image). p_masked: p(c | masked image) for "optimized", else None.
        epsilon: the constraint's epsilon ("optimized" only).
        regions: description of the regions, e.g. {"kind": "windows", "window": 11, "stride": 3}.
        iterations, converged: optimiser iterations ("optimized"; 0 / True for baselines).
        top_regions: best regions as {"box": [x0, y0, x1, y1], "score"} in crop pixels.
        forward_equivalents: cost (forward 1, forward + backward 3). seconds: wall time
            (of the batch it was computed in, divided by the batch's rows).
        vacuous: optimised only - the reference image (every region removed) already
            satisfies the constraint, so the empty mask is optimal (lower epsilon for a
            mask; the persistence heatmap still ranks the regions).
        persistence: optimised only - (K,) float32 mean of the mask over the iterations.
        survival: optimised with the ladder heatmap only - (K,) float32 in [0, max rung],
            each region's survival over the epsilon ladder (what the heatmap draws; see
            :mod:`denarius.engine.landmarks.ladder`). ladder: its rungs.
        persistence_by_iteration: optimised only, when asked for - {t: (K,) float32}, the
            persistence had the optimiser stopped after t iterations.
        masked_image: optimised only - (H, W, 3) uint8 f_I(mask), what the network saw:
            the landmarks kept, everything else replaced by the reference (paper Fig. 6).
        reference: what removed regions became ("blur" or "black"; optimised and occlusion).
        source_transform, source_size: when computed from a photo by
            :func:`denarius.engine.landmarks.landmarks_for_source`, the (2, 3) affine map photo ->
            crop pixels and the photo's (height, width); see :meth:`source_heatmap`.
    """

    method: str
    target: int
    label: str
    mask: np.ndarray
    heatmap: np.ndarray
    image: np.ndarray
    p_full: float
    p_masked: float | None = None
    epsilon: float | None = None
    regions: dict = field(default_factory=dict)
    iterations: int = 0
    converged: bool = True
    top_regions: list = field(default_factory=list)
    forward_equivalents: float = 0.0
    seconds: float = 0.0
    vacuous: bool = False
    persistence: np.ndarray | None = None
    survival: np.ndarray | None = None
    ladder: tuple[float, ...] | None = None
    persistence_by_iteration: dict[int, np.ndarray] | None = None
    masked_image: np.ndarray | None = None
    reference: str | None = None
    source_transform: np.ndarray | None = None
    source_size: tuple[int, int] | None = None

    @property
    def window(self) -> int | None:
        return self.regions.get("window")

    @property
    def stride(self) -> int | None:
        return self.regions.get("stride")

    def to_dict(self, *, include_mask: bool = True) -> dict:
        """JSON-ready summary (the heatmap is left to the PNG)."""
        data = {
            "method": self.method,
            "target": int(self.target),
            "label": self.label,
            "p_full": float(self.p_full),
            "p_masked": None if self.p_masked is None else float(self.p_masked),
            "epsilon": None if self.epsilon is None else float(self.epsilon),
            "regions": dict(self.regions),
            "iterations": int(self.iterations),
            "converged": bool(self.converged),
            "top_regions": list(self.top_regions),
            "forward_equivalents": float(self.forward_equivalents),
            "seconds": float(self.seconds),
            "vacuous": bool(self.vacuous),
            "reference": self.reference,
            "ladder": None if self.ladder is None else [float(e) for e in self.ladder],
            "size": list(self.heatmap.shape),
        }
        if include_mask:
            data["mask"] = [round(float(v), 5) for v in self.mask]
            if self.persistence is not None:
                data["persistence"] = [round(float(v), 5) for v in self.persistence]
            if self.survival is not None:
                data["survival"] = [round(float(v), 5) for v in self.survival]
        return data

    def overlay(self, *, alpha: float = 0.6, scale: int = 1) -> np.ndarray:
        """(H*scale, W*scale, 3) uint8 RGB heatmap blended over the crop."""
        image = self.image
        if scale != 1:
            image = cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        return overlay(image, self.heatmap, alpha=alpha)

    def save_png(self, path, *, alpha: float = 0.6, scale: int = 1) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(self.overlay(alpha=alpha, scale=scale), cv2.COLOR_RGB2BGR))
        return path

    def source_heatmap(self) -> np.ndarray:
        """The heatmap at the source photo's size, (height, width) float32 in [0, 1]."""
        if self.source_transform is None or self.source_size is None:
            raise ValueError("this map was computed from a crop, not a photo; use heatmap_in_source(matrix, size)")
        return self.heatmap_in_source(self.source_transform, self.source_size)

    def heatmap_in_source(self, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The heatmap warped back to the source photo.

        Args:
            matrix: (2, 3) affine map from source pixel coordinates to crop coordinates
                (see :func:`denarius.engine.landmarks.geometry.crop_transform`).
            size: (height, width) of the source photo.
        Returns:
            (height, width) float32 in [0, 1]; 0 outside the crop.
        """
        return cv2.warpAffine(
            self.heatmap, np.asarray(matrix, np.float64), (int(size[1]), int(size[0])),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0,
        )
