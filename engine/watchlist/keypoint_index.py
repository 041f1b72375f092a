"""Candidate retrieval: the listed specimens' ORB keypoints in an embedded faiss binary index.

Every listed side files its :data:`INDEXED_FEATURES` strongest ORB descriptors in a faiss
``IndexBinaryIVF`` (one per side, inverted lists over :data:`WORDS` fixed binary words,
``data/keypoint_words.npy``, fitted by ``tools/fit_watchlist_words.py`` on synthetic
specimens of another catalogue), each under its specimen's label. A query's
:data:`QUERY_FEATURES` strongest descriptors per side each look up their
:data:`NEIGHBOURS` nearest listed descriptors (Hamming <= :data:`MAX_HAMMING`, searching
:data:`PROBES` lists) and vote for the specimens those belong to, 1/n each for n distinct
specimens (a keypoint the whole die shares counts less than a mark of one specimen).

Measured against the global descriptor it replaces (ORB bits aggregated over 16 words in an
hnswlib HNSW index) on the bench's 10,000 listed specimens: the re-photographed specimen
among the first 8 candidates for 0.69 of queries instead of 0.37, among the first 64 for
0.83 instead of 0.49 (docs/watchlist/README.md).

The index file is a cache: ``store.py`` rebuilds it from the descriptors SQLite keeps and
reconciles its labels with SQLite at open.
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from denarius.engine.atomic_write import write_atomic_with
from denarius.engine.watchlist.faiss_setup import faiss

__all__ = ["INDEXED_FEATURES", "QUERY_FEATURES", "WORDS", "KeypointIndex"]

INDEXED_FEATURES = 128  # per listed side
QUERY_FEATURES = 200  # per query side
NEIGHBOURS = 10
MAX_HAMMING = 60  # of 256 bits
PROBES = 4
WORDS = 4096
_BITS = 256
_WORDS_FILE = Path(__file__).with_name("data") / "keypoint_words.npy"
_SIDES = ("obverse", "reverse")


@functools.lru_cache(maxsize=1)
def _words() -> np.ndarray:
    """(WORDS, 32) uint8 binary words."""
    words = np.load(_WORDS_FILE)
    if words.shape != (WORDS, _BITS // 8) or words.dtype != np.uint8:
        raise RuntimeError(f"{_WORDS_FILE} holds {words.shape} {words.dtype}, expected ({WORDS}, 32) uint8")
    return words


def _empty_side() -> faiss.IndexBinaryIVF:
    quantizer = faiss.IndexBinaryFlat(_BITS)
    quantizer.add(_words())
    side = faiss.IndexBinaryIVF(quantizer, _BITS, WORDS)  # faiss's wrapper keeps a reference to the quantizer
    side.is_trained = True
    side.nprobe = PROBES
    return side


def _side_votes(side: faiss.IndexBinaryIVF, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One side's votes: ((V,) int64 labels, (V,) float64 weights, descriptors cast).

    Each of the query's strongest :data:`QUERY_FEATURES` descriptors votes 1/n for each of
    the n distinct specimens among its :data:`NEIGHBOURS` nearest within :data:`MAX_HAMMING`.
    """
    codes = np.ascontiguousarray(codes[:QUERY_FEATURES], np.uint8)
    if not len(codes) or side.ntotal == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), 0
    distances, ids = side.search(codes, NEIGHBOURS)
    found = np.where((distances <= MAX_HAMMING) & (ids >= 0), ids, -1)
    found.sort(axis=1)
    first = np.ones(found.shape, bool)
    first[:, 1:] = found[:, 1:] != found[:, :-1]
    first &= found >= 0
    distinct = first.sum(axis=1, keepdims=True)
    return found[first], np.broadcast_to(1.0 / np.maximum(distinct, 1), found.shape)[first], len(codes)


class KeypointIndex:
    """Both sides' inverted lists of listed keypoints; labels are SQLite row ids of ``store.py``."""

    def __init__(self) -> None:
        self._sides = [_empty_side() for _ in _SIDES]
        self._live: set[int] = set()

    def __len__(self) -> int:
        return len(self._live)

    def stored_labels(self) -> set[int]:
        return set(self._live)

    def add(self, label: int, descriptors: tuple[np.ndarray, np.ndarray]) -> None:
        """File a specimen's (obverse, reverse) (N, 32) uint8 descriptors, strongest first."""
        self.add_many([label], [descriptors])

    def add_many(self, labels: list[int], descriptors: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """:meth:`add` for many specimens in one call per side (a rebuild: ~20x faster)."""
        for side_number, side in enumerate(self._sides):
            codes = [np.asarray(d[side_number][:INDEXED_FEATURES], np.uint8) for d in descriptors]
            if not sum(len(c) for c in codes):
                continue
            ids = np.concatenate([np.full(len(c), label, np.int64) for label, c in zip(labels, codes, strict=True)])
            side.add_with_ids(np.ascontiguousarray(np.concatenate(codes)), ids)
        self._live.update(int(label) for label in labels)

    def remove(self, label: int) -> None:
        self.keep_only(self._live - {int(label)})

    def keep_only(self, labels: set[int]) -> None:
        """Drop every specimen not in ``labels`` (rows that SQLite no longer has)."""
        gone = self._live - labels
        if gone:
            selector = faiss.IDSelectorBatch(np.array(sorted(gone), np.int64))
            for side in self._sides:
                side.remove_ids(selector)
            self._live -= gone

    def search(
        self, query: tuple[np.ndarray, np.ndarray], k: int, *, executor: Executor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` specimens with most votes from the query's (obverse, reverse) descriptors.

        Args:
            query: (obverse, reverse) (N, 32) uint8 descriptors, strongest first.
            executor: where the two sides are searched side by side (at 100,000 listed
                specimens 12.1 instead of 15.0 ms on 2 cores); None searches them one after
                the other.
        Returns:
            ((k',) int64 labels, (k',) float32 scores), best first, k' <= k: a score is the
            specimen's votes over the query descriptors cast, in [0, 1].
        """
        if len(query) != len(self._sides):
            raise ValueError(f"expected (obverse, reverse) descriptors, got {len(query)} arrays")
        run = executor.map if executor else map
        sides = list(run(_side_votes, self._sides, query))
        cast = sum(count for _, _, count in sides)
        labels = np.concatenate([found for found, _, _ in sides])
        if not len(labels):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        candidates, position = np.unique(labels, return_inverse=True)
        votes = np.bincount(position, weights=np.concatenate([weights for _, weights, _ in sides]))
        best = np.argsort(-votes, kind="stable")[:k]
        return candidates[best].astype(np.int64), (votes[best] / cast).astype(np.float32)

    def save(self, path: str | os.PathLike) -> None:
        """Write-then-rename (durable): a crash leaves the previous file or the new one, never half of one."""
        obverse, reverse = (faiss.serialize_index_binary(side) for side in self._sides)
        labels = np.array(sorted(self._live), np.int64)
        write_atomic_with(path, lambda handle: np.savez(handle, labels=labels, obverse=obverse, reverse=reverse), durable=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeypointIndex:
        """Load a saved index.

        Raises:
            OSError: it cannot be read. ValueError: it is not a keypoint index (damaged,
            truncated, or of other words).
        """
        index = cls.__new__(cls)
        data = Path(path).read_bytes()
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as saved:
                sides = [faiss.deserialize_index_binary(saved[name]) for name in _SIDES]
                index._live = {int(label) for label in saved["labels"]}
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError) as error:
            raise ValueError(f"{path} is not a keypoint index ({type(error).__name__}: {error})") from None
        index._sides = [side for side in sides if isinstance(side, faiss.IndexBinaryIVF) and side.nlist == WORDS]
        if len(index._sides) != len(_SIDES):
            raise ValueError(f"{path} is not a keypoint index of {WORDS} words")
        for side in index._sides:
            side.nprobe = PROBES
        return index
