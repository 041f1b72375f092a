"""One entry point for every landmark method: :func:`compute_landmarks`.

The engine (``Engine.landmarks``), the CLI and the evaluation call this with a
:class:`~denarius.engine.landmarks.model.LandmarkModel` and centre crops in [0, 255] pixel space
(``crop_image(canonical_image(...))``); masking happens on the crop, then
:func:`denarius.engine.preprocess.normalize` prepares the network input.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from denarius.engine.errors import ConfigError, InputError
from denarius.engine.landmarks import baselines, composition, support
from denarius.engine.landmarks.ladder import DEFAULT_RUNGS, ladder_rungs, survival
from denarius.engine.landmarks.model import LandmarkModel, unknown_label
from denarius.engine.landmarks.optimizer import NumpyOps, OptimizerConfig, check_epsilon, optimize_masks
from denarius.engine.landmarks.regions import Regions, pixel_regions, superpixel_regions, window_regions
from denarius.engine.landmarks.result import LandmarkMap, rescale, top_regions

__all__ = [
    "METHODS", "HEATMAPS", "SUPPORTS", "SPREADS", "SWEEP_EPSILONS",
    "LandmarkConfig", "make_regions", "compute_landmarks", "landmarks_for_source", "source_crop", "decode_side",
]

logger = logging.getLogger(__name__)

METHODS = ("optimized", "occlusion", "saliency")
HEATMAPS = ("ladder", "persistence", "mask")  # what the optimised map draws; see LandmarkConfig
SUPPORTS = ("coin", "crop")
SPREADS = ("centres", "coverage")  # how per-window scores become pixels; see LandmarkConfig
SWEEP_EPSILONS = (0.1, 0.3, 0.5, 0.7, 1.0)  # the paper's Figure 6


@dataclass(frozen=True)
class LandmarkConfig:
    """What to compute.

    Attributes:
        method: one of :data:`METHODS`.
        epsilon: confidence the optimised mask may lose, in (0, 1] (optimised only); the
            map's mask, p_masked and vacuous flag are those of this epsilon.
        heatmap: what the optimised heatmap draws, one of :data:`HEATMAPS`:
            "persistence" (default): the mean of the mask over the iterations at this
            epsilon; "ladder": each region's survival over the epsilon ladder
            (:mod:`denarius.engine.landmarks.ladder`), the masks of all rungs optimised in
            one batched run (one optimiser row per rung and image: R times the cost);
            "mask": the paper's single-epsilon mask. A sweep (several ``epsilons``) draws
            each rung's own persistence ("mask": its mask). docs/results_landmarks.md has
            the measurements behind the default.
        ladder: the rungs of the ladder, epsilons in (0, 1] (``epsilon`` is added if
            missing); each rung is one more optimiser row per image.
        support: "coin" (default): the heatmap's maximum is kept on the coin disc
            (:mod:`denarius.engine.landmarks.support`); "crop": anywhere in the crop.
        spread: how the optimised map's per-window values become pixels: "centres"
            (default): each pixel takes the window whose centre is nearest
            (:func:`denarius.engine.landmarks.composition.centre_weights`); "coverage":
            the average over the windows covering it, C * sum_k s_k I_k (as the baselines).
        reference: what a removed region becomes, for the optimiser and occlusion alike:
            "blur" (default) or "black" (the paper); see :mod:`denarius.engine.landmarks.composition`.
        window, stride: sliding-window regions (the paper: 11 or 21, stride 3).
        superpixels: if set, SLIC superpixels with about this many segments instead.
        pixels: if True, single pixels instead (K = H * W; optimised and saliency only).
        optimizer: settings of the mask optimiser (lambda, iterations, step).
        top: number of top regions reported.
        batch_size: occluded images per forward call (occlusion).
    """

    method: str = "optimized"
    epsilon: float = 0.5
    heatmap: str = "persistence"
    ladder: tuple[float, ...] = DEFAULT_RUNGS
    support: str = "coin"
    spread: str = "centres"
    reference: str = "blur"
    window: int = 11
    stride: int = 3
    superpixels: int | None = None
    pixels: bool = False
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    top: int = 5
    batch_size: int = 64

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown landmark method {self.method!r}; valid methods: {', '.join(METHODS)}")
        check_epsilon(self.epsilon)
        if self.heatmap not in HEATMAPS:
            raise ConfigError(f"unknown heatmap {self.heatmap!r}; valid heatmaps: {', '.join(HEATMAPS)}")
        if self.support not in SUPPORTS:
            raise ConfigError(f"unknown support {self.support!r}; valid supports: {', '.join(SUPPORTS)}")
        if self.spread not in SPREADS:
            raise ConfigError(f"unknown spread {self.spread!r}; valid spreads: {', '.join(SPREADS)}")
        object.__setattr__(self, "ladder", ladder_rungs(self.ladder, self.epsilon))
        if self.reference not in composition.REFERENCES:
            raise ConfigError(f"unknown reference {self.reference!r}; valid references: {', '.join(composition.REFERENCES)}")
        if self.window < 1 or self.stride < 1:
            raise ConfigError(f"window and stride must be >= 1, got window={self.window}, stride={self.stride}")
        if self.superpixels is not None and self.superpixels < 1:
            raise ConfigError(f"superpixels must be >= 1, got {self.superpixels}")
        if self.superpixels is not None and self.pixels:
            raise ConfigError("choose superpixels or pixels, not both")
        if self.top < 0 or self.batch_size < 1:
            raise ConfigError(f"top must be >= 0 and batch_size >= 1, got top={self.top}, batch_size={self.batch_size}")


def make_regions(config: LandmarkConfig, crop: np.ndarray) -> Regions:
    """Regions for one (H, W, 3) crop (superpixels depend on the image, windows do not)."""
    height, width = crop.shape[:2]
    if config.superpixels is not None:
        return superpixel_regions(crop, segments=config.superpixels)
    if config.pixels:
        return pixel_regions(height, width)
    return window_regions(height, width, size=config.window, stride=config.stride)


def _resolve_targets(model: LandmarkModel, targets, count: int) -> list[int | None]:
    if targets is None or isinstance(targets, (str, int, np.integer)):
        targets = [targets] * count
    targets = list(targets)
    if len(targets) != count:
        raise InputError(f"{count} images but {len(targets)} targets")
    out: list[int | None] = []
    for target in targets:
        if target is None:
            out.append(None)
        elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if not 0 <= int(target) < len(model.classes):
                raise InputError(f"target index {target} out of range [0, {len(model.classes)})")
            out.append(int(target))
        else:
            if str(target) not in model.classes:
                raise unknown_label(target, model.classes)
            out.append(model.classes.index(str(target)))
    return out


def _check_crops(model: LandmarkModel, crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    size = model.spec.crop
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
        raise InputError(f"crops must be (B, {size}, {size}, 3) uint8 for this model, got shape {crops.shape}")
    return crops


def compute_landmarks(
    model: LandmarkModel,
    crops: np.ndarray,
    *,
    config: LandmarkConfig = LandmarkConfig(),
    targets=None,
    epsilons: Sequence[float] | None = None,
    ops=NumpyOps,
    should_stop=None,
    progress: bool = False,
    checkpoints: Sequence[int] = (),
    regions_for=make_regions,
) -> list[LandmarkMap]:
    """Landmark maps for a batch of crops.

    Args:
        model: a :class:`LandmarkModel` (e.g. :class:`denarius.engine.landmarks.model.GradientModel`).
        crops: (B, S, S, 3) or (S, S, 3) uint8 RGB centre crops at the model's input size.
        config: method, regions and optimiser settings.
        targets: None (each image's predicted class), one label/index for all, or B of them.
        epsilons: optimised method only - several epsilons per image in one batched run
            (e.g. :data:`SWEEP_EPSILONS`); default ``(config.epsilon,)``.
        ops: masking operations (NumPy, or :class:`denarius.engine.landmarks.cuda.CudaOps`).
        should_stop: optional callable polled between forward calls of the optimiser and
            occlusion; True stops the work with :class:`denarius.engine.errors.Cancelled` (a server
            whose caller cancelled or ran past its deadline frees its worker early).
        checkpoints: optimised method only - iteration counts at which each map keeps
            its persistence (``LandmarkMap.persistence_by_iteration``), to see how the
            heatmap evolves along the optimiser's path.
        regions_for: (config, crop) -> Regions; default :func:`make_regions` (the landmark
            service passes its cache: window and pixel regions do not depend on the image).
    Returns:
        One :class:`LandmarkMap` per image (per image and epsilon, epsilon fastest for a
        sweep), in input order.
    Raises:
        InputError: wrong crop shape, unknown target label. ConfigError: bad settings.
    """
    crops = _check_crops(model, crops)
    index_targets = _resolve_targets(model, targets, len(crops))
    eps_list = [check_epsilon(e) for e in (epsilons if epsilons is not None else (config.epsilon,))]
    if not eps_list:
        raise ConfigError("epsilons must not be empty")
    if config.method != "optimized" and epsilons is not None and len(eps_list) > 1:
        raise ConfigError(f"an epsilon sweep needs method 'optimized', got {config.method!r}")
    if config.method != "optimized" and checkpoints:
        raise ConfigError(f"checkpoints along the optimiser's path need method 'optimized', got {config.method!r}")
    shared = config.superpixels is None  # windows and pixels do not depend on the image
    groups = [list(range(len(crops)))] if shared else [[i] for i in range(len(crops))]
    results: dict[int, list[LandmarkMap]] = {}
    with single_threaded_blas():
        for group in groups:
            regions = regions_for(config, crops[group[0]])
            group_targets = [index_targets[i] for i in group]
            fixed = None if any(t is None for t in group_targets) else group_targets
            if config.method == "optimized":
                maps = _optimized(model, crops[group], regions, config, fixed, eps_list, ops, should_stop, progress, tuple(checkpoints))
            else:
                maps = _baseline(model, crops[group], regions, config, fixed, should_stop, progress)
            for j, i in enumerate(group):
                results[i] = maps[j]
    return [m for i in range(len(crops)) for m in results[i]]


def single_threaded_blas():
    """Context: BLAS (the masks' small matrix products) on one thread.

    The network runs on onnxruntime's thread pool; OpenBLAS's own threads, spinning after
    each small product, competed with it for the cores. Measured at 224 px on 2 cores
    (batch 2, 20 iterations): 80.8 ms per image and iteration with BLAS threads, 41.3 ms
    without, the difference being onnxruntime's share of the CPU.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _optimized(model, crops, regions, config, targets, eps_list, ops, should_stop, progress, checkpoints) -> list[list[LandmarkMap]]:
    # One epsilon: the ladder's rungs are the rows (the map reports the rung at its epsilon);
    # a sweep: each epsilon is a row and a map of its own.
    use_ladder = config.heatmap == "ladder" and eps_list == [config.epsilon]
    rungs = list(config.ladder) if use_ladder else eps_list
    result = optimize_masks(
        model, np.repeat(crops, len(rungs), axis=0), regions,
        epsilons=np.tile(np.asarray(rungs, np.float64), len(crops)),
        targets=None if targets is None else np.repeat(np.asarray(targets, np.int64), len(rungs)),
        config=config.optimizer, ops=ops, reference=_repeat(composition.reference_images(crops, config.reference), len(rungs)),
        should_stop=should_stop, progress=progress, checkpoints=checkpoints,
    )
    per_image = len(crops)
    if use_ladder:
        # (N, R, K) masks -> (N, K) survival; the map's own row is the rung at its epsilon.
        scores = survival(result.masks.reshape(per_image, len(rungs), -1), rungs)
        shown = [[i * len(rungs) + rungs.index(config.epsilon)] for i in range(per_image)]
    else:
        source = result.masks if config.heatmap == "mask" else result.persistence
        scores = source.reshape(per_image * len(rungs), -1)
        shown = [[i * len(rungs) + j for j in range(len(rungs))] for i in range(per_image)]
    spread = composition.centre_weights if config.spread == "centres" else composition.mask_weights
    weights = spread(regions, scores)  # (N or N*R, H, W)
    areas = support.coin_support(crops) if config.support == "coin" else None
    masked_images = np.clip(result.masked_images + 0.5, 0, 255).astype(np.uint8)
    boxes = regions.boxes()
    seconds = result.seconds / per_image
    out = []
    for i in range(per_image):
        image_rows = slice(i * len(rungs), (i + 1) * len(rungs))
        maps = []
        for r in shown[i]:
            s = i if use_ladder else r
            heat = weights[s] if areas is None else support.restrict(weights[s], areas[i])
            target = int(result.targets[r])
            maps.append(
                LandmarkMap(
                    method="optimized",
                    target=target,
                    label=model.classes[target],
                    mask=result.masks[r],
                    heatmap=_mask_heatmap(heat),
                    persistence=result.persistence[r],
                    survival=scores[i] if use_ladder else None,
                    ladder=tuple(rungs) if use_ladder else None,
                    persistence_by_iteration=(
                        None if result.persistence_at is None else dict(zip(checkpoints, result.persistence_at[r], strict=True))
                    ),
                    masked_image=masked_images[r],
                    reference=config.reference,
                    image=np.asarray(crops[i], np.uint8),
                    p_full=float(result.p_full[r]),
                    p_masked=float(result.p_masked[r]),
                    epsilon=float(result.epsilons[r]),
                    regions=regions.describe(),
                    iterations=int(result.iterations[r]),
                    converged=bool(result.converged[image_rows].all() if use_ladder else result.converged[r]),
                    vacuous=bool(result.vacuous[r]),
                    top_regions=top_regions(scores[s], boxes, count=config.top),
                    forward_equivalents=float(
                        result.forward_equivalents[image_rows].sum() if use_ladder else result.forward_equivalents[r]),
                    seconds=seconds if use_ladder else seconds / len(rungs),
                )
            )
        out.append(maps)
    return out


def _repeat(reference: np.ndarray | None, times: int) -> np.ndarray | None:
    return None if reference is None else np.repeat(reference, times, axis=0)


def _mask_heatmap(weights: np.ndarray) -> np.ndarray:
    """Per-pixel persistence (already in [0, 1]) rescaled to [0, 1]; a constant map (an
    image whose regions all moved alike) keeps its own value instead of collapsing to zeros."""
    heatmap = rescale(weights)
    if not heatmap.any():
        heatmap = np.clip(np.nan_to_num(weights), 0.0, 1.0).astype(np.float32)
    return heatmap


def _baseline(model, crops, regions, config, targets, should_stop, progress) -> list[list[LandmarkMap]]:
    if config.method == "occlusion":
        reference = composition.reference_images(crops, config.reference)
        result = baselines.occlusion(
            model, crops, regions, targets=targets, batch_size=config.batch_size, reference=reference,
            should_stop=should_stop, progress=progress,
        )
    else:
        result = baselines.saliency(model, crops, regions, targets=targets)
    boxes = regions.boxes()
    seconds = result.seconds / len(crops)
    out = []
    for i in range(len(crops)):
        target = int(result.targets[i])
        out.append(
            [
                LandmarkMap(
                    method=config.method,
                    target=target,
                    label=model.classes[target],
                    mask=result.scores[i],
                    heatmap=rescale(result.heatmaps[i]),
                    image=np.asarray(crops[i], np.uint8),
                    p_full=float(result.p_full[i]),
                    regions=regions.describe(),
                    reference=config.reference if config.method == "occlusion" else None,
                    top_regions=top_regions(result.scores[i], boxes, count=config.top),
                    forward_equivalents=float(result.forward_equivalents[i]),
                    seconds=seconds,
                )
            ]
        )
    return out


def landmarks_for_source(
    model: LandmarkModel,
    source,
    *,
    side: str | None = None,
    config: LandmarkConfig = LandmarkConfig(),
    target=None,
    epsilons: Sequence[float] | None = None,
    ops=NumpyOps,
) -> list[LandmarkMap]:
    """Landmarks of one photo: decode, canonical image, centre crop, then :func:`compute_landmarks`.

    Args:
        source: encoded bytes, a path, or a decoded (H, W, 3) uint8 RGB array.
        side: "obverse"/"reverse", only used to name the side in error messages.
    Returns:
        the maps (one, or one per epsilon), each with ``source_transform`` and
        ``source_size`` set so :meth:`LandmarkMap.source_heatmap` gives the heatmap at the
        photo's size.
    Raises:
        InputError: the photo cannot be decoded (the message names the side).
    """
    crop, matrix, size = source_crop(source, model.spec, side=side)
    maps = compute_landmarks(model, crop, config=config, targets=target, epsilons=epsilons, ops=ops)
    for m in maps:
        m.source_transform = matrix
        m.source_size = size
    return maps


def decode_side(source, spec, *, side: str | None = None) -> np.ndarray:
    """Decode a photo within the model's limits: (H, W, 3) uint8 RGB (arrays pass through).

    Raises:
        InputError: the photo cannot be decoded (the message names the side).
    """
    from denarius.engine.imageio import decode_image

    try:
        return decode_image(source, max_pixels=spec.max_pixels, min_side=spec.min_side)
    except InputError as error:
        raise InputError(error.reason, side=side) from None


def source_crop(source, spec, *, side: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Decode a photo and cut the network's centre crop, keeping the way back to the photo.

    Args:
        source: encoded bytes, a path, or a decoded (H, W, 3) uint8 RGB array.
        spec: the model's :class:`~denarius.engine.preprocess.PreprocessSpec`.
        side: "obverse"/"reverse", named in error messages.
    Returns:
        the (S, S, 3) uint8 crop, the photo -> crop affine matrix (``LandmarkMap.source_transform``)
        and the photo's (height, width).
    Raises:
        InputError: the photo cannot be decoded (the message names the side).
    """
    from denarius.engine.landmarks.geometry import crop_transform
    from denarius.engine.preprocess import canonical_image, crop_image

    rgb = decode_side(source, spec, side=side)
    crop = crop_image(canonical_image(rgb, spec, side=side), spec)
    return crop, crop_transform(rgb, spec), (int(rgb.shape[0]), int(rgb.shape[1]))
