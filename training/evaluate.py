"""k-fold cross-validation of the paper's three tasks for the CNN and the SIFT+SVM baseline.

Tasks (the paper's Table 1):

- ``reverse``: RIC class from the reverse image alone (the RIC model),
- ``obverse``: emperor from the obverse image alone (the emperor model),
- ``hierarchy``: RIC class from both images, scored p(e|Io) p(r|Ir) [parent(r) = e] by
  ``denarius.engine.hierarchy.Hierarchy.joint_scores`` (the one implementation of the combination).

Metrics per task and fold: ``accuracy`` = mean per-class accuracy, the mean of the diagonal
of the row-normalised confusion matrix over the classes present in the test fold (the
paper's measure); ``top1`` and ``top5`` = plain fraction of coins whose class is among the
1 / 5 best scores. Both methods use the same folds (``denarius.training.data.kfold_splits``,
stratified by RIC class).

``report.json`` (written by ``denarius.training.report.write_report``)::

    {
      "manifest": str, "coins": N, "emperors": E, "rics": R, "merged": {...},
      "folds": [{"fold": i, "train": n_train, "test": n_test, "test_coin_ids": [...]}],
      "seed": int, "methods": ["cnn", "svm"],
      "hardware": str, "wall_seconds": float,
      "cnn": {
        "folds": [{"fold": i, "seconds": s,
                   "reverse":   {"accuracy": a, "top1": t1, "top5": t5},
                   "obverse":   {...}, "hierarchy": {...}}, ...],
        "mean": {"reverse": a, "obverse": a, "hierarchy": a},   # mean per-class accuracy
        "std":  {"reverse": s, "obverse": s, "hierarchy": s},   # sample std over folds (ddof=1)
        "top1": {"mean": {task: v}, "std": {task: v}},
        "top5": {"mean": {task: v}, "std": {task: v}},
        "confusion": {"reverse": [[int]] (R, R), "obverse": (E, E), "hierarchy": (R, R)},
                     # counts summed over the folds' test sets; rows = true class
        "history": {"emperor": [[{epoch, iteration, train_loss, train_accuracy,
                                   val_accuracy, val_mean_class_accuracy, ...}]  per fold],
                    "ric": [...]},                                # CNN only (Figure 3)
        "config": TrainConfig.to_dict() | SVMConfig.to_dict(),
        "seconds": float
      },
      "svm": {... same keys, no "history"; "probabilities": "softmax of decision values"}
    }
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from denarius.engine.errors import ConfigError
from denarius.engine.preprocess import PreprocessSpec
from denarius.training.metrics import task_metrics

__all__ = [
    "METHODS",
    "TASKS",
    "fold_metrics",
    "summarise",
    "cross_validate",
    "hardware_description",
]

logger = logging.getLogger(__name__)

METHODS = ("cnn", "svm")
TASKS = ("reverse", "obverse", "hierarchy")


# --------------------------------------------------------------------------- metrics


def fold_metrics(hierarchy, *, emperor_targets, ric_targets, p_emperor, p_ric) -> dict:
    """The three tasks of one fold.

    Args:
        hierarchy: ``denarius.engine.hierarchy.Hierarchy`` of the dataset.
        emperor_targets, ric_targets: (N,) int64 true classes of the test coins.
        p_emperor: (N, E) emperor probabilities from the obverses.
        p_ric: (N, R) RIC probabilities from the reverses.
    Returns:
        {"reverse": task_metrics, "obverse": ..., "hierarchy": ...}.
    """
    joint = hierarchy.joint_scores(p_emperor, p_ric)  # (N, R)
    return {
        "reverse": task_metrics(ric_targets, p_ric),
        "obverse": task_metrics(emperor_targets, p_emperor),
        "hierarchy": task_metrics(ric_targets, joint),
    }


def summarise(fold_results: list[dict]) -> dict:
    """Per-method summary of fold results (each {"reverse": metrics, ...}).

    Returns the report's method section without "history"/"config": folds, mean, std
    (sample std over folds, ddof=1; 0 for one fold), top1, top5 and summed confusion counts.
    """
    def stat(key: str, fn) -> dict:
        return {task: float(fn([f[task][key] for f in fold_results])) for task in TASKS}

    def std(values):
        return np.std(values, ddof=1) if len(values) > 1 else 0.0

    return {
        "folds": [
            {
                "fold": i,
                "seconds": f.get("seconds"),
                **{task: {k: float(f[task][k]) for k in ("accuracy", "top1", "top5")} for task in TASKS},
            }
            for i, f in enumerate(fold_results)
        ],
        "mean": stat("accuracy", np.mean),
        "std": stat("accuracy", std),
        "top1": {"mean": stat("top1", np.mean), "std": stat("top1", std)},
        "top5": {"mean": stat("top5", np.mean), "std": stat("top5", std)},
        "confusion": {task: sum(f[task]["confusion"] for f in fold_results).tolist() for task in TASKS},
    }


def hardware_description() -> str:
    """One line: CPU model, core count, GPU (if torch sees one)."""
    from denarius.engine.backends import cpu_model_name

    cpu = cpu_model_name()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{os.cpu_count()}-core {cpu}, {gpu}"


# --------------------------------------------------------------------------- cross-validation


def cross_validate(
    dataset,
    *,
    folds: int = 5,
    seed: int = 0,
    methods=METHODS,
    train_config=None,
    svm_config=None,
    manifest: str | None = None,
    progress: bool = True,
) -> dict:
    """k-fold cross-validation of the CNN and/or SVM; returns the report dict (see module doc).

    Args:
        dataset: ``denarius.training.data.Dataset``.
        folds: k (>= 2); a RIC class with fewer coins raises ``ManifestError`` before any work.
        seed: fold assignment seed (the training seed is ``train_config.seed``).
        methods: any of "cnn", "svm".
        train_config: ``denarius.training.train.TrainConfig`` for the CNN (default: its defaults).
        svm_config: ``denarius.training.baseline_svm.SVMConfig`` (default: its defaults).
    """
    from denarius.training.data import kfold_splits
    from denarius.training.datasets import TASK_SIDE, canonical_images, task_targets

    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    started = time.perf_counter()
    splits = kfold_splits(dataset, folds=folds, seed=seed)  # ManifestError for tiny classes, before any work
    hierarchy = dataset.hierarchy
    targets = {task: task_targets(dataset, task) for task in TASK_SIDE}
    report: dict = {
        "manifest": manifest,
        "coins": len(dataset),
        "emperors": len(hierarchy.emperors),
        "rics": len(hierarchy.rics),
        "merged": dataset.merged,
        "seed": seed,
        "methods": list(methods),
        "folds": [
            {
                "fold": i,
                "train": len(train),
                "test": len(test),
                "test_coin_ids": [dataset.records[j].coin_id for j in test],
            }
            for i, (train, test) in enumerate(splits)
        ],
        "hardware": hardware_description(),
    }
    cache: dict[tuple[str, int], np.ndarray] = {}

    def canonical(side: str, spec: PreprocessSpec) -> np.ndarray:
        key = (side, spec.resize)
        if key not in cache:
            cache[key] = canonical_images(dataset, side, spec, progress=progress)
        return cache[key]

    # The SVM first: it is quick and its numbers are in the log before the long CNN folds.
    if "svm" in methods:
        from denarius.training.baseline_svm import SVMConfig

        config = svm_config or SVMConfig()
        spec = PreprocessSpec(resize=config.image_size, crop=config.image_size)
        images = {task: canonical(side, spec) for task, side in TASK_SIDE.items()}  # shared with the CNN at equal size
        report["svm"] = _cross_validate_svm(dataset, splits, targets, images, config, progress)
    if "cnn" in methods:
        from denarius.training.train import TrainConfig

        config = train_config or TrainConfig()
        spec = config.preprocess_spec()
        for side in ("obverse", "reverse"):  # every image decodes, before the first fold trains
            canonical(side, spec)
        report["cnn"] = _cross_validate_cnn(
            dataset, splits, targets, {t: canonical(s, spec) for t, s in TASK_SIDE.items()}, config, progress
        )
    report["wall_seconds"] = time.perf_counter() - started
    return report


def _cross_validate_cnn(dataset, splits, targets, canonical, config, progress) -> dict:
    import torch

    from denarius.training.datasets import CoinSideDataset
    from denarius.training.train import fit, predict_proba

    hierarchy = dataset.hierarchy
    classes = {"emperor": hierarchy.emperors, "ric": hierarchy.rics}
    results, history = [], {"emperor": [], "ric": []}
    started = time.perf_counter()
    for i, (train, test) in enumerate(splits):
        fold_started = time.perf_counter()
        probs = {}
        for task in ("emperor", "ric"):
            model, ckpt = fit(
                task=task, canonical=canonical[task], targets=targets[task], classes=classes[task],
                config=config, train_indices=train, val_indices=test, extra={"fold": i}, progress=progress,
            )
            test_set = CoinSideDataset(canonical[task], targets[task], config.preprocess_spec(), indices=test)
            loader = torch.utils.data.DataLoader(test_set, batch_size=128, shuffle=False)
            probs[task], _ = predict_proba(model, loader)
            history[task].append(ckpt.history)
        metrics = fold_metrics(
            hierarchy, emperor_targets=targets["emperor"][test], ric_targets=targets["ric"][test],
            p_emperor=probs["emperor"], p_ric=probs["ric"],
        )
        metrics["seconds"] = time.perf_counter() - fold_started
        _log_fold("cnn", i, len(splits), metrics)
        results.append(metrics)
    summary = summarise(results)
    summary.update(history=history, config=config.to_dict(), seconds=time.perf_counter() - started)
    return summary


def _cross_validate_svm(dataset, splits, targets, canonical, config, progress) -> dict:
    from denarius.training.baseline_svm import BowSVM, extract_descriptors

    hierarchy = dataset.hierarchy
    num_classes = {"emperor": len(hierarchy.emperors), "ric": len(hierarchy.rics)}
    started = time.perf_counter()
    descriptors = {task: extract_descriptors(canonical[task], config, progress=progress) for task in canonical}
    results = []
    for i, (train, test) in enumerate(splits):
        fold_started = time.perf_counter()
        probs = {}
        for task in ("emperor", "ric"):
            svm = BowSVM(config, num_classes=num_classes[task]).fit(descriptors[task][train], targets[task][train])
            probs[task] = svm.predict_proba(descriptors[task][test])
        metrics = fold_metrics(
            hierarchy, emperor_targets=targets["emperor"][test], ric_targets=targets["ric"][test],
            p_emperor=probs["emperor"], p_ric=probs["ric"],
        )
        metrics["seconds"] = time.perf_counter() - fold_started
        _log_fold("svm", i, len(splits), metrics)
        results.append(metrics)
    summary = summarise(results)
    summary.update(
        config=config.to_dict(), probabilities="softmax of LinearSVC decision values",
        seconds=time.perf_counter() - started,
    )
    return summary


def _log_fold(method: str, i: int, k: int, metrics: dict) -> None:
    logger.info(
        "%s fold %d/%d: reverse %.3f obverse %.3f hierarchy %.3f (mean per-class accuracy, %.0fs)",
        method, i + 1, k, metrics["reverse"]["accuracy"], metrics["obverse"]["accuracy"],
        metrics["hierarchy"]["accuracy"], metrics["seconds"],
    )
