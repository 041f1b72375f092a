"""Mask composition f_I(x) = (sum_k x_k I_k) * C and its adjoint; the NumPy reference.

For a batch of B masks x (B, K) over one set of regions:

- :func:`mask_weights` (B, H, W): m(i) = C(i) * sum_{k: i in r_k} x_k, the per-pixel
  weight; with x = 1 it is 1 on every covered pixel.
- :func:`compose` (B, H, W, 3): f_I(x) = I * m, in the same [0, 255] pixel space as the
  crop I; normalise it with :func:`denarius.engine.preprocess.normalize` before the network.
- :func:`region_sums` (B, K): the adjoint of the region indicator sum, s_k = sum_{i in r_k} h(i).
- :func:`adjoint` (B, K): d loss / d x_k = sum_{i in r_k} C(i) sum_c I(i, c) g(i, c) for a
  pixel-space gradient g = d loss / d f_I (B, H, W, 3), i.e. the exact transpose of
  :func:`compose`: <compose(x), g> == <x, adjoint(g)>.

Windows never loop over windows in Python: a window is the product of a row interval and
a column interval, so both directions are separable. The 0/1 cover matrices ("window j
covers row p", the integrals of the windows' corner differences, cached per geometry)
turn composition into two small BLAS products, (ny, H)^T @ x (ny, nx) @ (nx, W), and the
adjoint's window sums into their transposes, (ny, H) @ h (H, W) @ (W, nx), in float32.
At 224 px with 11x11 windows, stride 3, two masks, one BLAS thread: 1.6 ms per adjoint,
where float64 integral images read at the four corners of each window took 4.3 ms (same
sums to 2e-7 relative). Label regions (superpixels, pixels) use label indexing and
``np.bincount``.

What a removed region becomes is the *reference* R (:func:`reference_images`): the paper
multiplies by the mask, so removed pixels turn black (R = 0). With a reference the
composition is f_I(x) = R + m * (I - R), i.e. :func:`compose` applied to I - R plus R, and the
adjoint is :func:`adjoint` applied to I - R; the kernels never see R. The default reference
is the image blurred with a Gaussian of sigma = 5% of the crop: a removed region keeps its
colour and shading but loses its detail (the attribute in a hand, the letters of a mark),
where a black patch on a bronze field is a shape the network never saw in training.
On held-out synthetic reverses (docs/results_landmarks.md), black patches made occlusion
point at the empty field (pointing game 0.08-0.15, about that of a random point), where
the blurred reference gave 0.48-0.70; the optimiser went from 0.461 to 0.648 (model B,
11x11 windows).
"""

from __future__ import annotations

import functools

import numpy as np

from denarius.engine.errors import InputError
from denarius.engine.landmarks.regions import LabelRegions, Regions, WindowRegions
from denarius.engine.preprocess import PreprocessSpec, normalize

__all__ = [
    "REFERENCES", "reference_images", "replace_pixels", "mask_weights", "centre_weights", "compose",
    "region_sums", "adjoint", "normalize_slope", "pixel_gradient",
]


REFERENCES = ("blur", "black", "coin-blur")
BLUR_SIGMA = 0.05  # of the crop size


def reference_images(images: np.ndarray, kind: str = "blur") -> np.ndarray | None:
    """What removed regions are replaced with.

    Args:
        images: (B, H, W, 3) crops in [0, 255] (uint8 or float).
        kind: "blur" (Gaussian, sigma = 5% of the crop size), "black" (the paper: zeros)
            or "coin-blur": the same Gaussian taken over the coin's pixels alone
            (blur(I * m) / blur(m), m the coin support of
            :func:`denarius.engine.landmarks.support.coin_support`) and black off the coin,
            so a removed window on the coin's edge neither darkens the rim nor smears the
            coin's colour over the black background.
    Returns:
        (B, H, W, 3) float32 references, or None for "black" (the composition then
        multiplies by the mask alone, which is the same thing without the extra arrays).
    """
    if kind not in REFERENCES:
        raise InputError(f"unknown reference {kind!r}; valid references: {', '.join(REFERENCES)}")
    if kind == "black":
        return None
    import cv2

    images = np.asarray(images, np.float32)
    sigma = BLUR_SIGMA * images.shape[-2]

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    if kind == "blur":
        return np.stack([blur(image) for image in images])
    from denarius.engine.landmarks.support import coin_support

    out = np.empty_like(images)
    for i, (image, coin) in enumerate(zip(images, coin_support(images), strict=True)):
        weight = coin.astype(np.float32)
        spread = blur(weight)
        out[i] = np.where(coin[..., None], blur(image * weight[..., None]) / np.maximum(spread, 1e-6)[..., None], 0.0)
    return out


def replace_pixels(image: np.ndarray, removed: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Copies of one image with some pixels removed, i.e. replaced by the reference.

    The binary form of the composition (a mask of 0s and 1s), used where whole pixels go:
    occlusion, the deletion curve, the removal of a ground-truth part.

    Args:
        image: (H, W, 3) in [0, 255]. removed: (n, H, W) bool, True where a pixel is removed.
        reference: (H, W, 3) what a removed pixel becomes (:func:`reference_images`); None: black.
    Returns:
        (n, H, W, 3) float32.
    """
    fill = np.float32(0.0) if reference is None else np.asarray(reference, np.float32)
    return np.where(np.asarray(removed, bool)[..., None], fill, np.asarray(image, np.float32))


def _as_masks(regions: Regions, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != regions.count:
        raise InputError(f"masks must be (B, {regions.count}) for these regions, got shape {x.shape}")
    return x


def _difference_matrix(starts: np.ndarray, size: int, length: int) -> np.ndarray:
    """(n, length + 1) float64 with +1 at each start and -1 at start + size."""
    matrix = np.zeros((len(starts), length + 1))
    rows = np.arange(len(starts))
    matrix[rows, starts] += 1.0
    matrix[rows, starts + size] -= 1.0
    return matrix


@functools.lru_cache(maxsize=16)
def _cover_matrices(regions: WindowRegions) -> tuple[np.ndarray, np.ndarray]:
    """(ny, H) and (nx, W) float32 0/1 matrices: window j covers row p.

    They are the integrals (cumulative sums) of the corner difference matrices, so a
    product with them is the separable integral-image composition, done by BLAS.
    """
    cover_y = np.cumsum(_difference_matrix(regions.ys, regions.size, regions.height), axis=1)[:, :-1]
    cover_x = np.cumsum(_difference_matrix(regions.xs, regions.size, regions.width), axis=1)[:, :-1]
    return cover_y.astype(np.float32), cover_x.astype(np.float32)


def mask_weights(regions: Regions, x: np.ndarray) -> np.ndarray:
    """Per-pixel mask weight m = C * sum_k x_k 1[i in r_k].

    Args:
        x: (B, K) or (K,) mask values (any real numbers; the optimiser keeps them in [0, 1]).
    Returns:
        (B, H, W) float32; in [0, 1] when x is.
    """
    x = _as_masks(regions, x)
    batch = x.shape[0]
    if isinstance(regions, WindowRegions):
        ny, nx = regions.grid
        cover_y, cover_x = _cover_matrices(regions)
        rows = x.reshape(batch, ny, nx) @ cover_x  # (B, ny, W) sums along x
        total = cover_y.T @ rows  # (B, H, W)
        return total * regions.coverage
    if isinstance(regions, LabelRegions):
        return x[:, regions.labels] * regions.coverage
    raise InputError(f"unknown region type {type(regions).__name__}")


@functools.lru_cache(maxsize=16)
def _nearest_centres(regions: WindowRegions) -> tuple[np.ndarray, np.ndarray]:
    """(H,) and (W,) int64: the window row / column whose centre is nearest each pixel row / column."""
    def nearest(starts: np.ndarray, length: int) -> np.ndarray:
        centres = starts + regions.size / 2.0
        return np.abs(centres[None, :] - (np.arange(length) + 0.5)[:, None]).argmin(axis=1)

    return nearest(regions.ys, regions.height), nearest(regions.xs, regions.width)


def centre_weights(regions: Regions, x: np.ndarray) -> np.ndarray:
    """Per-pixel map that takes each pixel's value from the window whose centre is nearest.

    The heatmap counterpart of :func:`mask_weights` without the coverage average: near the
    crop's edge a pixel is covered by 1 window where an inner pixel is covered by up to
    (w / s)^2, so the average there is of fewer values and more often extreme (at 21-px
    windows, stride 3, 96 px, 94% of the optimised obverse maxima lay over 38 px from the
    centre). Here every window owns the same share of the image around its centre. Label
    regions (a partition) give the same map as :func:`mask_weights`.

    Args:
        x: (B, K) or (K,) per-region values.
    Returns:
        (B, H, W) float32.
    """
    x = _as_masks(regions, x)
    if isinstance(regions, WindowRegions):
        ny, nx = regions.grid
        rows, cols = _nearest_centres(regions)
        return x.reshape(x.shape[0], ny, nx)[:, rows][:, :, cols]
    return mask_weights(regions, x)


def compose(regions: Regions, images: np.ndarray, x: np.ndarray) -> np.ndarray:
    """f_I(x) for each mask.

    Args:
        images: (H, W, 3) shared by all masks, or (B, H, W, 3) one per mask; uint8 or
            float in [0, 255].
        x: (B, K) masks.
    Returns:
        (B, H, W, 3) float32 in [0, 255] pixel space.
    """
    weights = mask_weights(regions, x)
    images = np.asarray(images)
    if images.shape[-3:-1] != (regions.height, regions.width):
        raise InputError(f"images of size {images.shape[-3:-1]} do not match regions of size {(regions.height, regions.width)}")
    return images.astype(np.float32) * weights[..., None]


def region_sums(regions: Regions, values: np.ndarray) -> np.ndarray:
    """s_k = sum over pixels of r_k of values.

    Args:
        values: (B, H, W) float.
    Returns:
        (B, K) float32.
    """
    values = np.asarray(values)
    if values.ndim == 2:
        values = values[None]
    batch = values.shape[0]
    if isinstance(regions, WindowRegions):
        cover_y, cover_x = _cover_matrices(regions)
        sums = cover_y @ values.astype(np.float32, copy=False) @ cover_x.T  # (B, ny, nx)
        return sums.reshape(batch, -1)
    if isinstance(regions, LabelRegions):
        k = regions.count
        index = regions.labels.ravel()[None, :] + (k * np.arange(batch))[:, None]
        sums = np.bincount(index.ravel(), weights=values.reshape(-1).astype(np.float64), minlength=batch * k)
        return sums.reshape(batch, k).astype(np.float32)
    raise InputError(f"unknown region type {type(regions).__name__}")


def adjoint(regions: Regions, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Transpose of :func:`compose` applied to a pixel-space gradient.

    Args:
        images: (H, W, 3) or (B, H, W, 3) in [0, 255] (the images that were masked).
        grad: (B, H, W, 3) float, d loss / d f_I in pixel space (see :func:`pixel_gradient`).
    Returns:
        (B, K) float32, d loss / d x.
    """
    grad = np.asarray(grad, np.float32)
    if grad.ndim == 3:
        grad = grad[None]
    images = np.asarray(images, np.float32)
    # einsum reads grad in whatever memory order it has (pixel_gradient's is channel-first).
    per_pixel = np.einsum("bhwc,bhwc->bhw" if images.ndim == 4 else "hwc,bhwc->bhw", images, grad)
    return region_sums(regions, per_pixel * regions.coverage)


def normalize_slope(spec: PreprocessSpec) -> np.ndarray:
    """(3,) float32 d normalize(p) / d p per channel, read off :func:`normalize` itself
    (it is affine per channel) so the chain rule never re-types the constants."""
    probe = np.stack([np.zeros((1, 1, 3), np.float32), np.ones((1, 1, 3), np.float32)])
    out = normalize(probe, spec)  # (2, 3, 1, 1)
    return (out[1, :, 0, 0] - out[0, :, 0, 0]).astype(np.float32)


def pixel_gradient(grad_normalized: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Chain a network-input gradient back through normalisation.

    Args:
        grad_normalized: (B, 3, H, W) float32, d loss / d normalize(f).
    Returns:
        (B, H, W, 3) float32, d loss / d f in [0, 255] pixel space.
    """
    return np.moveaxis(np.asarray(grad_normalized, np.float32), 1, -1) * normalize_slope(spec)
