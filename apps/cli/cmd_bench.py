"""`denarius bench`: measure throughput, latency and landmark cost; JSON + Markdown + PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

SECTIONS = ("model_only", "engine", "torch_eager", "openvino", "preprocess", "grpc", "landmarks", "scan", "open_world", "watchlist")
# open_world needs dataset manifests, watchlist generates 10,500 specimens (~40 min on 2 cores): run them by name
DEFAULT_SECTIONS = SECTIONS[:-2]


EXAMPLES = (
    'denarius bench bundles/v1 --out bench/ --quick',
    'denarius bench bundles/v1 --out bench/ --sections landmarks',
    'denarius bench bundles/v1 --out bench/ --sections open_world --heldout held/manifest.csv '
    '--unknown unknown1/manifest.csv --unknown2 unknown2/manifest.csv --train-manifest train/manifest.csv',
)  # shown under `denarius bench --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="model bundle folder")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="output folder or a .json path (default ./bench)")
    parser.add_argument("--quick", action="store_true", help="small samples: a smoke run in about a minute")
    parser.add_argument("--coins", type=int, default=None, help="coin pairs in the workload (default 96, quick 16)")
    parser.add_argument("--seconds", type=float, default=None, help="duration of each timed loop (default 4, quick 0.5)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS),
                        help="sections to run (default all but open_world and watchlist)")
    world = parser.add_argument_group("open_world section")
    world.add_argument("--heldout", type=Path, default=None, metavar="MANIFEST", help="held-out coins of the bundle's catalogue")
    world.add_argument("--unknown", type=Path, default=None, metavar="MANIFEST",
                       help="coins outside the catalogue the threshold is chosen on (e.g. `denarius synth --seed 1`)")
    world.add_argument("--unknown2", type=Path, default=None, metavar="MANIFEST",
                       help="a second set outside the catalogue the false-accept rate is measured on")
    world.add_argument("--train-manifest", type=Path, default=None, metavar="MANIFEST",
                       help="the training set: held-out images byte-identical to its images are dropped")
    world.add_argument("--open-set-far", type=float, default=0.05, metavar="RATE", help="requested false-accept rate (default 0.05)")


def run(args: argparse.Namespace) -> int:
    from denarius.apps.bench.config import BenchConfig
    from denarius.apps.bench.suite import run_bench

    out = args.out.parent if args.out.suffix == ".json" else args.out
    config = BenchConfig.quick_config(args.bundle, out) if args.quick else BenchConfig(bundle=args.bundle, out=out)
    overrides = {"sections": tuple(args.sections), "heldout": args.heldout, "unknown": args.unknown, "unknown2": args.unknown2,
                 "train_manifest": args.train_manifest, "open_set_far": args.open_set_far}
    if args.coins is not None:
        overrides["coins"] = args.coins
    if args.seconds is not None:
        overrides["seconds"] = args.seconds
    from dataclasses import replace

    results = run_bench(replace(config, **overrides))
    print((out / "bench.md").read_text())
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")
    missed = [k for k, v in results["targets"].items() if v["met"] is False]
    if missed:
        print("targets missed: " + ", ".join(f"{k} = {results['targets'][k]['value']}" for k in missed))
    return 0
