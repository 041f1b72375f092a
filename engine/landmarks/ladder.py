"""The epsilon ladder: score each region by how much confidence loss it survives.

Kim & Pavlovic's Figure 6 shows that as epsilon grows, the less significant regions leave
the optimised mask first, and the most essential symbol is what remains. The ladder turns
that observation into a heatmap: optimise one mask per rung epsilon_1 < ... < epsilon_R
(one batched optimiser run, every rung of every image a row) and score each region by the
integral of its value over epsilon::

    s_k = sum_r (epsilon_r - epsilon_{r-1}) * v_k(epsilon_r),     epsilon_0 = 0

where v is the rung's mask or persistence (see :mod:`denarius.engine.landmarks.optimizer`).
For near-binary masks that shrink as epsilon grows, s_k is the largest epsilon at which
region k is still kept: its *survival*. A region the class needs at every rung scores
epsilon_R, one that leaves at the first rung scores 0.

Rungs where the constraint is vacuous (the reference alone satisfies it, so the mask is
empty) add nothing to the mask survival but still order the regions through their
persistence; the low rungs are rarely vacuous, which is what a single epsilon of 0.5
lacks (28% of obverses and 48% of reverses were vacuous at 0.5 on the ``bench`` coins).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from denarius.engine.errors import ConfigError

__all__ = ["DEFAULT_RUNGS", "ladder_rungs", "survival"]

DEFAULT_RUNGS = (0.1, 0.3, 0.5, 0.7, 0.9)


def ladder_rungs(rungs: Sequence[float], epsilon: float) -> tuple[float, ...]:
    """The rungs to optimise: ``rungs`` plus the map's own ``epsilon``, sorted, unique.

    Args:
        rungs: epsilons in (0, 1]. epsilon: the epsilon whose mask the map reports.
    Returns:
        strictly increasing tuple of floats containing ``epsilon``.
    Raises:
        ConfigError: an empty ladder or a rung outside (0, 1].
    """
    values = [float(r) for r in rungs]
    if not values:
        raise ConfigError("the epsilon ladder needs at least one rung, e.g. (0.1, 0.3, 0.5, 0.7, 0.9)")
    bad = [r for r in values if not (0.0 < r <= 1.0) or not np.isfinite(r)]
    if bad:
        raise ConfigError(f"ladder rungs must lie in (0, 1], got {bad}")
    return tuple(sorted(set(values) | {float(epsilon)}))


def survival(values: np.ndarray, rungs: Sequence[float]) -> np.ndarray:
    """Integral over epsilon of each region's value (see module docstring).

    Args:
        values: (N, R, K) float, per image, rung and region, in [0, 1] (masks or
            persistence); rungs: (R,) strictly increasing epsilons of axis 1.
    Returns:
        (N, K) float32 in [0, rungs[-1]].
    """
    values = np.asarray(values, np.float64)
    steps = np.diff(np.concatenate([[0.0], np.asarray(rungs, np.float64)]))
    if values.ndim != 3 or values.shape[1] != len(steps):
        raise ConfigError(f"values must be (N, {len(steps)}, K) for {len(steps)} rungs, got shape {values.shape}")
    if (steps <= 0).any():
        raise ConfigError(f"rungs must be strictly increasing, got {list(rungs)}")
    return np.einsum("nrk,r->nk", values, steps).astype(np.float32)
