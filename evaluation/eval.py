"""Scores of the landmark methods against a synthetic set's ground truth.

Input: a folder written by ``denarius synth`` (read and mapped into the crop by
:mod:`denarius.evaluation.ground_truth`). Our methods run through the
:class:`~denarius.engine.landmarks.service.LandmarkService` (its models, crops, region
cache, reference and masking operations); the methods scored are named in
:mod:`denarius.evaluation.methods` (add a variant there), the Captum peers in
:mod:`denarius.evaluation.peers`. Every figure (see :mod:`denarius.evaluation.summary`)
comes with a 95% bootstrap interval over images.

Per method and window size:

- pointing game (the earlier rule): the heatmap's maximum lies within 15 px (at 224-px
  scale, i.e. ``15 * crop / 224`` crop pixels) of a discriminative polygon (images without
  one are skipped);
- the pointing game by TorchRay's rule, its tie-robust variant and its difficult subset
  (the images where the centre point misses), beside the centre and random-point
  baselines (:mod:`denarius.evaluation.pointing`);
- energy: the fraction of the heatmap's mass inside the discriminative polygons;
- deletion AUC: p(c) as the most salient pixels are removed first (0, 1/n, ..., 1 of the
  pixels; removed = replaced by the reference, as in the methods), averaged with the
  trapezoid rule; lower is better; needs no ground truth;
- sufficiency: p(c) with only the top 5, 10, 20, 40% of the map kept, the rest the
  reference, and its AUC over q (:mod:`denarius.evaluation.sufficiency`); higher is better;
- vacuous rate (optimised): images whose reference image (everything removed) already
  satisfies the constraint, so the optimum is the empty mask (a weak model, or a class
  recognisable without detail, or epsilon >= p(c));
- seconds per image (wall time of the method's batched call / images) and forward-pass
  equivalents per image (forward 1, forward + backward 3; metric passes not included).

Per side and ground-truth part (the first word of a region, e.g. "head", "bust", "legend",
"owl"), independent of any method:

- reliance: p(c) with that part's polygons replaced by the reference, against p(c) of the
  whole image; a part the model needs drops p(c) far for its area;
- maxima: for each method (headline window), the share of images whose heatmap maximum
  lies inside a polygon of that part ("(none)": inside none of them). This says where a
  method points when the pointing game counts a miss.

The class explained is the coin's true class (emperor for the obverse, RIC for the
reverse, mapped through the bundle's ``extra.merged`` table of merged RIC labels) when the
model knows it, else the predicted class. The maps scored are saved per side
(:mod:`denarius.evaluation.heatmaps`).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.bundle import SIDES
from denarius.engine.errors import ConfigError, InputError
from denarius.engine.landmarks.api import LandmarkConfig
from denarius.engine.landmarks.optimizer import OptimizerConfig
from denarius.engine.landmarks.result import overlay
from denarius.engine.landmarks.service import LandmarkService
from denarius.evaluation.bootstrap import RESAMPLES, SEED, mean_interval
from denarius.evaluation.figures import grid, write_png
from denarius.evaluation.ground_truth import drop_shared_images, load_ground_truth, truth_in_crop
from denarius.evaluation.heatmaps import HeatmapStore
from denarius.evaluation.methods import EVAL_METHODS, check_methods, method_config
from denarius.evaluation.metrics import NO_PART, part_reliance, parts_at_maximum
from denarius.evaluation.path_scores import PATH_CHECKPOINTS, PathScores, plot_path
from denarius.evaluation.pointing import scaled_tolerance
from denarius.evaluation.scores_md import markdown
from denarius.evaluation.scoring import MapScorer, add_images
from denarius.evaluation.sufficiency import SUFFICIENCY_QS
from denarius.evaluation.summary import SideTable, baselines, summarize

__all__ = ["EvalConfig", "evaluate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Settings of :func:`evaluate`.

    Attributes:
        methods: names in :data:`denarius.evaluation.methods.EVAL_METHODS`.
        windows: window sizes (the first is the headline).
        stride: window stride. epsilon: optimiser epsilon.
        reference: what removed regions become ("blur" or "black"), for the optimiser,
            occlusion, the Captum baselines, the deletion curve and sufficiency alike.
        sides: which sides to score ("obverse", "reverse").
        limit: at most this many images per side (None: all).
        tolerance: pointing-game tolerance in px at 224-px scale (TorchRay's 15).
        deletion_steps: points of the deletion curve minus one.
        batch: images per landmark call. figure_rows: coins per side in the Fig. 7 figure.
        guidebooks: write class guidebooks (mean optimised map over the coins of one
            label, over a representative coin) for this many most frequent labels per side.
        optimizer: optimiser settings.
        path_checkpoints: iteration counts at which the optimised heatmap (headline window)
            is also scored in the pointing game, as if the optimiser had stopped there
            (see :mod:`denarius.evaluation.path_scores`); () to skip.
        peers: peer libraries to score beside ours (``("captum",)``; see
            :mod:`denarius.evaluation.peers`), on the headline window and stride.
        ig_steps: integration steps of the integrated-gradients peer.
        resamples, seed: the bootstrap's resamples and seed.
        backend: the LandmarkService's classifier backend ("auto", "ort-cpu", ...).
        save_heatmaps: write ``heatmaps_<side>.npz``.
        exclude_shared_with: training manifests; images byte-identical (sha256) to one of
            theirs are not scored (:func:`denarius.evaluation.ground_truth.drop_shared_images`).
    """

    methods: tuple[str, ...] = tuple(EVAL_METHODS)
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
    peers: tuple[str, ...] = ()
    ig_steps: int = 32
    resamples: int = RESAMPLES
    seed: int = SEED
    backend: str = "auto"
    save_heatmaps: bool = True
    exclude_shared_with: tuple[Path, ...] = ()

    def __post_init__(self):
        from denarius.evaluation.peers import PEERS

        check_methods(self.methods)
        bad = [s for s in self.sides if s not in SIDES]
        if bad or not self.sides:
            raise ConfigError(f"unknown sides {bad}; valid sides: {', '.join(SIDES)}")
        if not self.windows or min(self.windows) < 1:
            raise ConfigError(f"windows must be positive sizes, got {self.windows}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.deletion_steps < 1 or self.batch < 1:
            raise ConfigError("deletion_steps and batch must be >= 1")
        unknown = [p for p in self.peers if p not in PEERS]
        if unknown:
            raise ConfigError(f"unknown peers {unknown}; valid peers: {', '.join(PEERS)}")
        if self.resamples < 1 or self.ig_steps < 1:
            raise ConfigError(f"resamples and ig_steps must be >= 1, got {self.resamples}, {self.ig_steps}")


# ------------------------------------------------------------------ driver


def evaluate(bundle, synth_dir, out_dir, *, config: EvalConfig = EvalConfig(), progress: bool = True) -> dict:
    """Score every method on a synthetic set; writes scores.json, scores.md, figure.png and
    heatmaps_<side>.npz.

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
    items, shared = drop_shared_images(items, config.exclude_shared_with)
    headline = config.windows[0]
    keys = [(name, window) for window in config.windows for name in config.methods]
    # RIC labels merged at training time (near-duplicate descriptions) -> their class label
    merged = (getattr(bundle, "extra", None) or {}).get("merged") or {}
    merged_into = {original: label for label, originals in merged.items() for original in originals}
    tables: dict[str, SideTable] = {}
    figure_rows: list = []
    shown: dict[str, int] = {}  # side -> coins in the figure
    by_label: dict = {}  # (side, label) -> headline maps of the guidebook method
    reliance: dict = {}  # side -> part -> [(p_full, p_removed, area)]
    maxima: dict = {}  # (side, method) -> per image, the parts holding the heatmap's maximum
    path_scores = PathScores(config.path_checkpoints)
    peer_names: tuple[str, ...] = ()
    written: list[str] = []
    base = LandmarkConfig(stride=config.stride, epsilon=config.epsilon, reference=config.reference, optimizer=config.optimizer)
    with LandmarkService.open(bundle, backend=config.backend) as service:
        backend = f"{service.backend.name} {service.backend.precision} (gradient graphs on {service.gradient_kind})"
        for side in config.sides:
            side_items = [it for it in items if it.side == side][: config.limit]
            if not side_items:
                continue
            name = service.model_name(side)
            model = service.model(name)
            spec = model.spec
            tolerance_px = scaled_tolerance(config.tolerance, spec.crop)
            table = tables[side] = SideTable(side)
            store = HeatmapStore(side, tolerance_px=tolerance_px, crop_size=spec.crop, qs=SUFFICIENCY_QS) if config.save_heatmaps else None
            scorer = MapScorer(model, table, store, tolerance_px=tolerance_px, deletion_steps=config.deletion_steps)
            peers = _open_peers(bundle, name, config, headline)
            peer_names = tuple(peers.methods) if peers else ()
            batches = [side_items[i : i + config.batch] for i in range(0, len(side_items), config.batch)]
            for batch in tqdm(batches, desc=f"landmarks-eval {side}", unit="batch", disable=not progress):
                crops, truths, targets = [], [], []
                for it in batch:
                    rgb = decode_image(it.path, max_pixels=spec.max_pixels, min_side=spec.min_side)
                    crops.append(service.crop(rgb, side=side))
                    truths.append(truth_in_crop(it, rgb, spec, tolerance_px=tolerance_px))
                    label = merged_into.get(it.label, it.label)
                    targets.append(label if label in model.classes else None)
                crops = np.stack(crops)
                references = service.reference(crops, config.reference)
                row_tiles: dict = {}
                explained: list[int] = []
                for name_, window in keys:
                    method = EVAL_METHODS[name_]
                    lc = method_config(name_, replace(base, window=window))
                    along_path = method.path_scores and window == headline and bool(config.path_checkpoints)
                    before = model.forward_equivalents
                    start = time.perf_counter()
                    checkpoints = config.path_checkpoints if along_path else ()
                    maps = service.compute(crops, model=name, config=lc, targets=targets, checkpoints=checkpoints)
                    seconds = time.perf_counter() - start
                    key = f"{name_}@{window}"
                    table.cost[key].append((seconds, model.forward_equivalents - before, len(batch)))
                    if not explained:
                        explained = [m.target for m in maps]
                        add_images(table, store, batch, truths, maps)
                    path_regions = service.regions(lc, crops[0]) if along_path else None
                    for i, m in enumerate(maps):
                        reference = None if references is None else references[i]
                        scorer.add(key, m.heatmap, crop=crops[i], truth=truths[i], target=m.target, reference=reference,
                                   vacuous=m.vacuous if lc.method == "optimized" else None)
                        if along_path and truths[i].polygons:
                            path_scores.add(side, m, path_regions, truths[i].polygons, tolerance_px=tolerance_px)
                        if window == headline:
                            maxima.setdefault((side, name_), []).append(parts_at_maximum(m.heatmap, truths[i].parts))
                            if (name_, window) == keys[0]:  # once per image: what the model needs
                                removed = part_reliance(model, crops[i], truths[i].parts, target=m.target, reference=reference)
                                for part, (p_removed, area) in removed.items():
                                    reliance.setdefault(side, {}).setdefault(part, []).append((m.p_full, p_removed, area))
                            if method.guidebook and config.guidebooks and targets[i] is not None:
                                by_label.setdefault((side, batch[i].label), []).append(m)
                        if shown.get(side, 0) < config.figure_rows:
                            row_tiles.setdefault(i, {})[(name_, window)] = (m.overlay(), m.p_full)
                if peers:
                    peer_maps, peer_seconds = peers.heatmaps(crops, explained, references=references)
                    for key, batch_maps in peer_maps.items():
                        table.cost[key].append((peer_seconds[key], peers.forward_equivalents(key) * len(batch), len(batch)))
                        for i, heatmap in enumerate(batch_maps):
                            scorer.add(key, heatmap, crop=crops[i], truth=truths[i], target=explained[i],
                                       reference=None if references is None else references[i])
                            if i in row_tiles:
                                row_tiles[i][(key, headline)] = (overlay(crops[i], heatmap), float("nan"))
                for i in sorted(row_tiles):
                    if shown.get(side, 0) < config.figure_rows:
                        figure_rows.append((crops[i], truths[i].polygons, row_tiles[i], f"{batch[i].coin_id} {side}"))
                        shown[side] = shown.get(side, 0) + 1
            if store is not None:
                path = store.save(out_dir)
                if path is not None:
                    written.append(str(path))
        images_done = sum(len(t.labels) for t in tables.values())
        if images_done == 0:
            raise InputError(f"no images for sides {config.sides} in {synth_dir}")
        scores = _scores(bundle, synth_dir, config, tables, keys, peer_names, backend)
        scores["held_out"] = {"checked_against": [str(m) for m in config.exclude_shared_with], "images_shared_dropped": shared}
        scores["parts"] = _part_scores(reliance, maxima, config.methods, resamples=config.resamples, seed=config.seed)
        scores["path"] = path_scores.summary(resamples=config.resamples, seed=config.seed)
        scores["guidebooks"] = _guidebooks(by_label, out_dir, config.guidebooks)
        scores["heatmaps"] = written
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    (out_dir / "scores.md").write_text(markdown(scores))
    if figure_rows:
        write_png(out_dir / "figure.png", _figure(figure_rows, config))
    if scores["path"]:
        plot_path(scores, out_dir / "path.png")
    return scores


def _open_peers(bundle, name: str, config: EvalConfig, window: int):
    """The peers of one side's model (None without ``config.peers``)."""
    if "captum" not in config.peers:
        return None
    from denarius.evaluation.peers import CaptumPeers

    return CaptumPeers(bundle, name, window=window, stride=config.stride, ig_steps=config.ig_steps)


def _scores(bundle, synth_dir, config: EvalConfig, tables: dict, keys, peer_names, backend: str) -> dict:
    """The scores.json dict without parts, path and guidebooks."""
    headline = config.windows[0]
    every = list(tables.values())
    figures = dict(resamples=config.resamples, seed=config.seed)

    def ours(window: int, sides) -> dict:
        return {name: summarize(sides, f"{name}@{window}", **figures) for name in config.methods}

    scores = {
        "bundle": str(bundle.path),
        "bundle_version": bundle.version,
        "synth_dir": str(synth_dir),
        "images": sum(len(t.labels) for t in every),
        "sides": list(tables),
        "window": headline,
        "stride": config.stride,
        "epsilon": config.epsilon,
        "reference": config.reference,
        "tolerance_px_at_224": config.tolerance,
        "bootstrap": {"resamples": config.resamples, "seed": config.seed, "level": 0.95, "resampled": "images"},
        "backend": backend,
        "hardware": f"{platform.processor() or platform.machine()}, {_cpu_count()} CPU cores",
        "methods": ours(headline, every),
        "by_window": {str(w): ours(w, every) for w in config.windows},
        "by_side": {side: {str(w): ours(w, [t]) for w in config.windows} for side, t in tables.items()},
        "baselines": {"all": baselines(every, **figures), **{side: baselines([t], **figures) for side, t in tables.items()}},
    }
    if peer_names:
        import captum

        scores["peers"] = {
            "library": f"captum {captum.__version__}", "window": headline, "stride": config.stride, "ig_steps": config.ig_steps,
            "methods": {p: summarize(every, p, **figures) for p in peer_names},
            "by_side": {side: {p: summarize([t], p, **figures) for p in peer_names} for side, t in tables.items()},
        }
    else:
        scores["peers"] = {}
    return scores


def _part_scores(reliance: dict, maxima: dict, methods, *, resamples: int, seed: int) -> dict:
    """side -> part -> {images, p_full, p_removed, area, maximum_inside: {method: share}, intervals},
    parts by frequency, then ``NO_PART`` (maxima inside no part; reliance does not apply).

    Args:
        reliance: side -> part -> [(p_full, p_removed, area)] per image with that part.
        maxima: (side, method) -> per image (headline window) the parts holding the heatmap's maximum.
    Returns:
        ``intervals``: 95% bootstrap intervals over images of ``p_full``, ``p_removed`` and
        ``maximum_inside`` (method -> [low, high]).
    """
    figures = dict(resamples=resamples, seed=seed)
    scores = {}
    for side, by_part in reliance.items():
        rows = {}
        for part, values in sorted(by_part.items(), key=lambda kv: -len(kv[1])):
            values = np.asarray(values, np.float64)
            p_full, p_removed, area = values.mean(axis=0)
            rows[part] = {"images": len(values), "p_full": float(p_full), "p_removed": float(p_removed), "area": float(area),
                          "intervals": {"p_full": mean_interval(values[:, 0], **figures),
                                        "p_removed": mean_interval(values[:, 1], **figures)}}
        rows[NO_PART] = {"intervals": {}}
        for part, row in rows.items():
            inside = {m: np.array([part in parts for parts in maxima.get((side, m), [])], np.float64) for m in methods}
            row["maximum_inside"] = {m: float(v.mean()) for m, v in inside.items() if v.size}
            row["intervals"]["maximum_inside"] = {m: mean_interval(v, **figures) for m, v in inside.items() if v.size}
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


def _figure(rows, config: EvalConfig) -> np.ndarray:
    """Paper Fig. 7 layout: input with ground truth, then each method for each window, then the peers."""
    columns = [(m, w) for w in config.windows for m in config.methods]
    columns += sorted({key for _, _, maps, _ in rows for key in maps} - set(columns))
    tiles, captions = [], []
    for crop, polygons, maps, title in rows:
        shown = np.ascontiguousarray(crop.copy())
        for p in polygons:
            cv2.polylines(shown, [np.round(p).astype(np.int32).reshape(-1, 1, 2)], True, (0, 255, 0), 1)
        row, caption = [shown], [title]
        for key in columns:
            overlay_rgb, p_full = maps.get(key, (np.zeros_like(crop), float("nan")))
            row.append(overlay_rgb)
            caption.append("" if np.isnan(p_full) else f"p(c)={p_full:.3f}")
        tiles.append(row)
        captions.append(caption)
    titles = ["input + ground truth"] + [f"{m} {w}x{w}" if m in EVAL_METHODS else m for m, w in columns]
    return grid(tiles, captions=captions, column_titles=titles, tile_size=160)
