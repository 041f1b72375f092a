"""Subregions r_1..r_K of an image for the landmark optimiser and the baselines.

Three kinds, one interface (:class:`Regions`):

- :class:`WindowRegions` - w x w sliding windows with stride s (the paper's 11x11 and
  21x21). Window tops/lefts are ``0, s, 2s, ...`` plus one last window flush with the
  bottom/right edge when the stride does not land there, so every pixel is covered and
  every window lies inside the image (224 px, w=11, s=3 -> 72 x 72 = 5,184 windows).
  Compact form: the start arrays ``ys`` (ny,), ``xs`` (nx,); region k = (k // nx, k % nx).
- :class:`LabelRegions` - a partition given by an integer label image (superpixels from
  SLIC via :func:`superpixel_regions`, or single pixels via :func:`pixel_regions`).
  Compact form: ``labels`` (H, W) int32 in [0, K).

Every kind exposes the per-pixel coverage normaliser ``coverage`` C (H, W) float32 =
1 / (number of regions covering the pixel), 0 where none covers it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from denarius.engine.errors import ConfigError, InputError

__all__ = [
    "Regions",
    "WindowRegions",
    "LabelRegions",
    "window_starts",
    "window_regions",
    "superpixel_regions",
    "pixel_regions",
]

logger = logging.getLogger(__name__)


def window_starts(length: int, size: int, stride: int) -> np.ndarray:
    """Window starts along one axis: 0, s, 2s, ... and a last one at ``length - size``.

    Returns:
        (n,) int32, strictly increasing, every window ``[start, start + size)`` inside
        ``[0, length)`` and their union the whole axis.
    """
    if size < 1 or stride < 1:
        raise ConfigError(f"window size and stride must be >= 1, got size={size}, stride={stride}")
    if size > length:
        raise ConfigError(f"window size {size} is larger than the image side {length}; use a window <= {length}")
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)  # the last, partial stride
    return np.asarray(starts, np.int32)


class Regions:
    """Common interface. Subclasses are frozen dataclasses.

    Attributes:
        kind: "windows" | "superpixels" | "pixels".
        height, width: image size in pixels.
        count: K, the number of regions.
        coverage: (H, W) float32, 1 / #regions covering each pixel, 0 where none does.
    """

    kind: str
    height: int
    width: int

    @property
    def count(self) -> int:
        raise NotImplementedError

    @property
    def coverage(self) -> np.ndarray:
        raise NotImplementedError

    def boxes(self) -> np.ndarray:
        """(K, 4) int32 ``x0, y0, x1, y1`` (exclusive ends) bounding box of each region."""
        raise NotImplementedError

    def indicator(self, ks: np.ndarray) -> np.ndarray:
        """(len(ks), H, W) bool: pixel inside region ``ks[i]``."""
        raise NotImplementedError

    def areas(self) -> np.ndarray:
        """(K,) float64 number of pixels in each region."""
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-ready description (kind and parameters, without arrays)."""
        raise NotImplementedError


@dataclass(frozen=True)
class WindowRegions(Regions):
    """Sliding w x w windows with stride s over an (height, width) image."""

    height: int
    width: int
    size: int
    stride: int
    kind: str = field(default="windows", init=False)
    # Derived in __post_init__ (read-only arrays); not part of the value: no init, repr or eq.
    ys: np.ndarray = field(init=False, repr=False, compare=False)
    xs: np.ndarray = field(init=False, repr=False, compare=False)
    _coverage: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        ys = window_starts(self.height, self.size, self.stride)
        xs = window_starts(self.width, self.size, self.stride)
        # Coverage counts are separable: (#windows covering row p) * (#covering column q).
        cy = np.zeros(self.height + 1, np.int64)
        np.add.at(cy, ys, 1)
        np.add.at(cy, ys + self.size, -1)
        cx = np.zeros(self.width + 1, np.int64)
        np.add.at(cx, xs, 1)
        np.add.at(cx, xs + self.size, -1)
        counts = np.outer(np.cumsum(cy)[:-1], np.cumsum(cx)[:-1])
        with np.errstate(divide="ignore"):
            coverage = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0).astype(np.float32)
        coverage.setflags(write=False)
        ys.setflags(write=False)
        xs.setflags(write=False)
        object.__setattr__(self, "ys", ys)
        object.__setattr__(self, "xs", xs)
        object.__setattr__(self, "_coverage", coverage)

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def grid(self) -> tuple[int, int]:
        """(ny, nx): masks reshape to (B, ny, nx)."""
        return len(self.ys), len(self.xs)

    @property
    def coverage(self) -> np.ndarray:
        return self._coverage

    def boxes(self) -> np.ndarray:
        yy, xx = np.meshgrid(self.ys, self.xs, indexing="ij")
        y0, x0 = yy.ravel(), xx.ravel()
        return np.stack([x0, y0, x0 + self.size, y0 + self.size], axis=1).astype(np.int32)

    def indicator(self, ks: np.ndarray) -> np.ndarray:
        ks = np.asarray(ks, np.int64)
        out = np.zeros((len(ks), self.height, self.width), bool)
        nx = len(self.xs)
        for i, k in enumerate(ks):
            y, x = self.ys[k // nx], self.xs[k % nx]
            out[i, y : y + self.size, x : x + self.size] = True
        return out

    def areas(self) -> np.ndarray:
        return np.full(self.count, float(self.size * self.size))

    def describe(self) -> dict:
        return {"kind": "windows", "window": self.size, "stride": self.stride, "count": self.count}


@dataclass(frozen=True, eq=False)
class LabelRegions(Regions):
    """A partition of the image by an integer label image (superpixels or pixels).

    Attributes:
        labels: (H, W) int32 in [0, K); every label in [0, K) should occur (empty regions
            are allowed and simply never change the image).
    """

    labels: np.ndarray
    num_regions: int
    kind: str = "superpixels"
    _coverage: np.ndarray = field(init=False, repr=False, compare=False)  # derived in __post_init__

    def __post_init__(self):
        labels = np.ascontiguousarray(self.labels, dtype=np.int32)
        if labels.ndim != 2:
            raise InputError(f"labels must be (H, W), got shape {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_regions):
            raise InputError(f"labels must lie in [0, {self.num_regions}), got [{labels.min()}, {labels.max()}]")
        labels.setflags(write=False)
        object.__setattr__(self, "labels", labels)
        coverage = np.ones(labels.shape, np.float32)
        coverage.setflags(write=False)
        object.__setattr__(self, "_coverage", coverage)

    @property
    def height(self) -> int:  # type: ignore[override]
        return self.labels.shape[0]

    @property
    def width(self) -> int:  # type: ignore[override]
        return self.labels.shape[1]

    @property
    def count(self) -> int:
        return self.num_regions

    @property
    def coverage(self) -> np.ndarray:
        return self._coverage

    def boxes(self) -> np.ndarray:
        flat = self.labels.ravel()
        rows, cols = np.divmod(np.arange(flat.size), self.width)
        big = np.iinfo(np.int32).max
        x0 = np.full(self.count, big, np.int64)
        y0 = np.full(self.count, big, np.int64)
        x1 = np.zeros(self.count, np.int64)
        y1 = np.zeros(self.count, np.int64)
        np.minimum.at(x0, flat, cols)
        np.minimum.at(y0, flat, rows)
        np.maximum.at(x1, flat, cols + 1)
        np.maximum.at(y1, flat, rows + 1)
        empty = x1 == 0
        x0[empty] = y0[empty] = 0
        return np.stack([x0, y0, x1, y1], axis=1).astype(np.int32)

    def indicator(self, ks: np.ndarray) -> np.ndarray:
        ks = np.asarray(ks, np.int32)
        return self.labels[None, :, :] == ks[:, None, None]

    def areas(self) -> np.ndarray:
        return np.bincount(self.labels.ravel(), minlength=self.count).astype(np.float64)

    def sorted_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR form for the CUDA adjoint: (order (H*W,) int32 pixel indices grouped by
        region, offsets (K+1,) int32) so region k owns ``order[offsets[k]:offsets[k+1]]``."""
        flat = self.labels.ravel()
        order = np.argsort(flat, kind="stable").astype(np.int32)
        offsets = np.zeros(self.count + 1, np.int32)
        np.cumsum(np.bincount(flat, minlength=self.count), out=offsets[1:])
        return order, offsets

    def describe(self) -> dict:
        return {"kind": self.kind, "count": self.count}


def window_regions(height: int, width: int, *, size: int = 11, stride: int = 3) -> WindowRegions:
    """Sliding windows; raises ConfigError when the window is larger than the image."""
    return WindowRegions(int(height), int(width), int(size), int(stride))


def superpixel_regions(image: np.ndarray, *, segments: int = 100, compactness: float = 10.0) -> LabelRegions:
    """SLIC superpixels of an (H, W, 3) uint8 RGB image (scikit-image, imported lazily).

    Labels are renumbered to [0, K) so that K is the number of non-empty superpixels.
    """
    if segments < 1:
        raise ConfigError(f"superpixels must be >= 1, got {segments}")
    try:
        from skimage.segmentation import slic
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ConfigError("superpixels need scikit-image: pip install 'denarius[serve]'") from error
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"superpixels need an (H, W, 3) image, got shape {image.shape}")
    raw = slic(image, n_segments=int(segments), compactness=compactness, start_label=0, channel_axis=-1)
    _, labels = np.unique(raw, return_inverse=True)
    labels = labels.reshape(raw.shape).astype(np.int32)
    return LabelRegions(labels, int(labels.max()) + 1, "superpixels")


def pixel_regions(height: int, width: int) -> LabelRegions:
    """Every pixel its own region (K = H * W)."""
    labels = np.arange(int(height) * int(width), dtype=np.int32).reshape(int(height), int(width))
    return LabelRegions(labels, labels.size, "pixels")
