"""The embedded approximate-nearest-neighbour index of specimen vectors (hnswlib HNSW).

hnswlib was measured against usearch and faiss-cpu on 100,000 unit vectors of 256 dims, 2
threads to build, 1 to search (docs/watchlist/README.md): build 18 s / 69 s / 47 s, search
p50 0.15 / 0.36 / 0.24 ms, recall@16 0.994 / 0.998 / 1.000. Labels are the SQLite row ids
of ``store.py``; the index file is a cache that ``store.py`` reconciles with SQLite at open.
"""

from __future__ import annotations

import os
from pathlib import Path

import hnswlib
import numpy as np

from denarius.engine.atomic_write import fsync_dir

__all__ = ["SpecimenIndex"]

# M 32 / ef 400 on the bench's 10,000 listed (1,024 dims): the true specimen among the 64
# returned for 0.486 of re-photographs, exact search 0.494; M 16 / ef 96 found 0.306
_M, _EF_CONSTRUCTION, _EF_SEARCH = 32, 200, 400


class SpecimenIndex:
    """Cosine (inner-product on unit vectors) HNSW index over (dim,) float32 vectors."""

    def __init__(self, dim: int, *, capacity: int = 1024, threads: int = 1):
        self.dim = dim
        self._index = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(max_elements=max(16, capacity), M=_M, ef_construction=_EF_CONSTRUCTION, allow_replace_deleted=True)
        self._index.set_ef(_EF_SEARCH)
        self._index.set_num_threads(threads)
        self._live: set[int] = set()

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int) -> SpecimenIndex:
        """Load a saved index; raises RuntimeError or OSError when the file is unreadable."""
        index = cls.__new__(cls)
        index.dim = dim
        index._index = hnswlib.Index(space="ip", dim=dim)
        index._index.load_index(str(path), allow_replace_deleted=True)
        index._index.set_ef(_EF_SEARCH)
        index._index.set_num_threads(1)
        # store.py reconciles the labels with SQLite and calls keep_only
        index._live = index.stored_labels()
        return index

    def keep_only(self, labels: set[int]) -> None:
        """Delete every stored label not in ``labels`` (rows that SQLite no longer has)."""
        for label in self._live - labels:
            try:
                self._index.mark_deleted(label)
            except RuntimeError:  # deleted before the file was saved
                pass
        self._live &= labels

    def stored_labels(self) -> set[int]:
        """Every label the index holds, deleted ones included (for reconciliation)."""
        return set(int(label) for label in self._index.get_ids_list())

    def __len__(self) -> int:
        return len(self._live)

    def add(self, labels: np.ndarray, vectors: np.ndarray, *, threads: int = 1) -> None:
        """Add (N,) int64 labels with (N, dim) float32 unit vectors."""
        if len(labels) == 0:
            return
        needed = self._index.get_current_count() + len(labels)
        if needed > self._index.get_max_elements():
            self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
        self._index.add_items(np.asarray(vectors, np.float32), np.asarray(labels, np.int64), num_threads=threads, replace_deleted=True)
        self._live.update(int(label) for label in labels)

    def remove(self, label: int) -> None:
        if label in self._live:
            self._index.mark_deleted(label)
            self._live.discard(label)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest: ((k',) int64 labels, (k',) float32 cosine similarities), k' <= k."""
        count = len(self._live)
        if count == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(k, count)
        self._index.set_ef(max(_EF_SEARCH, k))
        labels, distances = self._index.knn_query(np.asarray(vector, np.float32).reshape(1, -1), k=k)
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)

    def save(self, path: str | os.PathLike) -> None:
        """Write-then-rename: a crash leaves the previous file or the new one, never half of one."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.tmp")
        self._index.save_index(str(temporary))
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_dir(path.parent)
