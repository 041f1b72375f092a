"""`denarius synth`: generate a synthetic Roman imperial coin dataset.

    denarius synth --out data/synth-bench --preset bench --seed 1
    denarius synth --out /tmp/t --preset tiny --n-types 12 --n-coins 120 --force
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]

PRESET_NAMES = ("tiny", "small", "bench", "paper")  # denarius.training.synth.PRESETS, without importing it


EXAMPLES = (
    'denarius synth --out data/synth-bench --preset bench --seed 0',
    'denarius synth --out /tmp/t --preset tiny --n-types 12 --n-coins 120 --force',
)  # shown under `denarius synth --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must be empty unless --force)")
    parser.add_argument("--preset", default="tiny", choices=PRESET_NAMES,
                        help="dataset size: paper = 96 emperors / 314 types / 4,526 coins; bench ~ 24/80/1,600; "
                             "small ~ 8/20/240; tiny ~ 4/8/64 (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed + options = same bytes (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite a previous dataset in --out")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all usable CPUs)")
    group = parser.add_argument_group("overrides of the preset")
    group.add_argument("--n-emperors", type=int, help="number of emperors")
    group.add_argument("--n-types", type=int, help="number of RIC types (>= emperors)")
    group.add_argument("--n-coins", type=int, help="number of coins (>= types x min coins per type)")
    group.add_argument("--min-coins-per-type", type=int, help="coins of every RIC type at least")
    group.add_argument("--min-size", type=int, help="smallest stored image side in px")
    group.add_argument("--max-size", type=int, help="largest stored image side in px")
    group.add_argument("--min-quality", type=int, help="lowest JPEG quality")
    group.add_argument("--max-quality", type=int, help="highest JPEG quality")
    group.add_argument("--shared-reverse-fraction", type=float, help="fraction of types reusing another emperor's reverse")
    group.add_argument("--variant-fraction", type=float, help="fraction of types with another obverse variant")
    group.add_argument("--n-near-duplicates", type=int, help="type pairs differing by one word (merged classes)")
    group.add_argument("--noise", type=float, help="nuisance variation multiplier (0 = clean, 1 = default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


_OVERRIDES = (
    "n_emperors", "n_types", "n_coins", "min_coins_per_type", "min_size", "max_size", "min_quality",
    "max_quality", "shared_reverse_fraction", "variant_fraction", "n_near_duplicates", "noise",
)


def run(args: argparse.Namespace) -> int:
    from denarius.training.synth import generate

    overrides = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    summary = generate(
        args.out, preset=args.preset, seed=args.seed, force=args.force, workers=args.workers,
        progress=not args.no_progress, **overrides,
    )
    print(
        f"wrote {summary.n_coins} coins ({summary.n_images} images) of {summary.n_types} RIC types under "
        f"{summary.n_emperors} emperors to {summary.out_dir} in {summary.seconds:.1f} s "
        f"({summary.workers} worker(s)); manifest: {summary.manifest}"
    )
    if summary.near_duplicates:
        pairs = "; ".join(f"{a} + {b}" for a, b in summary.near_duplicates)
        print(f"near-duplicate types (merged at threshold 2): {pairs}")
    return 0
