"""`denarius watchlist add|remove|list|match`: a watchlist of physical specimens.

    denarius watchlist add lists/stolen obv.jpg rev.jpg --id inv-1723 --source "report 17/23"
    denarius watchlist add lists/stolen --manifest specimens/manifest.csv
    denarius watchlist match lists/stolen listing_obv.jpg listing_rev.jpg --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "run", "EXAMPLES"]

EXAMPLES = (
    'denarius watchlist add lists/stolen obv.jpg rev.jpg --id inv-1723 --source "police report 17/23"',
    "denarius watchlist add lists/stolen --manifest specimens/manifest.csv   # id: specimen_id column, else coin_id",
    "denarius watchlist list lists/stolen --json",
    "denarius watchlist match lists/stolen listing_obv.jpg listing_rev.jpg",
    "denarius watchlist remove lists/stolen inv-1723",
)  # shown under `denarius watchlist --help`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="list a specimen (two photos) or every coin of a manifest")
    add.add_argument("watchlist", type=Path, help="watchlist directory (created when missing)")
    add.add_argument("photos", nargs="*", type=Path, help="OBVERSE REVERSE photos of one specimen (with --id)")
    add.add_argument("--id", dest="specimen_id", help="the specimen's id (at most 128 printable characters)")
    add.add_argument("--manifest", type=Path, help="a dataset manifest: one specimen per row (photo 0 rows of a specimen set)")
    add.add_argument("--source", default="", help="where the specimen is known from (a report, a sale)")
    add.add_argument("--note", default="", help="free text")
    remove = actions.add_parser("remove", help="take a specimen off the list")
    remove.add_argument("watchlist", type=Path)
    remove.add_argument("specimen_id")
    listing = actions.add_parser("list", help="the listed specimens")
    listing.add_argument("watchlist", type=Path)
    listing.add_argument("--json", action="store_true", help="one JSON object per specimen")
    match = actions.add_parser("match", help="is this coin on the list (same specimen) or struck from a listed die?")
    match.add_argument("watchlist", type=Path)
    match.add_argument("obverse", type=Path)
    match.add_argument("reverse", type=Path)
    match.add_argument("--top-k", type=int, default=3, help="matches shown at most (default 3)")
    match.add_argument("--json", action="store_true", help="JSON output")


def run(args: argparse.Namespace) -> int:
    from denarius.engine.errors import ConfigError
    from denarius.engine.watchlist import Watchlist

    if args.action != "add" and not args.watchlist.is_dir():
        raise ConfigError(f"watchlist directory {args.watchlist} does not exist (create it with `denarius watchlist add`)")
    with Watchlist(args.watchlist, create=args.action == "add") as watchlist:
        if args.action == "add":
            return _add(watchlist, args)
        if args.action == "remove":
            gone = watchlist.remove(args.specimen_id)
            print(f"removed {gone.specimen_id} ({len(watchlist)} listed)")
            return 0
        if args.action == "list":
            for specimen in watchlist.listed():
                if args.json:
                    print(json.dumps({"specimen_id": specimen.specimen_id, "source": specimen.source, "note": specimen.note,
                                      "added": specimen.added}))
                else:
                    added = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(specimen.added))
                    print(f"{specimen.specimen_id}\t{added}Z\t{specimen.source}\t{specimen.note}")
            return 0
        return _match(watchlist, args)


def _add(watchlist, args: argparse.Namespace) -> int:
    from denarius.engine.errors import ConfigError
    from denarius.engine.manifest import read_manifest

    if args.manifest is None:
        if len(args.photos) != 2 or not args.specimen_id:
            raise ConfigError("watchlist add needs --id ID OBVERSE REVERSE, or --manifest CSV")
        specimen = watchlist.add(args.specimen_id, *args.photos, source=args.source, note=args.note)
        print(f"added {specimen.specimen_id} ({len(watchlist)} listed)")
        return 0
    if args.photos or args.specimen_id:
        raise ConfigError("watchlist add --manifest takes no photos and no --id")
    import csv

    from tqdm import tqdm

    records = read_manifest(args.manifest)
    with open(args.manifest, newline="", encoding="utf-8-sig") as handle:
        ids = {row["coin_id"]: row.get("specimen_id") or row["coin_id"] for row in csv.DictReader(handle)}
    added = 0
    for record in tqdm(records, desc="watchlist add", unit="specimen", disable=not sys.stderr.isatty()):
        _add_one(watchlist, ids[record.coin_id], record, args)
        added += 1
    print(f"added {added} specimen(s) ({len(watchlist)} listed)")
    return 0


def _add_one(watchlist, specimen_id: str, record, args: argparse.Namespace) -> None:
    from denarius.engine.watchlist.descriptor import side_features

    features = (side_features(record.obverse, side="obverse"), side_features(record.reverse, side="reverse"))
    watchlist.add_features(specimen_id, features, source=args.source or str(args.manifest), note=args.note)


def _match(watchlist, args: argparse.Namespace) -> int:
    start = time.perf_counter()
    matches = watchlist.match(args.obverse, args.reverse, top_k=args.top_k)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({
            "listed": len(watchlist),
            "seconds": round(seconds, 4),
            "matches": [{"specimen_id": m.specimen.specimen_id, "verdict": m.verdict, "inliers": list(m.inliers),
                         "similarity": round(m.similarity, 4), "source": m.specimen.source, "note": m.specimen.note}
                        for m in matches],
        }))
        return 0
    if not matches:
        print(f"no match among {len(watchlist)} listed specimen(s) ({seconds * 1e3:.0f} ms)")
        return 0
    for m in matches:
        print(f"{m.verdict:14s} {m.specimen.specimen_id}  inliers obverse {m.inliers[0]}, reverse {m.inliers[1]}  "
              f"source: {m.specimen.source or '-'}")
    return 0
