"""`denarius quickstart`: the README's main job, end to end on an embedded default."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)
REAL_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("denarius-quickstart"), help="work folder (default ./denarius-quickstart); re-runs reuse it")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic set (default 1)")


def run(args: argparse.Namespace) -> int:
    from serving.cli import main as cli

    out: Path = args.out
    data = out / "data"
    if not (data / "manifest.csv").is_file():
        if cli(["synth", "--out", str(data), "--preset", "tiny", "--seed", str(args.seed), "--force"]) != 0:
            return 1
    inputs = [str(data / "manifest.csv")] + ([str(REAL_FIXTURES)] if REAL_FIXTURES.is_dir() else [])
    return cli(["preprocess", *inputs, "--out", str(out / "preprocessed"), "--limit", "48"])
