"""`denarius scan`: identify a whole collection (manifest or folder of pairs) into JSON lines.

    denarius scan coins/ --bundle bundle/ --out results.jsonl
    denarius scan manifest.csv --server 10.0.0.5:50051 --out results.jsonl
    denarius scan manifest.csv --bundle bundle/ --ray auto --out results.jsonl

Killed and rerun with the same arguments, it resumes where it stopped; every coin ends up in
the output exactly once. ``--restart`` discards an earlier output and starts over.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = (
    'denarius scan coins/ --bundle bundle/ --out results.jsonl',
    'denarius scan manifest.csv --server 127.0.0.1:50051 --out results.jsonl',
    'denarius scan /mnt/coins/manifest.csv --bundle /mnt/bundle --ray auto --out results.jsonl',
)  # shown under `denarius scan --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="manifest CSV, or a folder of <id>_obv.*/<id>_rev.* "
                                                 "(or <id>/obverse.* + <id>/reverse.*) images")
    parser.add_argument("--bundle", type=Path, help="model bundle folder (not needed with --server)")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines output (resumed when it exists)")
    parser.add_argument("--top-k", type=int, default=5, help="candidates per coin (default 5)")
    parser.add_argument("--batch-size", type=int, default=32, help="coins per engine batch and per fsynced write (default 32)")
    parser.add_argument("--workers", type=int, default=2,
                        help="decode/preprocess threads; with --ray the number of engine actors (default 2)")
    parser.add_argument("--landmarks", action="store_true", help="add landmark boxes per side (slow)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="HOST:PORT", help="scan through a running Denarius server (IdentifyStream)")
    where.add_argument("--ray", metavar="ADDRESS",
                       help="run on Ray Data, from a node of the cluster: 'auto' (this machine's cluster, else a local one), "
                            "the GCS address HOST:6379, or 'local'; Ray Client (ray://) is not supported by Ray Data. "
                            "Images and the bundle must be readable at the same paths on every node")
    parser.add_argument("--restart", action="store_true", help="discard an existing output and start over")
    parser.add_argument("--backend", default="auto", help="engine backend: auto, ort-cpu, ort-cuda, tensorrt (default auto)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="engine precision (default: the backend's)")
    parser.add_argument("--token", help="bearer token for --server (or set DENARIUS_TOKEN)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import os

    from denarius.apps.cli import EXIT_OK, EXIT_PARTIAL
    from denarius.serving.scan.pipeline import ScanConfig, run_scan

    config = ScanConfig(
        input=args.input, out=args.out, bundle=args.bundle, top_k=args.top_k, batch_size=args.batch_size,
        workers=args.workers, landmarks=args.landmarks, server=args.server, ray=args.ray, restart=args.restart,
        backend=args.backend, precision=args.precision, progress=not args.no_progress,
        token=args.token or os.environ.get("DENARIUS_TOKEN"),
    )
    summary = run_scan(config)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return EXIT_PARTIAL if summary.errors else EXIT_OK
