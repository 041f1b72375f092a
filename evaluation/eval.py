"""Scores of the landmark methods against a synthetic set's ground truth.

Input: a folder written by ``denarius synth`` (``manifest.csv`` with ``coin_id, obverse,
reverse, emperor, ric`` and ``landmarks.jsonl``: per image ``coin_id, side, width, height,
regions: [{word, discriminative, polygon: [[x, y], ...]}]`` in stored-image pixels).
Polygons are mapped into the network's crop with :func:`denarius.engine.landmarks.geometry.crop_transform`
(the same affine map as preprocessing).

Per method and window size:

- pointing game: the heatmap's maximum lies within 15 px (at 224-px scale, i.e.
  ``15 * crop / 224`` crop pixels) of a discriminative polygon (images without one are skipped);
- energy: the fraction of the heatmap's mass inside the discriminative polygons;
- deletion AUC: p(c) as the most salient pixels are removed first (0, 1/n, ..., 1 of the
  pixels; removed = replaced by the reference, as in the methods), averaged with the
  trapezoid rule; lower is better; needs no ground truth;
- vacuous rate (optimised): images whose reference image (everything removed) already
  satisfies the constraint, so the optimum is the empty mask (a weak model, or a class
  recognisable without detail, or epsilon >= p(c));
- seconds per image (wall time of the method's batched call / images) and forward-pass
  equivalents per image (forward 1, forward + backward 3; deletion passes not included).

Per side and ground-truth part (the first word of a region, e.g. "head", "bust", "legend",
"owl"), independent of any method:

- reliance: p(c) with that part's polygons replaced by the reference, against p(c) of the
  whole image; a part the model needs drops p(c) far for its area;
- maxima: for each method (headline window), the share of images whose heatmap maximum
  lies inside a polygon of that part ("(none)": inside none of them). This says where a
  method points when the pointing game counts a miss.

The class explained is the coin's true class (emperor for the obverse, RIC for the
reverse, mapped through the bundle's ``extra.merged`` table of merged RIC labels) when the
model knows it, else the predicted class.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.bundle import SIDES
from denarius.engine.errors import ConfigError, InputError
from denarius.engine.landmarks import composition
from denarius.engine.landmarks.api import METHODS, LandmarkConfig, compute_landmarks, make_regions
from denarius.evaluation.figures import grid, write_png
from denarius.engine.landmarks.geometry import crop_transform
from denarius.evaluation.metrics import (
    NO_PART, deletion_auc, deletion_curve, energy, part_reliance, parts_at_maximum, parts_in_crop, pointing_hit, polygon_mask,
    polygons_in_crop,
)
from denarius.engine.landmarks.model import GradientModel
from denarius.engine.landmarks.optimizer import OptimizerConfig
from denarius.evaluation.path_scores import PATH_CHECKPOINTS, PathScores, plot_path
from denarius.engine.preprocess import canonical_image, crop_image

__all__ = ["EvalConfig", "evaluate", "load_ground_truth"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Settings of :func:`evaluate`.

    Attributes:
        methods: subset of ``METHODS``. windows: window sizes (the first is the headline).
        stride: window stride. epsilon: optimiser epsilon.
        reference: what removed regions become ("blur" or "black"), for the optimiser,
            occlusion and the deletion curve alike.
        sides: which sides to score ("obverse", "reverse").
        limit: at most this many images per side (None: all).
        tolerance: pointing-game tolerance in px at 224-px scale.
        deletion_steps: points of the deletion curve minus one.
        batch: images per landmark call. figure_rows: coins in the Fig. 7 figure.
        guidebooks: write class guidebooks (mean optimised map over the coins of one
            label, over a representative coin) for this many most frequent labels per side.
        optimizer: optimiser settings.
        path_checkpoints: iteration counts at which the optimised heatmap (headline window)
            is also scored in the pointing game, as if the optimiser had stopped there
            (see :mod:`denarius.evaluation.path_scores`); () to skip.
    """

    methods: tuple[str, ...] = METHODS
    windows: tuple[int, ...] = (11, 21)
    stride: int = 3
    epsilon: float = 0.5
    reference: str = "blur"
    sides: tuple[str, ...] = SIDES
    limit: int | None = None
    tolerance: float = 15.0
    deletion_steps: int = 20
    batch: int = 8
    figure_rows: int = 4
    guidebooks: int = 2
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    path_checkpoints: tuple[int, ...] = PATH_CHECKPOINTS

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"unknown landmark methods {unknown}; valid methods: {', '.join(METHODS)}")
        bad = [s for s in self.sides if s not in SIDES]
        if bad or not self.sides:
            raise ConfigError(f"unknown sides {bad}; valid sides: {', '.join(SIDES)}")
        if not self.windows or min(self.windows) < 1:
            raise ConfigError(f"windows must be positive sizes, got {self.windows}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.deletion_steps < 1 or self.batch < 1:
            raise ConfigError("deletion_steps and batch must be >= 1")


# ------------------------------------------------------------------ data


@dataclass
class _Item:
    coin_id: str
    side: str
    path: Path
    label: str
    regions: list


def load_ground_truth(synth_dir: Path) -> list[_Item]:
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
            items.append(_Item(record["coin_id"], side, synth_dir / row[side], label, record.get("regions", [])))
    return items


# ------------------------------------------------------------------ driver


def evaluate(bundle, synth_dir, out_dir, *, config: EvalConfig = EvalConfig(), progress: bool = True) -> dict:
    """Score every method on a synthetic set; writes scores.json, scores.md and figure.png.

    Args:
        bundle: a loaded :class:`denarius.engine.bundle.Bundle` with gradient graphs.
        synth_dir: folder written by ``denarius synth``. out_dir: output folder.
    Returns:
        the scores dict written to ``scores.json``.
    """
    from tqdm import tqdm

    from denarius.engine.imageio import decode_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = load_ground_truth(Path(synth_dir))
    headline = config.windows[0]
    # RIC labels merged at training time (near-duplicate descriptions) -> their class label
    merged = (getattr(bundle, "extra", None) or {}).get("merged") or {}
    merged_into = {original: label for label, originals in merged.items() for original in originals}
    sums: dict = defaultdict(lambda: defaultdict(list))  # (side, method, window) -> metric -> values
    figure_rows: list = []
    by_label: dict = defaultdict(list)  # (side, label) -> headline optimised maps
    reliance: dict = defaultdict(lambda: defaultdict(list))  # side -> part -> [(p_full, p_removed, area)]
    maxima: dict = defaultdict(lambda: defaultdict(int))  # (side, method) -> part -> images
    path_scores = PathScores(config.path_checkpoints)
    images_done = 0
    for side in config.sides:
        side_items = [it for it in items if it.side == side][: config.limit]
        if not side_items:
            continue
        name = GradientModel.model_for_side(bundle, side)
        with GradientModel.from_bundle(bundle, name) as model:
            spec = model.spec
            tolerance_px = config.tolerance * spec.crop / 224.0
            batches = [side_items[i : i + config.batch] for i in range(0, len(side_items), config.batch)]
            for batch in tqdm(batches, desc=f"landmarks-eval {side}", unit="batch", disable=not progress):
                crops, inside, discriminative, targets, parts = [], [], [], [], []
                for it in batch:
                    rgb = decode_image(it.path, max_pixels=spec.max_pixels, min_side=spec.min_side)
                    crops.append(crop_image(canonical_image(rgb, spec), spec))
                    matrix = crop_transform(rgb, spec)
                    parts.append(parts_in_crop(it.regions, matrix))
                    polygons = polygons_in_crop(it.regions, matrix)
                    discriminative.append(polygons)
                    inside.append(polygon_mask(polygons, (spec.crop, spec.crop)))
                    label = merged_into.get(it.label, it.label)
                    targets.append(label if label in model.classes else None)
                crops = np.stack(crops)
                references = composition.reference_images(crops, config.reference)
                images_done += len(batch)
                row_tiles: dict = defaultdict(dict)
                for window in config.windows:
                    for method in config.methods:
                        lc = LandmarkConfig(
                            method=method, window=window, stride=config.stride, epsilon=config.epsilon,
                            reference=config.reference, optimizer=config.optimizer,
                        )
                        along_path = method == "optimized" and window == headline and config.path_checkpoints
                        path_regions = make_regions(lc, crops[0]) if along_path else None  # windows: the same for every crop
                        before = model.forward_equivalents
                        start = time.perf_counter()
                        maps = compute_landmarks(model, crops, config=lc, targets=targets, checkpoints=config.path_checkpoints if along_path else ())
                        seconds = time.perf_counter() - start
                        cost = model.forward_equivalents - before
                        bucket = sums[(side, method, window)]
                        bucket["seconds"].append(seconds)
                        bucket["forward"].append(cost)
                        bucket["images"].append(len(batch))
                        for i, m in enumerate(maps):
                            bucket["vacuous"].append(bool(m.vacuous))
                            if discriminative[i]:
                                bucket["pointing"].append(pointing_hit(m.heatmap, discriminative[i], tolerance_px=tolerance_px))
                                bucket["energy"].append(energy(m.heatmap, inside[i]))
                                if along_path:
                                    path_scores.add(side, m, path_regions, discriminative[i], tolerance_px=tolerance_px)
                            reference = None if references is None else references[i]
                            curve = deletion_curve(model, crops[i], m.heatmap, m.target, steps=config.deletion_steps, reference=reference)
                            bucket["deletion"].append(deletion_auc(curve))
                            if window == headline:
                                for part in parts_at_maximum(m.heatmap, parts[i]):
                                    maxima[(side, method)][part] += 1
                                if method == config.methods[0]:  # once per image: the class it explained
                                    for part, (p_removed, area) in part_reliance(model, crops[i], parts[i], target=m.target, reference=reference).items():
                                        reliance[side][part].append((m.p_full, p_removed, area))
                            if len(figure_rows) < config.figure_rows:
                                row_tiles[i][(method, window)] = (m.overlay(), m.p_full)
                            if method == "optimized" and window == headline and config.guidebooks and targets[i] is not None:
                                by_label[(side, batch[i].label)].append(m)
                for i in sorted(row_tiles):
                    if len(figure_rows) < config.figure_rows:
                        figure_rows.append((crops[i], discriminative[i], row_tiles[i], f"{batch[i].coin_id} {side}"))
    if images_done == 0:
        raise InputError(f"no images for sides {config.sides} in {synth_dir}")

    def summary(method: str, window: int, sides=config.sides) -> dict:
        bucket = defaultdict(list)
        for side in sides:
            for key, values in sums[(side, method, window)].items():
                bucket[key] += values
        images = sum(bucket["images"])
        if not images:
            return None
        mean = lambda values: float(np.mean(values)) if values else None  # noqa: E731
        return {
            "pointing_game": mean(bucket["pointing"]),
            "energy": mean(bucket["energy"]),
            "deletion_auc": mean(bucket["deletion"]),
            "seconds_per_image": sum(bucket["seconds"]) / images,
            "forward_equivalents": sum(bucket["forward"]) / images,
            "images": images,
            "images_with_ground_truth": len(bucket["pointing"]),
            "vacuous_rate": mean(bucket["vacuous"]),
        }

    scores = {
        "bundle": str(bundle.path),
        "bundle_version": bundle.version,
        "synth_dir": str(synth_dir),
        "images": images_done,
        "sides": list(config.sides),
        "window": headline,
        "stride": config.stride,
        "epsilon": config.epsilon,
        "reference": config.reference,
        "tolerance_px_at_224": config.tolerance,
        "backend": "onnxruntime CPUExecutionProvider fp32",
        "hardware": f"{platform.processor() or platform.machine()}, {_cpu_count()} CPU cores",
        "methods": {m: summary(m, headline) for m in config.methods},
        "by_window": {str(w): {m: summary(m, w) for m in config.methods} for w in config.windows},
        "by_side": {
            side: {str(w): {m: summary(m, w, (side,)) for m in config.methods} for w in config.windows} for side in config.sides
        },
    }
    images_scored = {(side, method): sum(sums[(side, method, headline)]["images"]) for side in config.sides for method in config.methods}
    scores["parts"] = _part_scores(reliance, maxima, images_scored, config.methods)
    scores["path"] = path_scores.summary()
    scores["guidebooks"] = _guidebooks(by_label, out_dir, config.guidebooks)
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    (out_dir / "scores.md").write_text(_markdown(scores))
    if figure_rows:
        write_png(out_dir / "figure.png", _figure(figure_rows, config))
    if scores["path"]:
        plot_path(scores, out_dir / "path.png")
    return scores


def _part_scores(reliance: dict, maxima: dict, images_scored: dict, methods) -> dict:
    """side -> part -> {images, p_full, p_removed, area, maximum_inside: {method: share}},
    parts by frequency, then ``NO_PART`` (maxima inside no part; reliance does not apply).

    Args:
        reliance: side -> part -> [(p_full, p_removed, area)] per image with that part.
        maxima: (side, method) -> part -> images whose heatmap maximum lies in that part.
        images_scored: (side, method) -> images scored.
    """
    scores = {}
    for side, by_part in reliance.items():
        rows = {}
        for part, values in sorted(by_part.items(), key=lambda kv: -len(kv[1])):
            p_full, p_removed, area = np.mean(np.asarray(values, np.float64), axis=0)
            rows[part] = {"images": len(values), "p_full": float(p_full), "p_removed": float(p_removed), "area": float(area)}
        rows[NO_PART] = {}
        for part, row in rows.items():
            row["maximum_inside"] = {
                method: maxima[(side, method)].get(part, 0) / images_scored[(side, method)]
                for method in methods if images_scored[(side, method)]
            }
        scores[side] = rows
    return scores


def _guidebooks(by_label: dict, out_dir: Path, count: int) -> list[str]:
    from denarius.evaluation.guidebook import guidebook_from_maps

    written = []
    for side in SIDES:
        labels = sorted(((len(maps), label) for (s, label), maps in by_label.items() if s == side), key=lambda t: (-t[0], t[1]))
        for _, label in labels[:count]:
            book = guidebook_from_maps(by_label[(side, label)], label=label)
            safe = "".join(ch if ch.isalnum() else "_" for ch in label).strip("_")
            written.append(str(book.save_png(out_dir / f"guidebook_{side}_{safe}.png")))
    return written


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _markdown(scores: dict) -> str:
    lines = [
        f"Landmark scores on {scores['synth_dir']} ({scores['images']} images, sides {', '.join(scores['sides'])}), "
        f"bundle {scores['bundle_version']}, stride {scores['stride']}, epsilon {scores['epsilon']}, reference {scores['reference']}, {scores['backend']}, {scores['hardware']}.",
        "",
        "| side | window | method | pointing game | energy | deletion AUC (lower is better) | s / image | forward equivalents / image | vacuous |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tables = [("all", scores["by_window"])] + (list(scores["by_side"].items()) if len(scores["by_side"]) > 1 else [])
    for side, by_window in tables:
        for window, methods in by_window.items():
            for method, s in methods.items():
                if s is None:
                    continue
                lines.append(
                    f"| {side} | {window} | {method} | {_fmt(s['pointing_game'])} | {_fmt(s['energy'])} | {_fmt(s['deletion_auc'])} | "
                    f"{_fmt(s['seconds_per_image'], 3)} | {s['forward_equivalents']:.0f} | {_fmt(s['vacuous_rate'], 2) if method == 'optimized' else '-'} |"
                )
    lines += ["", "vacuous: share of images whose reference image (every region removed) already satisfies the constraint, "
              "so the empty mask is optimal; the optimised heatmap (persistence) still ranks the regions."]
    for side, parts in scores.get("parts", {}).items():
        methods = list(scores["methods"])
        total = max((v.get("images", 0) for v in parts.values()), default=0)
        lines += [
            "",
            f"Ground-truth parts, {side}: what the model needs (p(c) with the part replaced by the reference) and where "
            f"each method's heatmap maximum lies (window {scores['window']}). Parts on at least 5% of the images.",
            "",
            "| part | images | area | p(c) whole | p(c) part removed | " + " | ".join(f"max in part: {m}" for m in methods) + " |",
            "|---|---|---|---|---|" + "---|" * len(methods),
        ]
        for part, v in parts.items():
            if part != NO_PART and v["images"] < 0.05 * total:
                continue
            cells = [str(v.get("images", "-")), _fmt(v.get("area")), _fmt(v.get("p_full")), _fmt(v.get("p_removed"))]
            lines.append(f"| {part} | " + " | ".join(cells) + " | " + " | ".join(_fmt(v["maximum_inside"].get(m), 2) for m in methods) + " |")
    if scores.get("path"):
        checkpoints = next(iter(scores["path"].values()))["iterations"]
        lines += [
            "",
            f"Pointing game along the optimiser's path (window {scores['window']}): the optimised heatmap had the optimiser "
            "stopped after t iterations (rows that stopped sooner keep their final heatmap). See path.png.",
            "",
            "| side | images | " + " | ".join(f"t = {t}" for t in checkpoints) + " |",
            "|---|---|" + "---|" * len(checkpoints),
        ]
        for side, curve in scores["path"].items():
            lines.append(f"| {side} | {curve['images']} | " + " | ".join(_fmt(v) for v in curve["pointing_game"]) + " |")
    return "\n".join(lines) + "\n"


def _figure(rows, config: EvalConfig) -> np.ndarray:
    """Paper Fig. 7 layout: input with ground truth, then each method for each window."""
    columns = [(m, w) for w in config.windows for m in config.methods]
    tiles, captions = [], []
    for crop, polygons, maps, title in rows:
        shown = np.ascontiguousarray(crop.copy())
        for p in polygons:
            cv2.polylines(shown, [np.round(p).astype(np.int32).reshape(-1, 1, 2)], True, (0, 255, 0), 1)
        row, caption = [shown], [title]
        for key in columns:
            overlay_rgb, p_full = maps.get(key, (np.zeros_like(crop), 0.0))
            row.append(overlay_rgb)
            caption.append(f"p(c)={p_full:.3f}")
        tiles.append(row)
        captions.append(caption)
    titles = ["input + ground truth"] + [f"{m} {w}x{w}" for m, w in columns]
    return grid(tiles, captions=captions, column_titles=titles, tile_size=160)
