"""Dataset manifests: the CSV contract every collection and the synthetic generator share.

Manifest (CSV, UTF-8, header row; image paths relative to the manifest's folder)::

    coin_id,obverse,reverse,emperor,ric,obverse_description,reverse_description

:func:`read_manifest` validates it and collects every problem (missing columns, empty
fields, missing image files, duplicate coin ids, a RIC label under two emperors) with its
CSV line number into one :class:`ManifestError`, so a curator fixes the file in one pass.
It lives in the runtime because training, export calibration, the scanner and the bench
all read manifests; class merging and folds stay in ``denarius.training.data``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from denarius.engine.errors import ManifestError

__all__ = ["COLUMNS", "CoinRecord", "read_manifest", "image_digests"]

_MAX_REPORTED = 50

COLUMNS = ("coin_id", "obverse", "reverse", "emperor", "ric", "obverse_description", "reverse_description")


@dataclass(frozen=True)
class CoinRecord:
    """One manifest row. ``row`` is the 1-based CSV line number (the header is line 1)."""

    row: int
    coin_id: str
    obverse: Path
    reverse: Path
    emperor: str
    ric: str
    obverse_description: str
    reverse_description: str


def read_manifest(path: str | Path, *, check_files: bool = True) -> list[CoinRecord]:
    """Read and validate a manifest.

    Raises:
        ManifestError: listing every problem found, each with its line number.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    root = path.parent
    problems: list[str] = []
    records: list[CoinRecord] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ManifestError(f"{path}: missing columns {missing}; expected header: {','.join(COLUMNS)}")
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            empty = [c for c in COLUMNS[:5] if not row.get(c)]
            if empty:
                problems.append(f"line {line}: empty {', '.join(empty)}")
                continue
            record = CoinRecord(
                row=line,
                coin_id=row["coin_id"],
                obverse=root / row["obverse"],
                reverse=root / row["reverse"],
                emperor=row["emperor"],
                ric=row["ric"],
                obverse_description=row.get("obverse_description", ""),
                reverse_description=row.get("reverse_description", ""),
            )
            if check_files:
                for side in ("obverse", "reverse"):
                    if not getattr(record, side).is_file():
                        problems.append(f"line {line}: {side} image not found: {row[side]}")
            records.append(record)

    first_seen: dict[str, int] = {}
    for record in records:
        if record.coin_id in first_seen:
            problems.append(f"line {record.row}: duplicate coin_id {record.coin_id!r} (first on line {first_seen[record.coin_id]})")
        else:
            first_seen[record.coin_id] = record.row
    owners: dict[str, dict[str, int]] = defaultdict(dict)
    for record in records:
        owners[record.ric].setdefault(record.emperor, record.row)
    for ric, emperors in owners.items():
        if len(emperors) > 1:
            where = ", ".join(f"{e!r} (line {r})" for e, r in emperors.items())
            problems.append(f"RIC label {ric!r} appears under several emperors: {where}")
    if not records and not problems:
        problems.append("the manifest has no rows")
    if problems:
        shown = problems[:_MAX_REPORTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise ManifestError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(shown) + more)
    return records


def image_digests(records) -> set[str]:
    """The sha256 of every obverse and reverse image of ``records`` (:class:`CoinRecord`), to
    tell held-out images from training images byte for byte."""
    from denarius.engine.bundle import sha256_file

    return {sha256_file(path) for record in records for path in (record.obverse, record.reverse)}
