"""`denarius quickstart`: the README's main job, end to end on an embedded default."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    'denarius quickstart',
    'denarius quickstart --out /tmp/denarius-quickstart',
)  # shown under `denarius quickstart --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("denarius-quickstart"),
                        help="work folder (default ./denarius-quickstart); a re-run reuses what is built")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic set and of training (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 25)")


def run(args: argparse.Namespace) -> int:
    from denarius.apps.quickstart import QuickstartConfig, run_quickstart

    overrides = {"epochs": args.epochs} if args.epochs else {}
    run_quickstart(QuickstartConfig(out=args.out, seed=args.seed, **overrides))
    return 0
