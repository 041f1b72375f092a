"""The dense SIFT + polar bag-of-words + linear SVM baseline."""

from __future__ import annotations

import numpy as np
import pytest

from denarius.engine.errors import ConfigError
from denarius.engine.preprocess import PreprocessSpec
from denarius.training.baseline_svm import BowSVM, SVMConfig, extract_descriptors, grid_keypoints, softmax
from denarius.training.data import kfold_splits, load_dataset
from denarius.training.datasets import canonical_images, task_targets
from denarius.training.metrics import mean_class_accuracy

SMALL = SVMConfig(image_size=96, step=6, patch_size=12, codebook_size=48, kmeans_samples=20_000)


def test_polar_grid_covers_the_disc_in_two_rings_of_six_sectors():
    xy, cell = grid_keypoints(SVMConfig())
    centre = (128 - 1) / 2
    r = np.hypot(xy[:, 0] - centre, xy[:, 1] - centre)
    assert r.max() <= 64 - 6 + 1e-6  # the descriptor support (12 px) stays inside the image
    assert set(cell.tolist()) == set(range(12))
    ring = cell // 6
    assert r[ring == 0].max() <= r[ring == 1].min() + 1e-6  # inner ring inside the outer one
    counts = np.bincount(cell % 6, minlength=6)
    assert counts.min() >= 0.8 * counts.max()  # 60-degree sectors get similar numbers of points
    # Sector 0 starts at angle 0 (to the right of the centre), counted towards +y.
    right = (xy[:, 0] > centre + 10) & (np.abs(xy[:, 1] - centre) < 3) & (xy[:, 1] >= centre)
    assert set((cell[right] % 6).tolist()) == {0}


def test_pyramid_histograms_are_hellinger_and_unit_length():
    rng = np.random.default_rng(0)
    config = SVMConfig(image_size=64, step=8, patch_size=12, codebook_size=4, kmeans_samples=100)
    points = len(grid_keypoints(config)[0])
    descriptors = rng.integers(0, 255, size=(6, points, 128)).astype(np.uint8)
    svm = BowSVM(config, num_classes=2).fit(descriptors, np.array([0, 1, 0, 1, 0, 1]))
    features = svm.encode(descriptors)
    assert features.shape == (6, 13 * 4)
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-6)
    # Whole-disc histogram: squared (before the final L2 norm) it sums to 1 over the words.
    whole = features[:, :4] ** 2
    assert np.allclose(whole / whole.sum(axis=1, keepdims=True), whole / (np.linalg.norm(features[:, :4], axis=1, keepdims=True) ** 2))
    assert svm.predict_proba(descriptors).shape == (6, 2)


def test_softmax_rows_sum_to_one_and_keep_the_ranking():
    scores = np.array([[1.0, -1.0, 0.5], [-3.0, 2.0, 2.5]])
    probs = softmax(scores)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (probs.argsort(axis=1) == scores.argsort(axis=1)).all()


def test_config_is_validated():
    with pytest.raises(ConfigError):
        SVMConfig(codebook_size=1)
    with pytest.raises(ConfigError):
        SVMConfig(rings=0)


def test_svm_fits_the_tiny_set(tiny_manifest):
    dataset = load_dataset(tiny_manifest)
    spec = PreprocessSpec(resize=SMALL.image_size, crop=SMALL.image_size)
    train, test = kfold_splits(dataset, folds=3, seed=0)[0]
    for task, side in (("emperor", "obverse"), ("ric", "reverse")):
        descriptors = extract_descriptors(canonical_images(dataset, side, spec, progress=False), SMALL, progress=False)
        targets = task_targets(dataset, task)
        classes = len(dataset.hierarchy.emperors if task == "emperor" else dataset.hierarchy.rics)
        svm = BowSVM(SMALL, num_classes=classes).fit(descriptors[train], targets[train])
        probs = svm.predict_proba(descriptors[test])
        assert probs.shape == (len(test), classes)
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-9)
        # ~43 training coins of a hard synthetic set: held-out accuracy is near chance here
        # (docs/results_bench.md has the bench numbers); the SVM must at least fit its training set.
        # Twice chance: since generator v2 moves portraits and field marks per die, the tiny set's
        # emperors fit at 0.62 (2.46x chance with 4 emperors; 2.5x held before v2).
        train_accuracy = mean_class_accuracy(targets[train], svm.decision_function(descriptors[train]).argmax(1), classes)
        assert train_accuracy > 2.0 / classes, (task, train_accuracy)
