"""Accuracy metrics of a classifier's scores: mean per-class accuracy (the paper's figure), top-k, confusion.

Used by the training loop (validation after every epoch) and by k-fold evaluation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion", "mean_class_accuracy", "top_k_accuracy", "task_metrics"]


def confusion(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 confusion counts, rows = true class, columns = predicted class."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(targets, predictions, labels=np.arange(num_classes)).astype(np.int64)


def mean_class_accuracy(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Mean of the diagonal of the row-normalised confusion matrix.

    Rows of classes absent from ``targets`` are skipped (they have no accuracy); a class
    that is only predicted still lowers the accuracy of the classes it was confused with.
    """
    matrix = confusion(targets, predictions, num_classes)
    rows = matrix.sum(axis=1)
    present = rows > 0
    if not present.any():
        return float("nan")
    return float((np.diag(matrix)[present] / rows[present]).mean())


def top_k_accuracy(targets: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of rows whose target is among the ``k`` highest of (N, C) ``scores``."""
    from sklearn.metrics import top_k_accuracy_score

    num_classes = scores.shape[1]
    if k >= num_classes:
        return 1.0
    if num_classes == 2:  # sklearn wants the positive-class column for binary problems
        scores = scores[:, 1] - scores[:, 0]
    return float(top_k_accuracy_score(targets, scores, k=k, labels=np.arange(num_classes)))


def task_metrics(targets: np.ndarray, scores: np.ndarray) -> dict:
    """Accuracy (mean per class), top-1 and top-5 of (N, C) scores, plus the confusion counts."""
    targets = np.asarray(targets, np.int64)
    num_classes = scores.shape[1]
    predictions = np.argmax(scores, axis=1)
    return {
        "accuracy": mean_class_accuracy(targets, predictions, num_classes),
        "top1": float((predictions == targets).mean()),
        "top5": top_k_accuracy(targets, scores, 5),
        "confusion": confusion(targets, predictions, num_classes),
    }
