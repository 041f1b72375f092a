"""Writing a synthetic dataset: images in parallel, then manifest, landmarks, README, sheet.

Layout of ``out_dir``::

    images/c00000_obverse.jpg, images/c00000_reverse.jpg, ...
    manifest.csv        the dataset manifest (denarius.training.data.COLUMNS)
    landmarks.jsonl     one line per image: coin_id, side, width, height, regions
                        [{word, discriminative, polygon: [[x, y], ...]}] (stored-image px)
    README.md           what was generated: counts, seed, preset, merged near-duplicates
    contact_sheet.png   one coin per RIC type with its descriptions, for people to look at

Ground truth (generator version 2): obverse regions ``head``, ``beard``, the crown
(``laureate`` / ``radiate`` / ``diademed``), ``bust`` and ``legend`` (two regions when a
raised head breaks it); head, beard, crown and legend are discriminative (the legend
spells the emperor's name), the bust is not. Reverse regions: the figure (its name),
``throne``, each attribute, ``legend`` and ``exergue``; discriminative are the elements
that differ from the type's nearest siblings. Each die draws its layout
(:mod:`denarius.training.synth.layout`), so the discriminative elements are not at the
coin's centre. Version 1 centred the portrait and did not mark the obverse legend.

Every file is written through a temporary name and ``os.replace``
(:func:`denarius.engine.atomic_write.write_atomic`), and ``manifest.csv`` last, so an
interrupted run (or a full disk, an ``OSError`` naming the file) never leaves a half-written
file nor a manifest that points at missing ones.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.atomic_write import write_atomic
from denarius.engine.bundle import SIDES
from denarius.engine.contact_sheet import letterbox, wrap_text
from denarius.engine.errors import ConfigError
from denarius.training.synth.catalogue import Catalogue, build_catalogue
from denarius.training.synth.coin import render_coin
from denarius.training.synth.presets import SynthConfig, make_config

__all__ = ["SynthSummary", "generate", "GENERATOR_VERSION"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "2"
OUTPUTS = ("manifest.csv", "landmarks.jsonl", "README.md", "contact_sheet.png")


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote.

    Attributes:
        out_dir, manifest: the dataset folder and its manifest.csv.
        near_duplicates: RIC label pairs whose reverse descriptions differ by one word
            (merged into one class by the paper's rule at threshold 2).
        seconds: wall-clock time of the run; workers: processes used.
    """

    out_dir: Path
    manifest: Path
    preset: str
    seed: int
    config: SynthConfig
    n_emperors: int
    n_types: int
    n_coins: int
    n_images: int
    near_duplicates: tuple[tuple[str, str], ...]
    seconds: float
    workers: int


def _coin_types(catalogue: Catalogue, config: SynthConfig, seed: int) -> list[int]:
    """Type index of every coin: >= min_coins_per_type each, long-tailed, shuffled."""
    rng = np.random.default_rng([int(seed), 0xC0125])
    n_types = len(catalogue.types)
    weights = rng.lognormal(0.0, 0.6, n_types)
    counts = np.full(n_types, config.min_coins_per_type, dtype=np.int64)
    counts += rng.multinomial(config.n_coins - int(counts.sum()), weights / weights.sum())
    types = np.repeat(np.arange(n_types), counts)
    return [int(t) for t in rng.permutation(types)]


def _image_name(index: int, side: str) -> str:
    return f"images/c{index:05d}_{side}.jpg"


# ------------------------------------------------------------------------------ workers
_STATE: dict = {}


def _init_worker(catalogue: Catalogue, config: SynthConfig, seed: int, out_dir: str):
    cv2.setNumThreads(1)  # one process per core; OpenCV threads would only contend
    _STATE.update(catalogue=catalogue, config=config, seed=seed, out_dir=out_dir)


def _render_task(task: tuple[int, int]) -> tuple[int, list]:
    index, type_index = task
    result = render_coin(_STATE["catalogue"], type_index, seed=_STATE["seed"], coin_index=index, config=_STATE["config"])
    lines = []
    for side in SIDES:
        jpeg, (width, height), regions = result[side]
        write_atomic(os.path.join(_STATE["out_dir"], _image_name(index, side)), jpeg)
        lines.append({"coin_id": f"c{index:05d}", "side": side, "width": width, "height": height, "regions": regions})
    return index, lines


# ------------------------------------------------------------------------------- helpers
def _prepare(out_dir: Path, force: bool):
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise ConfigError(f"output folder {out_dir} is not empty; pass force=True (--force) to overwrite it")
        # Remove only what a previous run wrote; anything else stays.
        for name in OUTPUTS:
            (out_dir / name).unlink(missing_ok=True)
        images = out_dir / "images"
        if images.is_dir():
            for path in images.glob("c*_*.jpg"):
                path.unlink()
    (out_dir / "images").mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _main_hidden():
    """Make ``__main__`` look like an interactive session while spawned workers start, so
    they do not re-import the caller's script (which may lack a ``__main__`` guard or be
    read from stdin)."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def generate(
    out_dir: str | os.PathLike,
    *,
    preset: str = "tiny",
    seed: int = 0,
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
    **overrides,
) -> SynthSummary:
    """Generate a synthetic Roman imperial coin dataset.

    Args:
        out_dir: output folder (created; must be empty unless ``force``).
        preset: "tiny", "small", "bench" or "paper" (see ``denarius.training.synth.PRESETS``).
        seed: everything is a function of (preset + overrides, seed): same bytes every run.
        force: overwrite a previous dataset in ``out_dir``.
        workers: processes (default: the CPUs this process may use); 1 renders in-process.
        progress: show a tqdm progress bar.
        **overrides: any :class:`SynthConfig` field (n_emperors, n_types, n_coins, ...).

    Raises:
        ConfigError: bad preset/field/value, or a non-empty ``out_dir`` without ``force``.
    """
    from tqdm import tqdm

    config = make_config(preset, **overrides)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    workers = _default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    out_dir = Path(out_dir)
    _prepare(out_dir, force)

    start = time.perf_counter()
    catalogue = build_catalogue(config, seed)
    coin_types = _coin_types(catalogue, config, seed)
    tasks = list(enumerate(coin_types))
    landmark_lines: list = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc="synth coins", unit="coin", disable=not progress)
    try:
        if workers == 1 or len(tasks) < 8:
            previous = cv2.getNumThreads()
            _init_worker(catalogue, config, seed, str(out_dir))
            try:
                for task in tasks:
                    index, lines = _render_task(task)
                    landmark_lines[index] = lines
                    bar.update(1)
            finally:
                cv2.setNumThreads(previous)
                _STATE.clear()
        else:
            # spawn, not fork: a caller that already runs threads (torch, OpenCV, a server)
            # can deadlock a forked child. The workers need nothing from the caller's
            # __main__, so it is hidden while they start (no re-import, no recursion).
            context = multiprocessing.get_context("spawn")
            chunk = max(1, min(16, len(tasks) // (workers * 8)))
            with _main_hidden():
                pool = context.Pool(workers, initializer=_init_worker, initargs=(catalogue, config, seed, str(out_dir)))
            with pool:
                for index, lines in pool.imap_unordered(_render_task, tasks, chunksize=chunk):
                    landmark_lines[index] = lines
                    bar.update(1)
    finally:
        bar.close()

    landmarks = "".join(json.dumps(line, separators=(",", ":")) + "\n" for lines in landmark_lines for line in lines)
    write_atomic(out_dir / "landmarks.jsonl", landmarks.encode("utf-8"))
    write_atomic(out_dir / "README.md", _readme(catalogue, config, preset, seed, coin_types).encode("utf-8"))
    write_atomic(out_dir / "contact_sheet.png", _contact_sheet(out_dir, catalogue, coin_types))
    write_atomic(out_dir / "manifest.csv", _manifest(catalogue, coin_types))
    seconds = time.perf_counter() - start
    log.info("wrote %d coins (%d images) to %s in %.1f s with %d worker(s)", len(tasks), 2 * len(tasks), out_dir, seconds, workers)
    return SynthSummary(
        out_dir=out_dir,
        manifest=out_dir / "manifest.csv",
        preset=preset,
        seed=seed,
        config=config,
        n_emperors=len(catalogue.emperors),
        n_types=len(catalogue.types),
        n_coins=len(tasks),
        n_images=2 * len(tasks),
        near_duplicates=catalogue.near_duplicates,
        seconds=seconds,
        workers=workers,
    )


# ------------------------------------------------------------------------------- outputs
def _manifest(catalogue: Catalogue, coin_types: list[int]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["coin_id", "obverse", "reverse", "emperor", "ric", "obverse_description", "reverse_description"])
    for index, type_index in enumerate(coin_types):
        ric = catalogue.types[type_index]
        writer.writerow([
            f"c{index:05d}", _image_name(index, "obverse"), _image_name(index, "reverse"),
            catalogue.emperors[ric.emperor].name, ric.label, ric.obverse_description, ric.reverse_description,
        ])
    return buffer.getvalue().encode("utf-8")


def _readme(catalogue: Catalogue, config: SynthConfig, preset: str, seed: int, coin_types: list[int]) -> str:
    per_type = Counter(coin_types)
    types_per_emperor = Counter(t.emperor for t in catalogue.types)
    by_label = {t.label: t for t in catalogue.types}
    variants = sum(1 for t in catalogue.types
                   if (t.crown, t.bust) != (catalogue.emperors[t.emperor].portrait.crown, catalogue.emperors[t.emperor].portrait.bust))
    lines = [
        "# Synthetic Roman imperial coins (Denarius `synth`)",
        "",
        f"Generated by `denarius synth --preset {preset} --seed {seed}` (generator version {GENERATOR_VERSION}).",
        "Same preset, overrides and seed give byte-identical files.",
        "",
        "## Counts",
        "",
        f"- emperors: {len(catalogue.emperors)}",
        f"- RIC types: {len(catalogue.types)} (per emperor: min {min(types_per_emperor.values())}, "
        f"median {int(np.median(list(types_per_emperor.values())))}, max {max(types_per_emperor.values())})",
        f"- coins: {len(coin_types)} (per type: min {min(per_type.values())}, max {max(per_type.values())}); "
        f"images: {2 * len(coin_types)} JPEG, {config.min_size}-{config.max_size} px, quality {config.min_quality}-{config.max_quality}",
        f"- types struck with another obverse variant than the emperor's usual one: {variants}",
        f"- types reusing another emperor's reverse design (reverse alone ambiguous): {len(catalogue.shared)}",
        "",
        "## Configuration",
        "",
        "| field | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in asdict(config).items()]
    lines += [
        "",
        "## Merged near-duplicate types",
        "",
        "These pairs of one emperor have reverse descriptions that differ by exactly one word, so",
        "the paper's class-merging rule (word edit distance < 2) makes each pair one class:",
        "",
    ]
    if catalogue.near_duplicates:
        for a, b in catalogue.near_duplicates:
            lines.append(f"- `{a}` + `{b}`")
            lines.append(f"  - {by_label[a].reverse_description}")
            lines.append(f"  - {by_label[b].reverse_description}")
    else:
        lines.append("- none")
    lines += [
        "",
        "## Reverse designs shared between emperors",
        "",
        "The same figure with the same attributes struck for two emperors (legend or exergue may",
        "differ); only the obverse tells these RIC types apart:",
        "",
    ]
    lines += [f"- `{a}` / `{b}`" for a, b in catalogue.shared[:12]] or ["- none"]
    if len(catalogue.shared) > 12:
        lines.append(f"- ... and {len(catalogue.shared) - 12} more")
    lines += [
        "",
        "## Files",
        "",
        "- `manifest.csv`: coin_id, obverse, reverse, emperor, ric, obverse_description, reverse_description",
        "- `landmarks.jsonl`: one line per image, `{coin_id, side, width, height, regions: [{word,",
        "  discriminative, polygon: [[x, y], ...]}]}` in pixels of the stored image. Regions: obverse",
        "  head (skull, face, hair; the neck too on a bare-head type), beard, crown",
        "  (laureate/radiate/diademed), bust (shoulders, drapery, cuirass, neck), legend (two",
        "  regions where the head breaks it); reverse figure (its name), throne, every attribute,",
        "  legend, exergue. `discriminative` marks, on the reverse, the elements that differ from",
        "  the type's nearest sibling types; on the obverse, the head, beard, crown and legend (the",
        "  emperor's identity: the legend spells his name). The bust is not discriminative.",
        "- Layout: each die draws where its design sits (portrait scale 0.58-0.82 and position,",
        "  mostly raised on the bust; figure size, sideways offset; field marks within their named",
        "  positions), so the coin's centre is not where the discriminative elements are.",
        "- `contact_sheet.png`: one coin per RIC type (up to 24 types spread over the catalogue) with",
        "  its descriptions.",
        "",
    ]
    return "\n".join(lines)


def _contact_sheet(out_dir: Path, catalogue: Catalogue, coin_types: list[int], *, max_types: int = 24) -> bytes:
    """PNG bytes: a grid of obverse/reverse pairs (first coin of each type) with descriptions."""
    first: dict[int, int] = {}
    for index, type_index in enumerate(coin_types):
        first.setdefault(type_index, index)
    # spread over the catalogue (types are ordered by emperor) so many emperors appear
    ordered = sorted(first)
    picks = np.unique(np.linspace(0, len(ordered) - 1, min(max_types, len(ordered))).round().astype(int))
    chosen = [ordered[int(i)] for i in picks]
    thumb, pad, scale = 200, 8, 0.42
    cell_w = 2 * thumb + 3 * pad
    cells = []
    for type_index in chosen:
        ric = catalogue.types[type_index]
        images = []
        for side in SIDES:
            image = cv2.imread(str(out_dir / _image_name(first[type_index], side)), cv2.IMREAD_COLOR)
            images.append(letterbox(image, thumb))
        text = [(f"{ric.label}  ({catalogue.emperors[ric.emperor].name})", (0, 0, 0))]
        text += [(line, (60, 60, 60)) for line in wrap_text("Obv: " + ric.obverse_description, cell_w - 2 * pad, scale)]
        text += [(line, (120, 40, 0)) for line in wrap_text("Rev: " + ric.reverse_description, cell_w - 2 * pad, scale)]
        cells.append((images, text))
    line_h = 16
    text_h = max(len(t) for _, t in cells) * line_h + pad
    cell_h = thumb + 2 * pad + text_h
    cols = min(4, len(cells))
    rows = (len(cells) + cols - 1) // cols
    sheet = np.full((rows * cell_h, cols * cell_w, 3), 255, np.uint8)
    for k, (images, text) in enumerate(cells):
        y, x = (k // cols) * cell_h, (k % cols) * cell_w
        sheet[y + pad : y + pad + thumb, x + pad : x + pad + thumb] = images[0]
        sheet[y + pad : y + pad + thumb, x + 2 * pad + thumb : x + 2 * pad + 2 * thumb] = images[1]
        for n, (line, color) in enumerate(text):
            cv2.putText(sheet, line, (x + pad, y + thumb + 2 * pad + 11 + n * line_h), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1,
                        cv2.LINE_AA)
        cv2.rectangle(sheet, (x, y), (x + cell_w - 1, y + cell_h - 1), (210, 210, 210), 1)
    ok, png = cv2.imencode(".png", sheet)
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
