"""What ``denarius scan`` reads: a manifest CSV or a folder of obverse/reverse photo pairs.

Two input forms, one result, :class:`ScanInput` (a list of :class:`CoinItem` in a stable
order plus what could not be paired):

- a manifest CSV (``engine/manifest.py`` format, read with ``check_files=False``); rows whose
  image files are missing become items with a ``problem`` (an error line in the output),
  not a failed scan;
- a folder, searched recursively, holding either ``<id>_obv.<ext>`` + ``<id>_rev.<ext>``
  (or ``<id>_obverse.<ext>`` + ``<id>_reverse.<ext>``, the synthetic generator's names)
  side by side, or ``<id>/obverse.<ext>`` + ``<id>/reverse.<ext>``. The coin id is the
  path of the pair relative to the folder (``sub/dir/<id>``), POSIX separators. A coin with
  only one side, two candidate files for one side, or an image whose name matches neither
  pattern is reported (``ScanInput.unpaired``) and becomes an error item too: nothing is
  silently dropped.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from denarius.engine.bundle import SIDES
from denarius.engine.errors import InputError, ManifestError
from denarius.engine.manifest import read_manifest

__all__ = ["IMAGE_SUFFIXES", "CoinItem", "ScanInput", "discover", "read_scan_manifest", "scan_folder"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
_SUFFIX_SIDE = re.compile(r"^(?P<id>.+)_(?P<side>obv|rev|obverse|reverse)$", re.IGNORECASE)
_SIDE_NAMES = {"obv": "obverse", "rev": "reverse", "obverse": "obverse", "reverse": "reverse"}


@dataclass(frozen=True)
class CoinItem:
    """One coin to scan.

    Attributes:
        coin_id: unique id, written as ``coin_id`` in the output.
        obverse, reverse: image paths; None when that side is missing.
        problem: None for a scannable coin, else ``(kind, message)`` - the coin becomes an
            error line of that kind without being decoded ("missing_file", "unpaired",
            "ambiguous").
    """

    coin_id: str
    obverse: Path | None
    reverse: Path | None
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class ScanInput:
    """Everything found in a scan INPUT.

    Attributes:
        source: the manifest file or folder, resolved.
        kind: "manifest" or "folder".
        items: every coin, ordered by manifest row or by coin id (folder).
        unpaired: human-readable lines about images that did not form a pair.
    """

    source: Path
    kind: str
    items: tuple[CoinItem, ...]
    unpaired: tuple[str, ...] = ()


def discover(path: str | Path) -> ScanInput:
    """Read INPUT: a ``.csv`` manifest or a folder of pairs.

    Raises:
        InputError: INPUT does not exist, or is a file that is not a CSV manifest, or a
            folder with no images in it.
        ManifestError: the manifest is malformed (every problem listed with its line).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return scan_folder(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise InputError(f"scan INPUT {path} is a file but not a .csv manifest; give a manifest or a folder of pairs")
        return read_scan_manifest(path)
    raise InputError(f"scan INPUT not found: {path} (give a manifest .csv or a folder of <id>_obv/<id>_rev images)")


def _missing_files(coin_id: str, obverse: Path, reverse: Path) -> CoinItem:
    missing = [f"{side} image not found: {p}" for side, p in zip(SIDES, (obverse, reverse), strict=True) if not p.is_file()]
    problem = ("missing_file", "; ".join(missing)) if missing else None
    return CoinItem(coin_id=coin_id, obverse=obverse, reverse=reverse, problem=problem)


def read_scan_manifest(path: str | Path) -> ScanInput:
    """Items of a manifest CSV, in row order.

    A full training manifest (``coin_id,obverse,reverse,emperor,ric,...``) is read with
    ``denarius.engine.manifest.read_manifest(check_files=False)``, the one manifest reader. A scan of
    unlabelled coins may also give just ``coin_id,obverse,reverse``; that header is read
    here with the same rules (paths relative to the manifest, ids unique, no empty field).
    """
    path = Path(path).resolve()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = [name.strip() for name in (csv.DictReader(handle).fieldnames or [])]
    if {"emperor", "ric"} <= set(header):
        records = read_manifest(path, check_files=False)
        items = [_missing_files(r.coin_id, r.obverse, r.reverse) for r in records]
        return ScanInput(source=path, kind="manifest", items=tuple(items))
    return _read_unlabelled(path, header)


def _read_unlabelled(path: Path, header: list[str]) -> ScanInput:
    missing = [c for c in ("coin_id", "obverse", "reverse") if c not in header]
    if missing:
        raise ManifestError(
            f"{path}: missing columns {missing}; a scan manifest needs coin_id,obverse,reverse "
            "(or a full training manifest)")
    problems: list[str] = []
    items: list[CoinItem] = []
    first_seen: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, raw in enumerate(csv.DictReader(handle), start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            empty = [c for c in ("coin_id", "obverse", "reverse") if not row.get(c)]
            if empty:
                problems.append(f"line {line}: empty {', '.join(empty)}")
                continue
            if row["coin_id"] in first_seen:
                problems.append(f"line {line}: duplicate coin_id {row['coin_id']!r} (first on line {first_seen[row['coin_id']]})")
                continue
            first_seen[row["coin_id"]] = line
            items.append(_missing_files(row["coin_id"], path.parent / row["obverse"], path.parent / row["reverse"]))
    if not items and not problems:
        problems.append("the manifest has no rows")
    if problems:
        raise ManifestError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems[:50]))
    return ScanInput(source=path, kind="manifest", items=tuple(items))


def _side_of(path: Path, root: Path) -> tuple[str, str] | None:
    """(coin id, side) that an image's name gives it, or None when it matches no pattern."""
    relative_parent = path.parent.relative_to(root)
    match = _SUFFIX_SIDE.match(path.stem)
    if match:
        coin = (relative_parent / match["id"]).as_posix()
        return coin, _SIDE_NAMES[match["side"].lower()]
    if path.stem.lower() in ("obverse", "reverse") and relative_parent != Path("."):
        return relative_parent.as_posix(), path.stem.lower()
    return None


def scan_folder(root: str | Path) -> ScanInput:
    """Pair the images of a folder (recursively); see the module docstring for the names.

    Raises:
        InputError: the folder holds no image at all.
    """
    root = Path(root).resolve()
    sides: dict[str, dict[str, list[Path]]] = defaultdict(lambda: {"obverse": [], "reverse": []})
    stray: list[Path] = []
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise InputError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}; expected <id>_obv.jpg + <id>_rev.jpg "
            "or <id>/obverse.jpg + <id>/reverse.jpg")
    for image in images:
        found = _side_of(image, root)
        if found is None:
            stray.append(image)
        else:
            sides[found[0]][found[1]].append(image)

    items: list[CoinItem] = []
    unpaired: list[str] = []
    for coin_id in sorted(sides):
        by_side = sides[coin_id]
        obverse = by_side["obverse"][0] if by_side["obverse"] else None
        reverse = by_side["reverse"][0] if by_side["reverse"] else None
        problem: tuple[str, str] | None = None
        several = {s: f for s, f in by_side.items() if len(f) > 1}
        if several:
            listed = "; ".join(f"{s}: {', '.join(p.relative_to(root).as_posix() for p in f)}" for s, f in several.items())
            problem = ("ambiguous", f"several images for one side ({listed}); keep one per side")
        elif obverse is None or reverse is None:
            have, lack = ("obverse", "reverse") if reverse is None else ("reverse", "obverse")
            only = obverse if reverse is None else reverse
            assert only is not None  # a coin id comes from at least one of its images
            present = only.relative_to(root).as_posix()
            problem = ("unpaired", f"{have} image {present} has no {lack} image")
        if problem is not None:
            unpaired.append(f"{coin_id}: {problem[1]}")
        items.append(CoinItem(coin_id=coin_id, obverse=obverse, reverse=reverse, problem=problem))
    taken = set(sides)
    for image in stray:
        relative = image.relative_to(root)
        coin_id = relative.with_suffix("").as_posix()
        if coin_id in taken:  # "x.jpg" next to "x_obv.jpg"/"x/obverse.jpg": keep ids unique
            coin_id = relative.as_posix()
        taken.add(coin_id)
        message = f"image {relative.as_posix()} matches neither <id>_obv/<id>_rev nor <id>/obverse|reverse"
        unpaired.append(f"{coin_id}: {message}")
        items.append(CoinItem(coin_id=coin_id, obverse=None, reverse=None, problem=("unpaired", message)))
    items.sort(key=lambda item: item.coin_id)
    return ScanInput(source=root, kind="folder", items=tuple(items), unpaired=tuple(unpaired))
