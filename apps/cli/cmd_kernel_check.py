"""`denarius kernel-check`: the landmark CUDA kernels against NumPy, errors and timings.

See :mod:`denarius.evaluation.kernel_check`. Exit status: 0 when every error is within the
tolerance (or CUDA did not run), 1 when one is not, 2 with ``--require-cuda`` when CUDA
could not run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = (
    'denarius kernel-check --out kernel-check/',
    'denarius kernel-check --require-cuda',
)  # shown under `denarius kernel-check --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("kernel_check"), help="output folder for kernel_check.json")
    parser.add_argument("--size", type=int, default=224, help="image side in px (default 224)")
    parser.add_argument("--batch", type=int, default=8, help="masks per call (default 8)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per operation (default 20)")
    parser.add_argument("--require-cuda", action="store_true",
                        help="exit 1 when CUDA cannot run here (else NumPy alone is timed and the run succeeds)")


def run(args: argparse.Namespace) -> int:
    from denarius.apps.cli import EXIT_FAILURE, EXIT_OK
    from denarius.engine.errors import ConfigError
    from denarius.evaluation.kernel_check import run_check, table

    if args.size < 32 or args.batch < 1 or args.repeats < 1:
        raise ConfigError("--size must be >= 32 (the check uses 21-px windows); --batch and --repeats >= 1")
    result = run_check(size=args.size, batch=args.batch, repeats=args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result), end="")
    print(f"wrote {args.out / 'kernel_check.json'}")
    if result["passed"] is False or (result["passed"] is None and args.require_cuda):
        return EXIT_FAILURE
    return EXIT_OK
