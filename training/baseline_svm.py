"""The paper's baseline: dense SIFT -> k-means codebook -> polar-pyramid bag of words -> linear SVM.

Pipeline for one side of a coin (canonical image: coin centred, background blanked)::

    grey (S, S) uint8
      -> dense SIFT: cv2.SIFT_create().compute() at a grid of keypoints (spacing ``step``,
         size ``patch_size``) inside the coin disc            (P, 128) float32
      -> visual words: sklearn MiniBatchKMeans codebook (``codebook_size`` words), fitted on
         the training images of the fold only                 (P,) int
      -> polar spatial pyramid about the coin centre: the whole disc plus ``rings`` x ``sectors``
         cells (2 radial rings of equal width x 6 angular sectors of 60 degrees)
                                                              (1 + rings*sectors) histograms of K
      -> each histogram divided by the number of keypoints, square-rooted (Hellinger map, so a
         linear SVM acts like a Bhattacharyya kernel), the whole vector L2-normalised
                                                              ((1 + rings*sectors) * K,) float32
      -> sklearn LinearSVC (one-vs-rest), C = ``C``.

Probabilities for the hierarchical combination: the softmax of the SVM decision values,
``p = softmax(decision)``. Because the hierarchy's ranking only depends on
``log p_e[parent(r)] + log p_r[r] = d_e + d_r - const``, this choice makes the Hierarchy
accuracy independent of any softmax temperature shared by both models; calibrating with
``CalibratedClassifierCV`` would need several coins per class inside every training fold
and triple the training time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from tqdm.auto import tqdm

from denarius.engine.errors import ConfigError
from denarius.engine.scoring import softmax64 as softmax  # the one softmax, re-exported here

__all__ = ["SVMConfig", "grid_keypoints", "dense_sift", "extract_descriptors", "BowSVM", "softmax"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SVMConfig:
    """Hyper-parameters of the SIFT + bag-of-words + SVM baseline.

    Attributes:
        image_size: side of the canonical image SIFT runs on (px).
        step: grid spacing of the dense keypoints (px).
        patch_size: SIFT keypoint diameter (px); the descriptor covers about this area.
        codebook_size: number of visual words K.
        kmeans_samples: at most this many training descriptors fit the codebook.
        rings, sectors: polar pyramid cells (the paper: 2 x 6).
        C: LinearSVC regularisation.
        balanced: ``class_weight="balanced"`` (as the CNN's ``TrainConfig.balance``).
        seed: codebook and sampling seed.
        threads: BLAS/OpenMP/OpenCV threads for k-means, the SVM and SIFT. On a shared,
            oversubscribed CPU more threads than free cores make scikit-learn's OpenMP
            k-means over 100x slower (measured: 20 s instead of 0.15 s on a toy fit), so 1.
    """

    image_size: int = 128
    step: int = 6
    patch_size: int = 12
    codebook_size: int = 256
    kmeans_samples: int = 60_000
    rings: int = 2
    sectors: int = 6
    C: float = 1.0
    balanced: bool = True
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        if self.image_size < 32 or self.step < 1 or self.patch_size < 4:
            raise ConfigError("image_size >= 32, step >= 1 and patch_size >= 4 are required")
        if self.codebook_size < 2 or self.kmeans_samples < self.codebook_size:
            raise ConfigError(f"codebook_size must be >= 2 and <= kmeans_samples, got {self.codebook_size}")
        if self.rings < 1 or self.sectors < 1 or not self.C > 0 or self.threads < 1:
            raise ConfigError("rings >= 1, sectors >= 1, C > 0 and threads >= 1 are required")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def cells(self) -> int:
        """Histograms per image: the whole disc + rings x sectors."""
        return 1 + self.rings * self.sectors


def grid_keypoints(config: SVMConfig) -> tuple[np.ndarray, np.ndarray]:
    """Grid keypoints inside the coin disc and their polar-pyramid cell.

    Returns:
        xy: (P, 2) float32 pixel coordinates; cell: (P,) int64 in [0, rings*sectors).
    """
    size = config.image_size
    centre = (size - 1) / 2.0
    radius = size / 2.0 - config.patch_size / 2.0  # descriptor support stays in the image
    coords = np.arange(config.patch_size / 2.0, size - config.patch_size / 2.0 + 1e-6, config.step)
    xx, yy = np.meshgrid(coords, coords)
    dx, dy = xx.ravel() - centre, yy.ravel() - centre
    r = np.hypot(dx, dy)
    keep = r <= radius
    dx, dy, r = dx[keep], dy[keep], r[keep]
    ring = np.minimum((r / radius * config.rings).astype(np.int64), config.rings - 1)
    angle = np.mod(np.arctan2(dy, dx), 2 * np.pi)
    sector = np.minimum((angle / (2 * np.pi) * config.sectors).astype(np.int64), config.sectors - 1)
    xy = np.stack([dx + centre, dy + centre], axis=1).astype(np.float32)
    return xy, ring * config.sectors + sector


def dense_sift(grey: np.ndarray, xy: np.ndarray, *, patch_size: float, sift=None) -> np.ndarray:
    """SIFT descriptors at fixed keypoints: grey (S, S) uint8, xy (P, 2) -> (P, 128) float32."""
    sift = sift or cv2.SIFT_create()
    keypoints = [cv2.KeyPoint(float(x), float(y), float(patch_size)) for x, y in xy]
    found, descriptors = sift.compute(grey, keypoints)
    if descriptors is None or len(found) != len(keypoints):
        raise ConfigError(
            f"SIFT dropped keypoints ({0 if found is None else len(found)} of {len(keypoints)}); keep the grid inside the image")
    return descriptors.astype(np.float32)


def extract_descriptors(canonical: np.ndarray, config: SVMConfig, *, progress: bool = True) -> np.ndarray:
    """Dense SIFT of every image.

    Args:
        canonical: (N, S, S, 3) uint8 RGB canonical images; resized to ``config.image_size``
            when S differs.
    Returns:
        (N, P, 128) uint8 descriptors (OpenCV's SIFT values lie in [0, 255]; uint8 keeps a
        1,600-coin side under 60 MB).
    """
    xy, _ = grid_keypoints(config)
    sift = cv2.SIFT_create()
    out = np.empty((len(canonical), len(xy), 128), np.uint8)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(config.threads)
    try:
        for i, rgb in enumerate(tqdm(canonical, desc="dense SIFT", unit="img", disable=not progress, leave=False)):
            if rgb.shape[0] != config.image_size:
                rgb = cv2.resize(rgb, (config.image_size, config.image_size), interpolation=cv2.INTER_AREA)
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            out[i] = np.clip(np.rint(dense_sift(grey, xy, patch_size=config.patch_size, sift=sift)), 0, 255)
    finally:
        cv2.setNumThreads(previous)
    return out


class BowSVM:
    """Codebook + polar-pyramid encoder + LinearSVC for one task.

    ``fit(descriptors (N, P, 128) uint8, targets (N,) int64)``, then
    ``decision_function(descriptors) -> (N, num_classes)`` and ``predict_proba`` (softmax of
    the decision values). Classes absent from the training data get the lowest score.
    """

    def __init__(self, config: SVMConfig, *, num_classes: int):
        self.config = config
        self.num_classes = num_classes
        _, self.cell = grid_keypoints(config)
        self.kmeans = None
        self.svm = None

    def encode(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, P, 128) descriptors -> (N, cells * K) float32 pyramid histograms."""
        n, p, _ = descriptors.shape
        k = self.config.codebook_size
        words = self.kmeans.predict(descriptors.reshape(n * p, 128).astype(np.float32)).reshape(n, p)
        cells = self.config.cells
        hist = np.zeros((n, cells, k), np.float32)
        rows = np.repeat(np.arange(n), p)
        np.add.at(hist, (rows, np.zeros(n * p, np.int64), words.ravel()), 1.0)  # whole disc
        np.add.at(hist, (rows, np.tile(self.cell + 1, n), words.ravel()), 1.0)  # polar cells
        hist = np.sqrt(hist / p).reshape(n, cells * k)
        norms = np.linalg.norm(hist, axis=1, keepdims=True)
        return hist / np.maximum(norms, 1e-12)

    def fit(self, descriptors: np.ndarray, targets: np.ndarray) -> BowSVM:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(self.config.threads):
            return self._fit(descriptors, targets)

    def _fit(self, descriptors: np.ndarray, targets: np.ndarray) -> BowSVM:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.svm import LinearSVC

        rng = np.random.default_rng(self.config.seed)
        flat = descriptors.reshape(-1, 128)
        take = rng.choice(len(flat), size=min(len(flat), self.config.kmeans_samples), replace=False)
        self.kmeans = MiniBatchKMeans(
            n_clusters=self.config.codebook_size, random_state=self.config.seed, batch_size=4096, n_init=3,
        ).fit(flat[np.sort(take)].astype(np.float32))
        features = self.encode(descriptors)
        self.svm = LinearSVC(
            C=self.config.C, dual="auto", random_state=self.config.seed, max_iter=5000,
            class_weight="balanced" if self.config.balanced else None,
        )
        targets = np.asarray(targets, np.int64)
        if len(np.unique(targets)) < 2:
            raise ConfigError("the SVM needs at least two classes in the training data")
        self.svm.fit(features, targets)
        return self

    def decision_function(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, num_classes) float64 LinearSVC decision values."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(self.config.threads):
            scores = self.svm.decision_function(self.encode(descriptors))  # (N, C_seen) or (N,)
        if scores.ndim == 1:  # binary LinearSVC: one score for classes_[1]
            scores = np.stack([-scores, scores], axis=1)
        full = np.full((len(scores), self.num_classes), scores.min() - 1.0, np.float64)
        full[:, self.svm.classes_] = scores
        return full

    def predict_proba(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, num_classes) float64 softmax of the decision values."""
        return softmax(self.decision_function(descriptors))
