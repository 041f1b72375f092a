"""Writing a specimen set: listing photos, re-photographs and die-mates, with ground truth.

Layout of ``out_dir``::

    images/<coin_id>_obverse.jpg, images/<coin_id>_reverse.jpg
    manifest.csv   the dataset manifest (engine.manifest.COLUMNS) plus ground-truth
                   columns specimen_id, die_id, photo; coin_id = "<specimen_id>-p<photo>"

Specimen ``i`` is struck from die ``(i // n_types) % dies_per_type`` of type
``i % n_types`` (specimen index ``i // (n_types * dies_per_type)`` within its die), so
consecutive dies fill up evenly and every die has die-mates once ``n_specimens`` exceeds
``n_types * dies_per_type``. Every specimen gets its listing photo (photo 0); the first
``n_rephotographed`` get ``photos`` re-photographs (1..photos). Everything is a function of
(preset + overrides, catalogue_seed, seed): the same bytes every run, whatever the workers.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from denarius.engine.atomic_write import write_atomic
from denarius.engine.errors import ConfigError
from denarius.engine.manifest import COLUMNS
from denarius.training.synth.catalogue import build_catalogue
from denarius.training.synth.presets import SynthConfig, make_config
from denarius.training.synth.specimen import SpecimenKey, SpecimenPhotographer
from denarius.training.synth.writer import _default_workers, _main_hidden

__all__ = ["SpecimenSet", "specimen_key", "generate_specimens", "GROUND_TRUTH_COLUMNS"]

GROUND_TRUTH_COLUMNS = ("specimen_id", "die_id", "photo")


@dataclass(frozen=True)
class SpecimenSet:
    """What :func:`generate_specimens` wrote: the folder, its manifest and the counts."""

    out_dir: Path
    manifest: Path
    config: SynthConfig
    n_specimens: int
    n_rephotographed: int
    n_photos: int
    n_dies: int
    seconds: float


def specimen_key(index: int, *, n_types: int, dies_per_type: int) -> SpecimenKey:
    """Specimen number ``index`` of a set (see the module docstring for the order)."""
    return SpecimenKey(index % n_types, (index // n_types) % dies_per_type, index // (n_types * dies_per_type))


_STATE: dict = {}


def _init(config: SynthConfig, catalogue_seed: int, seed: int, out_dir: str) -> None:
    cv2.setNumThreads(1)
    catalogue = build_catalogue(config, catalogue_seed)
    _STATE.update(photographer=SpecimenPhotographer(catalogue, config, seed=seed), catalogue=catalogue, out_dir=out_dir)


def _render(task: tuple[int, SpecimenKey, tuple[int, ...]]) -> list[list[str]]:
    """One specimen's photos written; its manifest rows returned."""
    _index, key, photos = task
    photographer, catalogue = _STATE["photographer"], _STATE["catalogue"]
    ric = catalogue.types[key.type_index]
    rows = []
    for photo in photos:
        coin_id = f"{key.specimen_id}-p{photo}"
        shots = photographer.photograph(key, photo)
        names = []
        for side in ("obverse", "reverse"):
            name = f"images/{coin_id}_{side}.jpg"
            write_atomic(os.path.join(_STATE["out_dir"], name), shots[side][0])
            names.append(name)
        rows.append([
            coin_id, *names, catalogue.emperors[ric.emperor].name, ric.label, ric.obverse_description,
            ric.reverse_description, key.specimen_id, key.die_id, str(photo),
        ])
    return rows


def generate_specimens(
    out_dir: str | os.PathLike,
    *,
    n_specimens: int,
    n_rephotographed: int = 0,
    photos: int = 1,
    dies_per_type: int = 4,
    preset: str = "bench",
    catalogue_seed: int = 0,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    **overrides,
) -> SpecimenSet:
    """Photograph ``n_specimens`` specimens (and re-photograph some) into ``out_dir``.

    Args:
        n_specimens: specimens, each with its listing photo (photo 0).
        n_rephotographed: how many of the first specimens also get re-photographs.
        photos: re-photographs per re-photographed specimen (photo 1..photos).
        dies_per_type: dies per RIC type the specimens are struck from.
        catalogue_seed: the catalogue's seed (the types); ``seed`` the specimens'.
        **overrides: :class:`SynthConfig` fields (min_size, max_size, noise, n_types, ...).
    Raises:
        ConfigError: a bad count, preset or override.
    """
    from tqdm import tqdm

    config = make_config(preset, **overrides)
    for name, value, low in (("n_specimens", n_specimens, 1), ("n_rephotographed", n_rephotographed, 0),
                             ("photos", photos, 1), ("dies_per_type", dies_per_type, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if n_rephotographed > n_specimens:
        raise ConfigError(f"n_rephotographed ({n_rephotographed}) exceeds n_specimens ({n_specimens})")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    workers = _default_workers() if workers is None else max(1, int(workers))
    start = time.perf_counter()
    keys = [specimen_key(i, n_types=config.n_types, dies_per_type=dies_per_type) for i in range(n_specimens)]
    # grouped by die: a worker draws each die once (SpecimenPhotographer caches dies)
    order = sorted(range(n_specimens), key=lambda i: (keys[i].type_index, keys[i].die, keys[i].specimen))
    tasks = [(i, keys[i], (0, *range(1, photos + 1)) if i < n_rephotographed else (0,)) for i in order]
    rows_by_index: dict[int, list] = {}
    bar = tqdm(total=len(tasks), desc="synth specimens", unit="specimen", disable=not progress)
    try:
        if workers == 1 or len(tasks) < 16:
            _init(config, catalogue_seed, seed, str(out_dir))
            try:
                for task in tasks:
                    rows_by_index[task[0]] = _render(task)
                    bar.update(1)
            finally:
                _STATE.clear()
        else:
            context = multiprocessing.get_context("spawn")
            chunk = max(1, min(32, len(tasks) // (workers * 8)))
            with _main_hidden():
                pool = context.Pool(workers, initializer=_init, initargs=(config, catalogue_seed, seed, str(out_dir)))
            with pool:
                for task, rows in zip(tasks, pool.imap(_render, tasks, chunksize=chunk), strict=True):
                    rows_by_index[task[0]] = rows
                    bar.update(1)
    finally:
        bar.close()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*COLUMNS, *GROUND_TRUTH_COLUMNS])
    n_photos = 0
    for i in range(n_specimens):
        for row in rows_by_index[i]:
            writer.writerow(row)
            n_photos += 1
    write_atomic(out_dir / "manifest.csv", buffer.getvalue().encode("utf-8"))
    return SpecimenSet(
        out_dir=out_dir,
        manifest=out_dir / "manifest.csv",
        config=config,
        n_specimens=n_specimens,
        n_rephotographed=n_rephotographed,
        n_photos=n_photos,
        n_dies=len({(k.type_index, k.die) for k in keys}),
        seconds=time.perf_counter() - start,
    )
