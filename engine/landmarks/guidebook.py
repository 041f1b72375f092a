"""The class "guidebook": the mean landmark map over the coins of one class (a RIC label or
an emperor), drawn over a representative coin of that class; and its place in a bundle.

Canonical crops are centred on the coin disc at a fixed scale, so heatmaps of coins of one
type are roughly aligned and their mean shows where the type's landmarks usually are (the
paper: coins of the same class share landmarks).

In a bundle (written by ``denarius guidebook``, read by the HTTP API)::

    guidebook/index.json          {"format": 1, "model_version", "method", "settings",
                                   "entries": [{"kind": "ric"|"emperor", "label", "side",
                                   "file", "coins", "representative"}]}
    guidebook/ric/<label>-<hash>.png       one per RIC label with held-out coins
    guidebook/emperor/<label>-<hash>.png   one per emperor

Every one of these files is listed with its sha256 in ``manifest.json`` (``files``) and the
manifest names the index (``"guidebook": {"index": "guidebook/index.json"}``), so loading
verifies them with the models and a manifest signature covers them
(:func:`denarius.engine.bundle.set_bundle_guidebook`). :class:`BundleGuidebook` checks
each file's sha256 again whenever it reads one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.errors import BundleError, InputError
from denarius.engine.landmarks.figures import grid, write_png
from denarius.engine.landmarks.result import LandmarkMap, coin_overlay, overlay, rescale

__all__ = [
    "Guidebook",
    "guidebook_from_maps",
    "GuidebookEntry",
    "BundleGuidebook",
    "GUIDEBOOK_DIR",
    "INDEX_NAME",
    "KINDS",
    "guidebook_file_name",
    "encode_png",
]

GUIDEBOOK_DIR = "guidebook"
INDEX_NAME = f"{GUIDEBOOK_DIR}/index.json"
INDEX_FORMAT = 1
KINDS = {"ric": "reverse", "emperor": "obverse"}  # kind of class -> the side its classifier reads
MAX_INDEX_BYTES = 16 * 1024 * 1024
MAX_PNG_BYTES = 64 * 1024 * 1024


@dataclass
class Guidebook:
    """Mean landmarks of one class.

    Attributes:
        label: the class. heatmap: (S, S) float32 in [0, 1], mean of the coins' heatmaps,
            rescaled. representative: index into ``maps`` of the coin whose heatmap
            correlates best with the mean. maps: the individual maps.
    """

    label: str
    heatmap: np.ndarray
    representative: int
    maps: list

    def render(self, *, tile_size: int = 224, examples: int = 6) -> np.ndarray:
        """(H, W, 3) uint8 RGB: the mean map over the representative coin's crop, then examples."""
        main = overlay(self.maps[self.representative].image, self.heatmap)
        shown = self.maps[:examples]
        tiles = [[main] + [m.overlay() for m in shown]]
        captions = [[f"{self.label}\nmean of {len(self.maps)} coins"] + [f"coin {i}\np(c)={m.p_full:.2f}" for i, m in enumerate(shown)]]
        return grid(tiles, captions=captions, tile_size=tile_size // 2 if len(shown) > 3 else tile_size)

    def on_coin(self, view: np.ndarray, *, resize: int) -> np.ndarray:
        """The mean map over the representative coin's whole-coin view, as the server draws
        a single coin's landmarks (:func:`~denarius.engine.landmarks.result.coin_overlay`).

        Args:
            view: (V, V, 3) uint8 RGB from ``LandmarkService.crop_and_view`` of the
                representative coin's photo. resize: the model's canonical side.
        Returns:
            (V, V, 3) uint8 RGB.
        """
        return coin_overlay(view, self.heatmap, resize=resize)

    def save_png(self, path) -> Path:
        return write_png(path, self.render())


def guidebook_from_maps(maps: list[LandmarkMap], *, label: str) -> Guidebook:
    """Guidebook from precomputed maps (all of the same size).

    Raises:
        InputError: no maps, or maps of different sizes.
    """
    if not maps:
        raise InputError(f"no landmark maps for class {label!r}")
    shapes = {m.heatmap.shape for m in maps}
    if len(shapes) != 1:
        raise InputError(f"landmark maps of different sizes {sorted(shapes)} cannot be averaged")
    stack = np.stack([m.heatmap for m in maps]).astype(np.float64)  # (N, S, S)
    mean = stack.mean(axis=0)
    centred = stack.reshape(len(maps), -1) - stack.reshape(len(maps), -1).mean(axis=1, keepdims=True)
    target = (mean - mean.mean()).ravel()
    norms = np.linalg.norm(centred, axis=1) * np.linalg.norm(target)
    corr = np.where(norms > 0, centred @ target / np.maximum(norms, 1e-300), -np.inf)
    representative = int(np.argmax(corr)) if np.isfinite(corr).any() else 0
    return Guidebook(label=label, heatmap=rescale(mean), representative=representative, maps=list(maps))


def guidebook_file_name(kind: str, label: str) -> str:
    """The bundle-relative PNG path of one class: readable, and unique however labels differ
    (``guidebook/ric/RIC_V_Probus_10-1a2b3c4d.png``)."""
    safe = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")[:60] or "class"
    digest = hashlib.sha256(f"{kind}\0{label}".encode()).hexdigest()[:8]
    return f"{GUIDEBOOK_DIR}/{kind}/{safe}-{digest}.png"


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG bytes."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError("the guidebook picture could not be encoded as PNG")
    return encoded.tobytes()


@dataclass(frozen=True)
class GuidebookEntry:
    """One class's guidebook in a bundle (a row of ``guidebook/index.json``).

    Attributes:
        kind: "ric" or "emperor". label: the class name, as the bundle's classifier names it.
        side: the side its classifier reads. file: bundle-relative PNG path.
        coins: how many coins were averaged. representative: the coin id the mean is drawn on.
    """

    kind: str
    label: str
    side: str
    file: str
    coins: int
    representative: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "side": self.side, "file": self.file,
                "coins": self.coins, "representative": self.representative}


class BundleGuidebook:
    """The guidebook of a loaded bundle: its index, and each class's PNG, sha256-checked on
    every read against the bundle's manifest.

    Use :meth:`of` (None when the bundle has no guidebook).
    """

    def __init__(self, bundle, index: dict, entries: list[GuidebookEntry]):
        self.bundle = bundle
        self.index = index
        self.entries = entries
        self._by_key = {(e.kind, e.label): e for e in entries}

    @classmethod
    def of(cls, bundle) -> BundleGuidebook | None:
        """The guidebook of ``bundle`` (a :class:`~denarius.engine.bundle.Bundle`), None if it has none.

        Raises:
            BundleError: the index is missing, altered since the manifest was written, or
                malformed, or names a file the manifest does not hash (the file is named).
        """
        relative = bundle.guidebook
        if relative is None:
            return None
        index = json.loads(_verified(bundle, relative, limit=MAX_INDEX_BYTES).decode("utf-8"))
        where = f"{bundle.path / relative}"
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("entries"), list):
            raise BundleError(f"{where}: not a guidebook index of format {INDEX_FORMAT}; rebuild it with `denarius guidebook`")
        entries = []
        for row in index["entries"]:
            try:
                entry = GuidebookEntry(kind=str(row["kind"]), label=str(row["label"]), side=str(row["side"]),
                                       file=str(row["file"]), coins=int(row["coins"]),
                                       representative=str(row.get("representative", "")))
            except (KeyError, TypeError, ValueError) as error:
                raise BundleError(f"{where}: malformed entry {str(row)[:200]} ({type(error).__name__}: {error})") from None
            if entry.kind not in KINDS or not entry.file.startswith(f"{GUIDEBOOK_DIR}/") or entry.file not in bundle.files:
                raise BundleError(f"{where}: entry {entry.label!r} ({entry.kind!r}) names {entry.file!r}, not a guidebook "
                                  "file the manifest hashes")
            entries.append(entry)
        return cls(bundle, index, entries)

    def find(self, label: str, kind: str | None = None) -> GuidebookEntry | None:
        """The entry of ``label`` (RIC labels first, then emperors, unless ``kind`` says)."""
        for each in ((kind,) if kind else ("ric", "emperor")):
            entry = self._by_key.get((each, label))
            if entry is not None:
                return entry
        return None

    def png(self, entry: GuidebookEntry) -> bytes:
        """The entry's PNG bytes. Raises BundleError if the file changed since the manifest was written."""
        return _verified(self.bundle, entry.file, limit=MAX_PNG_BYTES)

    def labels(self, kind: str) -> list[str]:
        return [e.label for e in self.entries if e.kind == kind]


def _verified(bundle, relative: str, *, limit: int) -> bytes:
    """The bytes of a bundle file whose sha256 matches the manifest's entry."""
    expected = bundle.files.get(relative)
    path = bundle.path / relative
    if expected is None:
        raise BundleError(f"{path} is not listed in {bundle.path / 'manifest.json'}; rebuild the guidebook with `denarius guidebook`")
    try:
        if path.stat().st_size > limit:
            raise BundleError(f"{path} is larger than {limit:,} bytes; not a guidebook file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle file missing: {path}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise BundleError(f"bundle file {path} fails its sha256 check (changed after the manifest was written); "
                          "rebuild the guidebook with `denarius guidebook`")
    return data
