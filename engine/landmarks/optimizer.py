"""The constrained mask optimiser of Kim & Pavlovic, section 3.3, batched.

For each row b (an image, a target class c and an epsilon)::

    minimise    -log p(c | f_I(x)) + lambda * ||x||_1          x in [0, 1]^K
    subject to  p(c | f_I(x)) > p(c | f_I(1)) - epsilon                      ("absolute", the paper)
           or   p(c | f_I(x)) > p(c | f_I(1)) - epsilon * (p(c | f_I(1)) - p(c | R))   ("relative", default)

The relative rule measures epsilon against what the image's detail adds over the reference
R (every region removed): with the paper's absolute rule and the blurred reference, the
reference alone met the constraint for 28% of obverses and 48% of reverses of the synthetic
``bench`` coins at epsilon 0.5, so their optimal mask was empty whatever the coin showed
(see ``OptimizerConfig.constraint`` and docs/results_landmarks.md).

Projected subgradient descent from x = 1 with backprojection: while the current iterate
satisfies the constraint, step on the whole objective (loss gradient + lambda); when it
violates it, step on the loss gradient alone until it holds again; clip to [0, 1].

Step rule (chosen so that default settings converge well within 100 iterations): the
direction d is divided by its root-mean-square over the K regions, so a typical region
moves by eta_t = step / sqrt(1 + t) per iteration (t = 0, 1, ...) whatever the scale of
the network's gradient, and the few regions with a large loss gradient move more (the
clip to [0, 1] bounds them). Dividing by the largest entry instead was measured to stall:
a handful of large loss-gradient entries shrink every other step to ~eta/4. With
step = 0.2 the bulk of the mask can travel from 1 to 0 in ~10 iterations; the decaying
step damps the zig-zag along the constraint boundary. Measured on a trained toy model
(64 px, 12 coins, epsilon 0.5): step 0.1 -> 58 iterations on average (max 80), step 0.2 ->
35 (max 51) with the same or better final objective, pointing and energy; step 0.3 -> 33
with a worse objective. The L1 term is ||x||_1 as written
(not divided by K), so with lambda = 1 it outweighs the loss and the constraint decides
how much survives, as in the paper.

The best feasible iterate (lowest objective among iterates whose p(c) cleared the
threshold by ``margin``) is returned; a row stops when that best objective has not
improved by ``tolerance`` x (its value at x = 1) for ``patience`` iterations (converged) or after
``max_iterations``. Finally one fresh forward pass of the classifier verifies the
constraint for every returned mask (a row that fails falls back to x = 1, which always
satisfies it, with a warning).

Removed regions become the reference R (black in the paper, a blurred copy by default;
see :mod:`denarius.engine.landmarks.composition`): f_I(x) = R + m(x) * (I - R).

Besides the mask, every row returns its *persistence*: the mean of x over the iterates
it visited (x = 1 first). The L1 pressure lowers every region at the same rate, and the
loss gradient holds back the regions the class needs, so regions the optimiser gave up
last score highest. The final mask is near-binary (most of the kept regions sit at 1),
so its maximum is a tie between many pixels; persistence orders them, and it stays
informative where the constraint is vacuous (the empty mask is optimal, yet the path
towards it shows which regions resisted longest). Measured on 192 reverse images of the
synthetic ``bench`` set (blurred reference, epsilon 0.5, 11x11 windows, 96 px): pointing
game 0.38 for the final mask, 0.54 for persistence.

Rows share every forward/backward call: an epsilon sweep of one image, or many images,
is one batch per iteration; finished rows leave the batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from denarius.engine.errors import Cancelled, ConfigError, InputError
from denarius.engine.landmarks import composition
from denarius.engine.landmarks.model import LandmarkModel, softmax
from denarius.engine.landmarks.regions import Regions
from denarius.engine.preprocess import normalize

__all__ = ["CONSTRAINTS", "OptimizerConfig", "OptimizationResult", "NumpyOps", "optimize_masks", "check_epsilon"]

logger = logging.getLogger(__name__)

CONSTRAINTS = ("absolute", "relative")


def check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not (0.0 < epsilon <= 1.0) or not np.isfinite(epsilon):
        raise ConfigError(f"epsilon must be in (0, 1] (the paper uses 0.1 ... 1.0, default 0.5), got {epsilon}")
    return epsilon


def _check_finite(name: str, value: float, *, positive: bool) -> None:
    """ConfigError unless ``value`` is a finite number, > 0 (``positive``) or >= 0.

    NaN and infinity are refused by name: an infinite sparsity weight makes every step
    remove every region (an all-zero heatmap), NaN makes every comparison false.
    """
    if not (isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) and np.isfinite(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be {'>' if positive else '>='} 0, got {value}")


@dataclass(frozen=True)
class OptimizerConfig:
    """Settings of :func:`optimize_masks`.

    Attributes:
        lam: weight of ||x||_1 (the paper: 1); finite, >= 0 (the server's ``sparsity``).
        max_iterations: iteration cap (>= 1).
        step: eta_0, the largest per-region move of the first step (see module docstring).
        patience: stop a row after this many iterations without a better feasible iterate.
        tolerance: an improvement of the best feasible objective counts (resets patience)
            when it exceeds tolerance x the objective at x = 1 (lambda K + loss).
        margin: p(c) must clear the threshold by this much to count as feasible, so the
            verifying forward pass (a different ONNX graph, same weights) agrees.
        constraint: how epsilon sets the threshold, one of :data:`CONSTRAINTS`.
            "relative" (default): p(c | f_I(x)) > p(c | f_I(1)) - epsilon * (p(c | f_I(1)) - p(c | f_I(0))):
            epsilon is the share of what the image's detail adds over the reference that may
            be lost, so the reference alone never satisfies it (no vacuous rows unless the
            reference scores at least as high as the image).
            "absolute" (the paper): p(c | f_I(x)) > p(c | f_I(1)) - epsilon; with the
            blurred reference 28% of obverses and 48% of reverses of the ``bench`` coins
            were vacuous at epsilon 0.5 (the empty mask optimal).
    """

    lam: float = 1.0
    max_iterations: int = 100
    step: float = 0.2
    patience: int = 10
    tolerance: float = 1e-3
    margin: float = 1e-5
    constraint: str = "relative"

    def __post_init__(self):
        if int(self.max_iterations) < 1:
            raise ConfigError(f"max_iterations must be >= 1, got {self.max_iterations}")
        _check_finite("lambda (sparsity)", self.lam, positive=False)
        _check_finite("step", self.step, positive=True)
        _check_finite("tolerance", self.tolerance, positive=False)
        _check_finite("margin", self.margin, positive=False)
        if int(self.patience) < 1:
            raise ConfigError(f"patience must be >= 1, got {self.patience}")
        if self.constraint not in CONSTRAINTS:
            raise ConfigError(f"unknown constraint {self.constraint!r}; valid constraints: {', '.join(CONSTRAINTS)}")


@dataclass
class OptimizationResult:
    """Per-row outcome; every array has B rows.

    Attributes:
        masks: (B, K) float32 in [0, 1], the best feasible iterate.
        targets: (B,) int64 class indices.
        epsilons: (B,) float64.
        p_full: (B,) float64 p(c | f_I(1)).
        p_masked: (B,) float64 p(c | f_I(mask)) from the verifying forward pass.
        masked_images: (B, H, W, 3) float32 f_I(mask) in pixel space, the images that
            verifying pass saw (what the network sees of the landmarks).
        persistence: (B, K) float32 in [0, 1], the mean of x over the iterates visited.
        persistence_at: (B, len(checkpoints), K) float32, the persistence the row would
            have returned had it stopped after each checkpoint's number of iterations (its
            final persistence where it stopped sooner); None when no checkpoints were asked.
        p_reference: (B,) float64 p(c | f_I(0)), everything removed (the reference image).
        vacuous: (B,) bool, the reference image already satisfies the constraint, so the
            optimum is the empty mask whatever the image shows (epsilon too large for
            this p(c), or a class the model recognises without any detail).
        iterations: (B,) int64 iterations run.
        converged: (B,) bool, stopped by the patience rule before max_iterations.
        objective: (B,) float64 -log p + lambda ||x||_1 of the returned mask.
        forward_equivalents: (B,) float64 cost per row (forward 1, forward+backward 3).
        seconds: wall time of the whole batch.
    """

    masks: np.ndarray
    targets: np.ndarray
    epsilons: np.ndarray
    p_full: np.ndarray
    p_masked: np.ndarray
    masked_images: np.ndarray
    persistence: np.ndarray
    p_reference: np.ndarray
    vacuous: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    objective: np.ndarray
    forward_equivalents: np.ndarray
    seconds: float
    persistence_at: np.ndarray | None = None


class NumpyOps:
    """CPU masking operations; :class:`denarius.engine.landmarks.cuda.CudaOps` has the same methods."""

    name = "numpy"

    @staticmethod
    def compose(regions: Regions, images: np.ndarray, x: np.ndarray) -> np.ndarray:
        return composition.compose(regions, images, x)

    @staticmethod
    def adjoint(regions: Regions, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        return composition.adjoint(regions, images, grad)

    @staticmethod
    def projected_step(x: np.ndarray, grad: np.ndarray, feasible: np.ndarray, *, lam: float, eta: np.ndarray) -> np.ndarray:
        """x <- clip(x - eta * d / rms(d), 0, 1), d = grad + lam * feasible.

        Args:
            x, grad: (B, K) float32. feasible: (B,) bool. eta: (B,) float.
        Returns:
            (B, K) float32 new masks (rows with d == 0 are unchanged).
        """
        direction = grad + np.float32(lam) * feasible[:, None].astype(np.float32)
        scale = np.sqrt(np.mean(np.square(direction, dtype=np.float64), axis=1, keepdims=True)).astype(np.float32)
        scale = np.where(scale > 0, scale, np.float32(1.0))
        return np.clip(x - (np.asarray(eta, np.float32)[:, None] / scale) * direction, 0.0, 1.0).astype(np.float32)


def optimize_masks(
    model: LandmarkModel,
    images: np.ndarray,
    regions: Regions,
    *,
    epsilons,
    targets=None,
    config: OptimizerConfig = OptimizerConfig(),
    ops=NumpyOps,
    reference: np.ndarray | None = None,
    should_stop=None,
    progress: bool = False,
    checkpoints: tuple[int, ...] = (),
) -> OptimizationResult:
    """Optimise one mask per row.

    Args:
        model: a :class:`LandmarkModel` (forward passes and loss gradients).
        images: (B, H, W, 3) uint8 (or float in [0, 255]) crops at the model's input size;
            repeat an image to sweep epsilons over it.
        regions: the subregions, shared by all rows (H, W must match the images).
        epsilons: scalar or (B,) values in (0, 1].
        targets: None (each row's predicted class), or (B,) class indices.
        config: optimiser settings. ops: masking operations (NumPy or CUDA).
        reference: (B, H, W, 3) what removed regions become (see
            :func:`denarius.engine.landmarks.composition.reference_images`); None: black.
        should_stop: optional callable checked before every iteration; when it returns
            True the run raises :class:`denarius.engine.errors.Cancelled` (the caller gave up).
        checkpoints: iteration counts (>= 1) at which to keep a copy of the persistence
            (``persistence_at``): how the heatmap evolves along the optimiser's path.
    Returns:
        :class:`OptimizationResult`.
    """
    start = time.perf_counter()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"images must be (B, H, W, 3), got shape {images.shape}")
    batch = images.shape[0]
    if images.shape[1:3] != (regions.height, regions.width):
        raise InputError(f"images of size {images.shape[1:3]} do not match regions of size {(regions.height, regions.width)}")
    eps = np.broadcast_to(np.asarray(epsilons, np.float64), (batch,)).copy()
    for value in eps:
        check_epsilon(value)
    checkpoints = tuple(int(c) for c in checkpoints)
    if any(c < 1 for c in checkpoints):
        raise ConfigError(f"checkpoints must be iteration counts >= 1, got {checkpoints}")
    spec = model.spec
    k = regions.count
    cost = np.zeros(batch)
    if reference is None:
        detail = images
        reference_rows = np.zeros((1, *images.shape[1:]), np.float32)  # one black image serves every row
    else:
        reference = np.asarray(reference, np.float32)
        if reference.shape != images.shape:
            raise InputError(f"reference of shape {reference.shape} does not match images of shape {images.shape}")
        detail = images.astype(np.float32) - reference
        reference_rows = reference

    def masked(rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """f_I(x) = R + m(x) * (I - R) for the given rows, (n, H, W, 3) in pixel space."""
        composed = ops.compose(regions, detail[rows], x)
        return composed if reference is None else composed + reference[rows]

    ones = np.ones((batch, k), np.float32)
    rows = np.arange(batch)
    # f_I(1) and f_I(0) of every row in one call (f_I(0) once when it is black for all).
    probe = np.concatenate([masked(rows, ones), reference_rows])
    probs = softmax(model.logits(normalize(probe, spec)))
    probs_full, probs_reference = probs[:batch], probs[batch:]  # (B, C), (B or 1, C)
    cost += 1 + len(reference_rows) / batch
    if targets is None:
        targets = probs_full.argmax(axis=1)
    targets = np.broadcast_to(np.asarray(targets, np.int64), (batch,)).copy()
    if targets.min(initial=0) < 0 or targets.max(initial=0) >= probs_full.shape[1]:
        raise InputError(f"target indices must lie in [0, {probs_full.shape[1]}), got {targets.tolist()}")
    p_full = probs_full[rows, targets]
    p_reference = probs_reference[rows % len(probs_reference), targets]
    if config.constraint == "relative":
        threshold = p_full - eps * np.maximum(p_full - p_reference, 0.0)
    else:
        threshold = p_full - eps

    x = ones.copy()
    path_sum = np.zeros((batch, k), np.float64)  # sum of the iterates visited, for persistence
    persistence_at = np.zeros((batch, len(checkpoints), k), np.float32)
    best = ones.copy()
    best_objective = np.full(batch, np.inf)
    scale = np.ones(batch)
    since_better = np.zeros(batch, np.int64)
    iterations = np.zeros(batch, np.int64)
    converged = np.zeros(batch, bool)
    active = np.ones(batch, bool)
    lam = float(config.lam)

    steps = range(int(config.max_iterations))
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="landmarks", unit="it", leave=False)
    for t in steps:
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        if should_stop is not None and should_stop():
            raise Cancelled(f"landmark search stopped after {t} of at most {config.max_iterations} iterations: the caller gave up")
        xa = x[idx]
        path_sum[idx] += xa
        for c, count in enumerate(checkpoints):
            if count == t + 1:
                persistence_at[idx, c] = path_sum[idx] / count
        logits, loss, grad_norm = model.loss_and_grad(normalize(masked(idx, xa), spec), targets[idx])
        cost[idx] += 3
        iterations[idx] = t + 1
        p = softmax(logits)[np.arange(idx.size), targets[idx]]
        feasible = p > threshold[idx] + config.margin
        if t == 0:
            feasible |= True  # x = 1 satisfies the constraint by definition (epsilon > 0)
        objective = np.asarray(loss, np.float64) + lam * xa.sum(axis=1, dtype=np.float64)
        if t == 0:
            scale[idx] = np.maximum(np.abs(objective), 1e-12)
        previous = best_objective[idx]
        better = feasible & (objective < previous)
        best_objective[idx[better]] = objective[better]
        best[idx[better]] = xa[better]
        # Patience counts iterations without a *significant* gain: tolerance x the
        # objective at x = 1 (lambda K + loss), i.e. relative to the problem's own scale.
        significant = better & (objective < previous - config.tolerance * scale[idx])
        since_better[idx] = np.where(significant, 0, since_better[idx] + 1)

        grad_x = ops.adjoint(regions, detail[idx], composition.pixel_gradient(grad_norm, spec))
        eta = np.full(idx.size, config.step / np.sqrt(1.0 + t), np.float32)
        x[idx] = ops.projected_step(xa, grad_x, feasible, lam=lam, eta=eta)

        # Done: no better feasible iterate for `patience` steps, or nothing moves any more
        # (e.g. a blank image whose mask has reached 0).
        done = (since_better[idx] >= config.patience) | (x[idx] == xa).all(axis=1)
        converged[idx[done]] = True
        active[idx[done]] = False

    # One fresh forward pass of the classifier verifies the constraint for every mask.
    masked_images = masked(rows, best)
    p_masked = softmax(model.logits(normalize(masked_images, spec)))[rows, targets]
    cost += 1
    failed = ~(p_masked > threshold)
    if failed.any():
        logger.warning("landmarks: %d mask(s) failed the verifying forward pass; returning the full mask for them", failed.sum())
        best[failed] = 1.0
        masked_images[failed] = masked(rows[failed], best[failed])
        p_masked[failed] = p_full[failed]
    loss_best = -np.log(np.maximum(p_masked, 1e-300))
    persistence = (path_sum / np.maximum(iterations, 1)[:, None]).astype(np.float32)
    for c, count in enumerate(checkpoints):
        stopped_sooner = iterations < count
        persistence_at[stopped_sooner, c] = persistence[stopped_sooner]
    return OptimizationResult(
        masks=best,
        targets=targets,
        epsilons=eps,
        p_full=p_full,
        p_masked=p_masked,
        masked_images=masked_images,
        persistence=persistence,
        p_reference=p_reference,
        vacuous=p_reference > threshold,
        iterations=iterations,
        converged=converged,
        objective=loss_best + lam * best.sum(axis=1, dtype=np.float64),
        forward_equivalents=cost,
        seconds=time.perf_counter() - start,
        persistence_at=persistence_at if checkpoints else None,
    )
