"""PyTorch views of a coin collection: one side, one task, canonical images cached in memory.

The expensive part of the image pipeline (decode + coin-disc background removal + square
resize, ``denarius.engine.preprocess.canonical_image``) runs once per image; the result, a
(resize, resize, 3) uint8 array, is kept in memory and shared between epochs, folds and
the two tasks. Every item then only costs a crop (random with the caller's RNG for
training, centre for evaluation) and ``denarius.engine.preprocess.normalize``: no second copy of
any preprocessing lives here.

Memory: N x resize^2 x 3 bytes per side (1,600 coins at resize 110: 58 MB per side).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from denarius.engine.bundle import SIDES
from denarius.engine.errors import InputError
from denarius.engine.preprocess import PreprocessSpec, canonical_image, crop_image, normalize

__all__ = ["SIDES", "TASK_SIDE", "canonical_images", "CoinSideDataset", "task_targets", "photometric_jitter"]

logger = logging.getLogger(__name__)

# The paper's two models: the emperor is read from the portrait, the RIC type from the reverse.
TASK_SIDE = {"emperor": "obverse", "ric": "reverse"}


def canonical_images(dataset, side: str, spec: PreprocessSpec, *, progress: bool = True, workers: int | None = None) -> np.ndarray:
    """Canonical images of one side of every coin of a ``denarius.training.data.Dataset``.

    Images are preprocessed on ``workers`` threads (default: the CPUs this process may use)
    with OpenCV's own inner threads set to 1 meanwhile, as the engine runs them: OpenCV
    releases the GIL, and one image per thread costs less CPU than OpenCV's parallel loops
    on images this small.

    Args:
        dataset: ``denarius.training.data.Dataset`` (records with ``obverse``/``reverse`` paths).
        side: "obverse" or "reverse".
        spec: preprocessing; only ``resize``, the background settings and the pipeline version matter here.
        workers: preprocessing threads.
    Returns:
        (N, spec.resize, spec.resize, 3) uint8 RGB, in record order.
    Raises:
        InputError: an image is missing or cannot be decoded; the message names the CSV row,
            the coin and the file (the first such record in manifest order), so it surfaces
            before any training starts.
    """
    if side not in SIDES:
        raise InputError(f"side must be one of {list(SIDES)}, got {side!r}")
    records = dataset.records
    out = np.empty((len(records), spec.resize, spec.resize, 3), np.uint8)

    def load(i: int) -> None:
        record = records[i]
        path = getattr(record, side)
        try:
            out[i] = canonical_image(path, spec, side=side)
        except InputError as error:
            raise InputError(
                f"manifest row {record.row} (coin {record.coin_id!r}): {path}: {error.reason}", side=side
            ) from None

    threads = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="denarius-canonical") as pool:
            done = pool.map(load, range(len(records)))  # in record order: the first bad record raises first
            for _ in tqdm(done, total=len(records), desc=f"preprocess {side}", unit="img", disable=not progress, leave=False):
                pass
    finally:
        cv2.setNumThreads(previous)
    return out


def task_targets(dataset, task: str) -> np.ndarray:
    """(N,) int64 class indices of ``task`` ("emperor" or "ric") for every coin."""
    if task == "emperor":
        return np.asarray(dataset.emperor_targets(), np.int64)
    if task == "ric":
        return np.asarray(dataset.ric_targets(), np.int64)
    raise InputError(f"task must be one of {list(TASK_SIDE)}, got {task!r}")


def photometric_jitter(crop: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0) -> np.ndarray:
    """Random brightness, colour cast and saturation of a (H, W, 3) uint8 crop -> same shape/dtype.

    Coins of one class come in silver, bronze, gold or green patina, under any light; the
    jitter teaches the network to ignore that. Every operation is a gain or a blend with the
    grey image, so the blanked background (0) stays 0.
    """
    image = crop.astype(np.float32)
    brightness = rng.uniform(1.0 - 0.4 * strength, 1.0 + 0.4 * strength)
    cast = rng.uniform(1.0 - 0.15 * strength, 1.0 + 0.15 * strength, size=3).astype(np.float32)
    saturation = 0.0 if rng.random() < 0.2 * strength else rng.uniform(1.0 - 0.6 * strength, 1.0 + 0.3 * strength)
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    image = grey[..., None] + saturation * (image - grey[..., None])
    image = image * (brightness * cast)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


class CoinSideDataset(torch.utils.data.Dataset):
    """Network inputs of one coin side with their class indices.

    ``dataset[i]`` -> ``(image, target)``: image float32 tensor (3, crop, crop) normalised
    by ``spec``, target int64 scalar tensor.

    Training crops are random and drawn from ``self.rng`` (a ``numpy.random.Generator``);
    call :meth:`set_rng` at the start of every epoch with a generator seeded from
    (seed, epoch) so that a run, and a resumed run, are reproducible. Use it with
    ``num_workers=0`` (the RNG lives in this process). With ``rng=None`` crops are centred.

    Args:
        canonical: (M, resize, resize, 3) uint8, e.g. from :func:`canonical_images`.
        targets: (M,) int64 class indices.
        spec: preprocessing spec (crop size, mean, std).
        indices: the rows of ``canonical``/``targets`` this dataset exposes (default all);
            the arrays are not copied, so folds share one cache.
        rng: random crops when given, centre crops when None.
        jitter: photometric jitter strength applied with the random crops (0: none); see
            :func:`photometric_jitter`. Never applied to centre crops.
    """

    def __init__(
        self,
        canonical: np.ndarray,
        targets: np.ndarray,
        spec: PreprocessSpec,
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        jitter: float = 0.0,
    ):
        if canonical.ndim != 4 or canonical.shape[1:] != (spec.resize, spec.resize, 3) or canonical.dtype != np.uint8:
            raise InputError(
                f"canonical images must be (N, {spec.resize}, {spec.resize}, 3) uint8, "
                f"got {canonical.shape} {canonical.dtype}"
            )
        if len(targets) != len(canonical):
            raise InputError(f"{len(targets)} targets for {len(canonical)} images")
        self.canonical = canonical
        self.targets = np.asarray(targets, np.int64)
        self.spec = spec
        self.indices = np.arange(len(canonical)) if indices is None else np.asarray(indices, np.int64)
        self.rng = rng
        self.jitter = float(jitter)

    def set_rng(self, rng: np.random.Generator | None) -> None:
        """Random crops from ``rng`` from now on (None: centre crops)."""
        self.rng = rng

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.indices[i]
        crop = crop_image(self.canonical[row], self.spec, rng=self.rng)  # (crop, crop, 3) uint8
        if self.rng is not None and self.jitter > 0:
            crop = photometric_jitter(crop, self.rng, strength=self.jitter)
        image = normalize(crop, self.spec)  # (3, crop, crop) float32
        return torch.from_numpy(image), torch.tensor(self.targets[row])

    @property
    def labels(self) -> np.ndarray:
        """(len(self),) int64 class index of every item, in item order."""
        return self.targets[self.indices]
