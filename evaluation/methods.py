"""The methods ``landmarks-eval`` scores, by name: ours and their variants.

Each entry turns the evaluation's base :class:`~denarius.engine.landmarks.api.LandmarkConfig`
(the window being scored, the stride, epsilon, reference and optimiser settings of the run)
into the configuration of that method; :func:`denarius.engine.landmarks.api.compute_landmarks`
then computes it, so a variant is scored by every metric, at every window, with no other
change.

To add a variant of the optimiser (e.g. the paper's single-epsilon persistence map beside
an epsilon-ladder "survival" default), register it here once the engine can compute it
from a ``LandmarkConfig`` field::

    EVAL_METHODS["optimized_persistence"] = EvalMethod(
        lambda base: replace(base, method="optimized", heatmap="persistence"),  # the engine's option
        help="mean of the mask over the iterations at epsilon alone",
    )

and run ``denarius landmarks-eval ... --methods optimized optimized_persistence occlusion
saliency``; its rows appear in scores.json (``methods``, ``by_window``, ``by_side``), in
scores.md and in the saved heatmaps under the same name. ``path_scores`` marks the method
whose heatmap is also scored along the optimiser's path (it must be computable with
``checkpoints``); ``guidebook`` the one whose maps make the class guidebooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from denarius.engine.errors import ConfigError
from denarius.engine.landmarks.api import LandmarkConfig

__all__ = ["EvalMethod", "EVAL_METHODS", "method_config", "check_methods"]


@dataclass(frozen=True)
class EvalMethod:
    """One scored method.

    Attributes:
        config: base LandmarkConfig -> this method's LandmarkConfig.
        help: one line for ``--help`` and the docs.
        path_scores: also score its heatmap along the optimiser's path (headline window).
        guidebook: its headline maps make the class guidebooks.
    """

    config: Callable[[LandmarkConfig], LandmarkConfig]
    help: str
    path_scores: bool = False
    guidebook: bool = False


EVAL_METHODS: dict[str, EvalMethod] = {
    "optimized": EvalMethod(lambda base: replace(base, method="optimized"),
                            "the constrained mask optimiser at its defaults (relative constraint, persistence on the coin)",
                            path_scores=True, guidebook=True),
    # Variants of the optimiser (issue 20 item 5; docs/results_landmarks.md). "paper" is the
    # default before issue 20: the paper's absolute constraint, the persistence map averaged
    # over the covering windows, anywhere in the crop.
    "optimized_paper": EvalMethod(
        lambda base: replace(base, method="optimized", heatmap="persistence", support="crop", spread="coverage",
                             optimizer=replace(base.optimizer, constraint="absolute")),
        "the optimiser before issue 20: absolute constraint, persistence averaged over covering windows"),
    "optimized_mask": EvalMethod(
        lambda base: replace(base, method="optimized", heatmap="mask", support="crop", spread="coverage",
                             optimizer=replace(base.optimizer, constraint="absolute")),
        "the paper's single-epsilon mask (absolute constraint)"),
    "optimized_ladder": EvalMethod(
        lambda base: replace(base, method="optimized", heatmap="ladder"),
        "survival over the epsilon ladder 0.1 .. 0.9 (5 rungs, 5 optimiser rows per image)"),
    "optimized_early": EvalMethod(
        lambda base: replace(base, method="optimized", optimizer=replace(base.optimizer, max_iterations=5)),
        "the default stopped after 5 iterations (the path scores' best obverse point: mostly the loss gradient's first steps)"),
    "occlusion": EvalMethod(lambda base: replace(base, method="occlusion"), "occlusion sensitivity over the same windows"),
    "saliency": EvalMethod(lambda base: replace(base, method="saliency"), "gradient saliency averaged over the same windows"),
}


def check_methods(names) -> tuple[str, ...]:
    """The names as a tuple; ConfigError naming the valid ones when one is unknown or none is given."""
    names = tuple(names)
    unknown = [n for n in names if n not in EVAL_METHODS]
    if unknown or not names:
        raise ConfigError(f"unknown landmark methods {unknown}; valid methods: {', '.join(EVAL_METHODS)}")
    return names


def method_config(name: str, base: LandmarkConfig) -> LandmarkConfig:
    """The LandmarkConfig of method ``name`` for the run's ``base`` settings."""
    return EVAL_METHODS[check_methods([name])[0]].config(base)
