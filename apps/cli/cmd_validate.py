"""`denarius validate`: check a dataset manifest and summarise its class tables."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    'denarius validate data/manifest.csv',
)  # shown under `denarius validate --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="dataset manifest CSV")
    parser.add_argument("--merge-threshold", type=int, default=2,
                        help="merge RIC labels whose reverse descriptions differ in fewer words (default 2, 0 = off)")
    parser.add_argument("--folds", type=int, default=5, help="check that every class fits this many folds (default 5)")


def run(args: argparse.Namespace) -> int:
    from denarius.training.data import kfold_splits, load_dataset

    dataset = load_dataset(args.manifest, merge_threshold=args.merge_threshold)
    tree = dataset.hierarchy
    print(f"{args.manifest}: {len(dataset)} coins, {len(tree.emperors)} emperors, {len(tree.rics)} RIC classes")
    for label, originals in dataset.merged.items():
        print(f"  merged: {label} <- {', '.join(originals)}")
    kfold_splits(dataset, folds=args.folds)
    print(f"  every RIC class has at least {args.folds} coins: {args.folds}-fold cross-validation possible")
    return 0
