"""The ``denarius`` command line.

Each subcommand is one module in this package with two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int

and one line in ``COMMANDS`` below. Command modules import heavy dependencies (torch,
onnx, grpc, matplotlib) inside ``run`` only, so ``denarius --help`` stays fast and a
serving host without PyTorch can run every serving command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from denarius.engine.errors import DenariusError

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> (module in denarius.serving.cli, one-line help). Order is the order of `denarius --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("cmd_quickstart", "run the whole pipeline on a small synthetic set (the README's main job)"),
    "preprocess": ("cmd_preprocess", "preprocess coin photos and write a contact sheet"),
    "validate": ("cmd_validate", "validate a dataset manifest and show its class tables"),
    "synth": ("cmd_synth", "generate a synthetic Roman imperial coin dataset"),
    "scan": ("cmd_scan", "identify a whole collection (manifest or folder) into resumable JSON lines"),
    "train": ("cmd_train", "train the emperor (obverse) and RIC (reverse) AlexNets on a manifest"),
    "evaluate": ("cmd_evaluate", "k-fold cross-validation of the CNN and the SIFT+SVM baseline (paper Table 1)"),
    "export": ("cmd_export", "export a training run to a model bundle (ONNX, gradient graphs, INT8/FP16, TensorRT)"),
    "bundle-info": ("cmd_bundle_info", "verify a model bundle and summarise what it holds"),
    "serve": ("cmd_serve", "serve a model bundle over gRPC (health, reflection, metrics, TLS, tokens)"),
    "identify": ("cmd_identify", "identify a coin from its obverse/reverse photos (via a server or a local bundle)"),
    "bench": ("cmd_bench", "benchmark throughput, latency and landmark cost (JSON + Markdown + PNG)"),
    "landmarks": ("cmd_landmarks", "characteristic landmarks of a coin photo (optimised mask, occlusion, saliency)"),
    "landmarks-eval": ("cmd_landmarks_eval", "score landmark methods on a synthetic set's ground truth (pointing game, energy, deletion)"),
    "kernel-check": ("cmd_kernel_check", "check the landmark CUDA kernels against NumPy (errors, timings); NumPy alone without a GPU"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denarius",
        description="Identify Roman imperial coins and show their characteristic landmarks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(f"denarius.serving.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"denarius.serving.cli.{module_name}":
                raise
            # A broken install, never a normal state: tests/test_imports.py imports every command.
            logging.getLogger(__name__).warning("subcommand %r unavailable: %s", name, error)
            continue
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except DenariusError as error:
        print(f"denarius {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"denarius {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
