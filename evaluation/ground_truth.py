"""Ground truth of a synthetic set, read and mapped into the network's crop.

``denarius synth`` writes ``manifest.csv`` (``coin_id, obverse, reverse, emperor, ric``) and
``landmarks.jsonl`` (per image ``coin_id, side, width, height, regions: [{word,
discriminative, polygon: [[x, y], ...]}]`` in stored-image pixels). :func:`load_ground_truth`
reads them; :func:`truth_in_crop` maps one image's polygons into the crop with
:func:`denarius.engine.landmarks.geometry.crop_transform` (the same affine map as
preprocessing) and adds what the pointing game needs: the discriminative mask, TorchRay's
hit map and the coin disc.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denarius.engine.errors import InputError
from denarius.engine.landmarks.geometry import crop_transform
from denarius.engine.preprocess import canonical_transform
from denarius.evaluation.metrics import parts_in_crop, polygon_mask, polygons_in_crop
from denarius.evaluation.pointing import coin_mask_in_crop, hit_map

__all__ = ["SynthImage", "Truth", "load_ground_truth", "drop_shared_images", "truth_in_crop"]


@dataclass
class SynthImage:
    """One image of a synthetic set: its coin, side, file, true label and landmark regions."""

    coin_id: str
    side: str
    path: Path
    label: str
    regions: list


def load_ground_truth(synth_dir: Path) -> list[SynthImage]:
    """Images of a synthetic set with their landmark polygons (InputError when files are missing)."""
    synth_dir = Path(synth_dir)
    manifest = synth_dir / "manifest.csv"
    landmarks = synth_dir / "landmarks.jsonl"
    for path in (manifest, landmarks):
        if not path.is_file():
            raise InputError(f"{path} not found; SYNTH_DIR must be a folder written by `denarius synth`")
    coins = {}
    with manifest.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            coins[row["coin_id"]] = row
    items = []
    with landmarks.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            row = coins.get(record["coin_id"])
            if row is None:
                raise InputError(f"{landmarks}:{number}: coin_id {record['coin_id']!r} is not in {manifest}")
            side = record["side"]
            label = row["emperor"] if side == "obverse" else row["ric"]
            items.append(SynthImage(record["coin_id"], side, synth_dir / row[side], label, record.get("regions", [])))
    return items


def drop_shared_images(items: list[SynthImage], manifests) -> tuple[list[SynthImage], int]:
    """Held-out images only: drop every image byte-identical (sha256) to an image of ``manifests``.

    Two synthetic sets of one catalogue (same preset and seed, another ``--n-coins``) draw
    mostly different coins, but a few images can repeat byte for byte; scoring a model on
    its own training images would flatter it.

    Args:
        items: the images to score. manifests: dataset manifests (CSV) of the training sets.
    Returns:
        (the items whose bytes occur in no manifest, how many were dropped).
    Raises:
        ManifestError: a manifest is missing or invalid, or names a missing file.
    """
    from denarius.engine.bundle import sha256_file
    from denarius.engine.manifest import image_digests, read_manifest

    manifests = list(manifests)
    if not manifests:  # nothing to check against: no image is read
        return list(items), 0
    seen = set().union(*(image_digests(read_manifest(manifest)) for manifest in manifests))
    kept = [it for it in items if sha256_file(it.path) not in seen]
    return kept, len(items) - len(kept)


@dataclass
class Truth:
    """One image's ground truth in crop pixels."""

    polygons: list  # discriminative polygons, (n, 2) float32
    inside: np.ndarray  # (S, S) bool union of them
    hits: np.ndarray  # (S, S) bool: where a point hits by TorchRay's rule
    parts: dict  # part name -> polygons
    coin: np.ndarray  # (S, S) bool coin disc
    matrix: np.ndarray  # (2, 3) photo -> crop
    tolerance_px: float  # TorchRay's tolerance at this crop size


def truth_in_crop(item: SynthImage, rgb: np.ndarray, spec, *, tolerance_px: float) -> Truth:
    """The ground truth of ``item`` in the crop of ``spec``; ``rgb`` is its decoded (H, W, 3) uint8 photo."""
    matrix = crop_transform(rgb, spec)
    _, disc = canonical_transform(rgb, spec)
    polygons = polygons_in_crop(item.regions, matrix)
    inside = polygon_mask(polygons, (spec.crop, spec.crop))
    return Truth(polygons, inside, hit_map(inside, tolerance_px), parts_in_crop(item.regions, matrix),
                  coin_mask_in_crop(disc, matrix, spec.crop), matrix, tolerance_px)
