"""The watchlist's keypoint index on a real faiss binary IVF: votes, removal, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from denarius.engine.watchlist.keypoint_index import INDEXED_FEATURES, KeypointIndex


def _specimens(count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    return [tuple(rng.integers(0, 256, (INDEXED_FEATURES, 32), dtype=np.uint8) for _ in range(2)) for _ in range(count)]


def _noisy(descriptors: np.ndarray, rng: np.random.Generator, share: float = 0.08) -> np.ndarray:
    """The same keypoints seen again: a few bits flipped, half of them lost."""
    kept = descriptors[rng.permutation(len(descriptors))[: len(descriptors) // 2]]
    return np.bitwise_xor(kept, np.packbits(rng.random((len(kept), 256)) < share, axis=1))


def test_votes_find_the_specimen_a_query_shares_keypoints_with(tmp_path):
    rng = np.random.default_rng(0)
    listed = _specimens(60, rng)
    index = KeypointIndex()
    for label, descriptors in enumerate(listed, start=1):
        index.add(label, descriptors)
    assert len(index) == 60
    for label in (1, 17, 60):
        query = tuple(_noisy(d, rng) for d in listed[label - 1])
        labels, scores = index.search(query, 5)
        assert labels[0] == label and 0 < scores[0] <= 1 and (len(scores) == 1 or scores[0] > scores[1])
    stranger = tuple(rng.integers(0, 256, (100, 32), dtype=np.uint8) for _ in range(2))
    labels, scores = index.search(stranger, 5)  # random bits lie ~128 bits from everything
    assert len(labels) == 0

    index.remove(17)
    query = tuple(_noisy(d, rng) for d in listed[16])
    assert 17 not in index.search(query, 60)[0].tolist()

    path = tmp_path / "keypoints.index"
    index.save(path)
    reloaded = KeypointIndex.load(path)
    assert reloaded.stored_labels() == set(range(1, 61)) - {17}
    query = tuple(_noisy(d, rng) for d in listed[39])
    assert reloaded.search(query, 3)[0][0] == 40
    reloaded.keep_only({40})
    assert reloaded.search(query, 3)[0].tolist() == [40] and len(reloaded) == 1


def test_an_empty_index_answers_nothing_and_a_damaged_file_is_refused(tmp_path):
    empty = KeypointIndex()
    labels, scores = empty.search((np.zeros((4, 32), np.uint8), np.zeros((0, 32), np.uint8)), 5)
    assert len(labels) == 0 and len(scores) == 0
    damaged = tmp_path / "keypoints.index"
    damaged.write_bytes(b"PK\x03\x04 not an index")
    with pytest.raises(ValueError, match="is not a keypoint index"):
        KeypointIndex.load(damaged)
