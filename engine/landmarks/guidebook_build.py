"""Build a bundle's class guidebooks (``denarius guidebook``): for every RIC label and every
emperor of the bundle's catalogue, the mean landmark map over up to ``per_class`` held-out
coins of that class, computed by the bundle's own :class:`LandmarkService` for the true
class, drawn over the coin that best represents the mean, and listed in the manifest::

    from denarius.engine.landmarks.guidebook_build import GuidebookConfig, build_guidebook
    summary = build_guidebook("bundles/v1", records, GuidebookConfig(per_class=8))

``records`` are :class:`denarius.engine.manifest.CoinRecord` rows (a dataset manifest of
coins the models did not train on). Rows whose class the bundle does not know are skipped
(RIC labels merged at training time count as their merged class). Classes without coins
get no guidebook (the server answers 404 for them).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from denarius.engine.atomic_write import write_atomic
from denarius.engine.bundle import load_bundle, set_bundle_guidebook
from denarius.engine.errors import ConfigError, InputError
from denarius.engine.landmarks.api import LandmarkConfig
from denarius.engine.landmarks.guidebook import (
    GUIDEBOOK_DIR,
    INDEX_FORMAT,
    INDEX_NAME,
    KINDS,
    GuidebookEntry,
    encode_png,
    guidebook_file_name,
    guidebook_from_maps,
)
from denarius.engine.landmarks.service import LandmarkService

__all__ = ["GuidebookConfig", "build_guidebook"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuidebookConfig:
    """How the guidebooks are computed.

    Attributes:
        per_class: coins averaged per class at most (the first ones by coin id), >= 1.
        landmarks: the landmark settings (default: the optimised method, epsilon 0.5, as
            the server's default search).
        backend: the backend the landmark service opens ("auto", "ort-cpu", ...).
        progress: show a progress bar.
    """

    per_class: int = 8
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    backend: str = "auto"
    progress: bool = False

    def __post_init__(self):
        if self.per_class < 1:
            raise ConfigError(f"per_class must be >= 1, got {self.per_class}")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def _classes(records, bundle) -> dict[tuple[str, str], list]:
    """(kind, class label) -> the records of that class, in coin-id order."""
    merged = (bundle.extra or {}).get("merged") or {}
    merged_into = {original: label for label, originals in merged.items() for original in originals}
    rics, emperors = set(bundle.hierarchy.rics), set(bundle.hierarchy.emperors)
    out: dict[tuple[str, str], list] = {}
    for record in sorted(records, key=lambda r: r.coin_id):
        ric = merged_into.get(record.ric, record.ric)
        if ric in rics:
            out.setdefault(("ric", ric), []).append(record)
        if record.emperor in emperors:
            out.setdefault(("emperor", record.emperor), []).append(record)
    return out


def build_guidebook(bundle_dir: str | Path, records, config: GuidebookConfig = GuidebookConfig()) -> dict:
    """Compute and write ``guidebook/`` into the bundle and list it in ``manifest.json``.

    An earlier guidebook is replaced. The manifest's signature, if any, is removed (sign the
    bundle again). Returns the index written (a dict, as ``guidebook/index.json``).

    Raises:
        BundleError: the bundle does not verify.
        InputError: no record belongs to a class of the bundle, or a photo cannot be read
            (the side and coin are named).
    """
    root = Path(bundle_dir)
    bundle = load_bundle(root)
    classes = _classes(records, bundle)
    if not classes:
        raise InputError(f"no coin of the images belongs to a class of bundle {root} "
                         f"(its RIC labels: {', '.join(bundle.hierarchy.rics[:8])}{', ...' if len(bundle.hierarchy.rics) > 8 else ''})")
    landmarks = config.landmarks
    staging = root / f".{GUIDEBOOK_DIR}.new"
    shutil.rmtree(staging, ignore_errors=True)
    entries: list[GuidebookEntry] = []
    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(min(len(v), config.per_class) for v in classes.values()), unit="coin", desc="guidebook")
    with LandmarkService.open(root, backend=config.backend) as service:
        for (kind, label), members in sorted(classes.items()):
            side = KINDS[kind]
            members = members[: config.per_class]
            crops, views = [], []
            for record in members:
                path = record.obverse if side == "obverse" else record.reverse
                try:
                    crop, view = service.crop_and_view(path, side=side)
                except InputError as error:
                    raise InputError(f"coin {record.coin_id} ({path}): {error}") from None
                crops.append(crop)
                views.append(view)
            model = service.model_name(side)
            maps = service.compute(np.stack(crops), model=model, config=landmarks, targets=label)  # (N,) maps
            book = guidebook_from_maps(maps, label=label)
            picture = book.on_coin(views[book.representative], resize=service.canonical_size(model))  # (512, 512, 3)
            relative = guidebook_file_name(kind, label)
            _write(staging / Path(relative).relative_to(GUIDEBOOK_DIR), encode_png(picture))
            entries.append(GuidebookEntry(kind=kind, label=label, side=side, file=relative, coins=len(members),
                                          representative=members[book.representative].coin_id))
            if bar is not None:
                bar.update(len(members))
    if bar is not None:
        bar.close()
    index = {
        "format": INDEX_FORMAT,
        "model_version": bundle.version,
        "method": landmarks.method,
        "settings": {"epsilon": landmarks.epsilon, "window": landmarks.window, "stride": landmarks.stride,
                     "reference": landmarks.reference, "per_class": config.per_class},
        "entries": [entry.to_dict() for entry in entries],
    }
    _write(staging / Path(INDEX_NAME).relative_to(GUIDEBOOK_DIR), json.dumps(index, indent=2).encode("utf-8"))
    # Swap the folder in, then list it: the manifest is written last, so a reader that sees the
    # new manifest finds the new files (one that still has the old manifest fails its sha256
    # checks cleanly, never serves an unlisted file).
    final = root / GUIDEBOOK_DIR
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    set_bundle_guidebook(root, index=INDEX_NAME, files=[INDEX_NAME, *(entry.file for entry in entries)],
                         prefix=f"{GUIDEBOOK_DIR}/")
    log.info("guidebook of %d RIC labels and %d emperors written to %s", sum(e.kind == "ric" for e in entries),
             sum(e.kind == "emperor" for e in entries), final)
    return index
