"""Datasets from manifests: class merging, label tables and k-fold splits.

The manifest itself (its columns, ``CoinRecord``, the validating ``read_manifest``) is the
runtime's ``denarius.engine.manifest``; this module builds training datasets on it.

Class merging follows the paper: RIC labels of one emperor whose reverse descriptions differ
in fewer than ``merge_threshold`` words become one class.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from denarius.engine.errors import ManifestError
from denarius.engine.hierarchy import Hierarchy
from denarius.engine.manifest import CoinRecord, read_manifest

__all__ = [
    "Dataset",
    "word_difference",
    "merge_classes",
    "load_dataset",
    "kfold_splits",
]

log = logging.getLogger(__name__)

def word_difference(a: str, b: str) -> int:
    """Word-level edit distance between two descriptions (case and punctuation ignored).

    One word substituted, inserted or deleted counts 1, so "Minerva standing right with
    spear" and "Minerva standing left with spear" differ in 1 word and merge at the
    default threshold of 2, while "... with spear; to right, owl" and "... with spear;
    to left, branch" differ in 2 and stay apart.
    """
    wa = "".join(ch if ch.isalnum() else " " for ch in a.lower()).split()
    wb = "".join(ch if ch.isalnum() else " " for ch in b.lower()).split()
    previous = list(range(len(wb) + 1))
    for i, word_a in enumerate(wa, start=1):
        current = [i]
        for j, word_b in enumerate(wb, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word_a != word_b)))
        previous = current
    return previous[-1]


def merge_classes(records: Sequence[CoinRecord], *, threshold: int = 2) -> dict[str, list[str]]:
    """Group RIC labels of one emperor whose reverse descriptions differ in < ``threshold`` words.

    Merging is transitive (union-find). The merged class takes the name of its
    alphabetically first label. ``threshold=0`` disables merging.

    Returns:
        {merged label: [original labels]} for the groups of two or more labels only.
    """
    description: dict[str, str] = {}
    emperor_of: dict[str, str] = {}
    for record in records:
        description.setdefault(record.ric, record.reverse_description)
        emperor_of[record.ric] = record.emperor
    parent = {ric: ric for ric in description}

    def find(ric: str) -> str:
        while parent[ric] != ric:
            parent[ric] = parent[parent[ric]]
            ric = parent[ric]
        return ric

    by_emperor: dict[str, list[str]] = defaultdict(list)
    for ric in sorted(description):
        by_emperor[emperor_of[ric]].append(ric)
    for labels in by_emperor.values():
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                if description[a] and description[b] and word_difference(description[a], description[b]) < threshold:
                    ra, rb = find(a), find(b)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = defaultdict(list)
    for ric in sorted(description):
        groups[find(ric)].append(ric)
    return {root: labels for root, labels in groups.items() if len(labels) > 1}


@dataclass(frozen=True)
class Dataset:
    """A validated manifest with merged classes and the label tables of both models.

    Attributes:
        root: folder of the manifest.
        records: one per coin; ``ric`` is already the merged class label.
        hierarchy: emperor and RIC class tables (sorted names) and the RIC -> emperor tree.
        descriptions: {ric class: {"obverse": str, "reverse": str}} (first coin's texts).
        merged: {merged class label: [original RIC labels]} for merged groups only.
    """

    root: Path
    records: tuple[CoinRecord, ...]
    hierarchy: Hierarchy
    descriptions: dict
    merged: dict

    def __len__(self) -> int:
        return len(self.records)

    def emperor_targets(self) -> np.ndarray:
        """(N,) int64 indices into ``hierarchy.emperors``."""
        index = {name: i for i, name in enumerate(self.hierarchy.emperors)}
        return np.array([index[r.emperor] for r in self.records], dtype=np.int64)

    def ric_targets(self) -> np.ndarray:
        """(N,) int64 indices into ``hierarchy.rics``."""
        index = {name: i for i, name in enumerate(self.hierarchy.rics)}
        return np.array([index[r.ric] for r in self.records], dtype=np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """The same class tables over a subset of coins (e.g. one fold)."""
        return replace(self, records=tuple(self.records[int(i)] for i in indices))


def load_dataset(path: str | Path, *, merge_threshold: int = 2, check_files: bool = True) -> Dataset:
    """Read, validate and merge a manifest into a :class:`Dataset`."""
    records = read_manifest(path, check_files=check_files)
    merged = merge_classes(records, threshold=merge_threshold)
    rename = {label: root for root, labels in merged.items() for label in labels}
    if merged:
        log.info(
            "merged %d RIC labels into %d classes (reverse descriptions differ in < %d words): %s",
            sum(len(v) for v in merged.values()), len(merged), merge_threshold,
            "; ".join(f"{k} <- {v}" for k, v in merged.items()),
        )
    records = [replace(r, ric=rename.get(r.ric, r.ric)) for r in records]
    ric_to_emperor = {r.ric: r.emperor for r in records}
    descriptions: dict[str, dict[str, str]] = {}
    for r in records:
        descriptions.setdefault(r.ric, {"obverse": r.obverse_description, "reverse": r.reverse_description})
    return Dataset(
        root=Path(path).parent,
        records=tuple(records),
        hierarchy=Hierarchy.from_mapping(ric_to_emperor),
        descriptions=descriptions,
        merged=merged,
    )


def kfold_splits(dataset: Dataset, *, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Class-balanced k-fold splits, stratified by RIC class, deterministic for a seed.

    Returns:
        ``folds`` pairs of (train indices, test indices), int64 arrays into ``dataset.records``.
    Raises:
        ManifestError: a RIC class has fewer coins than folds (it could not appear in every
            test fold); the message lists such classes.
    """
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ManifestError(f"folds must be at least 2, got {folds}")
    targets = dataset.ric_targets()
    counts = np.bincount(targets, minlength=len(dataset.hierarchy.rics))
    small = [(dataset.hierarchy.rics[i], int(c)) for i, c in enumerate(counts) if c < folds]
    if small:
        listed = ", ".join(f"{name} ({count} coins)" for name, count in small[:20])
        raise ManifestError(
            f"{len(small)} RIC class(es) have fewer coins than the {folds} folds: {listed}; "
            f"use fewer folds or add coins"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train.astype(np.int64), test.astype(np.int64)) for train, test in splitter.split(np.zeros(len(targets)), targets)]
