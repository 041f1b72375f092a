"""Manifest validation, class merging and class-balanced folds."""

import csv

import numpy as np
import pytest

from denarius.engine.errors import ManifestError
from denarius.engine.manifest import COLUMNS, read_manifest
from denarius.training.data import kfold_splits, load_dataset, merge_classes, word_difference


def write_manifest(folder, rows, *, make_files=True):
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    if make_files:
        for row in rows:
            for name in row[1:3]:
                (folder / name).write_bytes(b"x")
    return path


def row(i, emperor, ric, reverse_description):
    return [f"c{i}", f"c{i}_obv.jpg", f"c{i}_rev.jpg", emperor, ric, f"Bust of {emperor}", reverse_description]


def test_reads_and_builds_tables(tmp_path):
    rows = [row(i, "A" if i < 6 else "B", f"R{i % 3}" if i < 6 else "R9", f"desc {i % 3}") for i in range(10)]
    dataset = load_dataset(write_manifest(tmp_path, rows), merge_threshold=0)
    assert dataset.hierarchy.emperors == ("A", "B")
    assert dataset.hierarchy.rics == ("R0", "R1", "R2", "R9")
    assert dataset.hierarchy.emperor_of("R9") == "B"
    assert dataset.ric_targets().tolist()[:3] == [0, 1, 2]
    assert len(dataset.subset([0, 1])) == 2


def test_reports_every_problem_with_line_numbers(tmp_path):
    rows = [row(1, "A", "R1", "x"), row(1, "A", "R2", "y"), row(3, "B", "R1", "x"), row(4, "B", "", "z")]
    path = write_manifest(tmp_path, rows)
    (tmp_path / "c3_rev.jpg").unlink()
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    message = str(info.value)
    assert "line 3: duplicate coin_id 'c1' (first on line 2)" in message
    assert "line 4: reverse image not found: c3_rev.jpg" in message
    assert "line 5: empty ric" in message
    assert "RIC label 'R1' appears under several emperors" in message and "(line 4)" in message


def test_missing_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("coin_id,obverse\nc1,a.jpg\n")
    with pytest.raises(ManifestError, match="missing columns"):
        read_manifest(path)


def test_word_difference_counts_words():
    assert word_difference("Minerva standing right, with spear", "minerva standing left with spear") == 1
    assert word_difference("Pax standing left", "Pax standing left holding branch") == 2
    assert word_difference("same", "same") == 0


def test_merging_joins_near_duplicates_of_one_emperor(tmp_path):
    rows = [
        row(1, "A", "R1", "Minerva standing right with spear and shield"),
        row(2, "A", "R2", "Minerva standing left with spear and shield"),  # 1 word from R1
        row(3, "A", "R3", "Mars walking right with spear and trophy"),  # 3 words from R1
        row(4, "B", "R4", "Minerva standing right with spear and shield"),  # other emperor
    ]
    records = read_manifest(write_manifest(tmp_path, rows))
    assert merge_classes(records, threshold=2) == {"R1": ["R1", "R2"]}
    assert merge_classes(records, threshold=0) == {}
    dataset = load_dataset(tmp_path / "manifest.csv")
    assert dataset.hierarchy.rics == ("R1", "R3", "R4")
    assert dataset.merged == {"R1": ["R1", "R2"]}


def test_folds_are_stratified_deterministic_and_refuse_small_classes(tmp_path):
    rows = [row(i, "A" if i % 4 < 2 else "B", f"R{i % 4}", f"d{i % 4}") for i in range(40)]
    dataset = load_dataset(write_manifest(tmp_path, rows), merge_threshold=0)
    splits = kfold_splits(dataset, folds=5, seed=1)
    assert len(splits) == 5
    tests = np.concatenate([test for _, test in splits])
    assert sorted(tests.tolist()) == list(range(40))
    for train, test in splits:
        assert np.bincount(dataset.ric_targets()[test]).tolist() == [2, 2, 2, 2]
        assert not set(train) & set(test)
    again = kfold_splits(dataset, folds=5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    with pytest.raises(ManifestError, match="fewer coins than the 20 folds"):
        kfold_splits(dataset, folds=20)
