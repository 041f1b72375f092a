"""The ``denarius`` command line.

Each subcommand is one module in this package with two functions and its examples::

    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int     # an exit status below
    EXAMPLES: tuple[str, ...]                     # shown under `denarius <command> --help`

and one line in ``COMMANDS`` below. Command modules import heavy dependencies (torch,
onnx, grpc, matplotlib) inside ``run`` only, so ``denarius --help`` stays fast and a
serving host without PyTorch can run every serving command.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from denarius import __version__
from denarius.engine.atomic_write import DISK_FULL_ERRNOS
from denarius.engine.errors import ConfigError, DenariusError
from denarius.serving.logs import LOG_FORMATS, configure_logging

__all__ = ["main", "build_parser", "COMMANDS", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_PARTIAL", "EXIT_INTERRUPTED"]

# Exit statuses of every subcommand (documented in the README and in `denarius --help`).
EXIT_OK = 0  # done, every item succeeded
EXIT_FAILURE = 1  # the run failed: unreadable bundle, unreachable server, I/O error, every item failed
EXIT_USAGE = 2  # bad command line or settings (argparse's own status too)
EXIT_PARTIAL = 3  # the run finished, but some items failed (their errors are in the output)
EXIT_INTERRUPTED = 130  # Ctrl-C

_EPILOG = (
    f"exit status: {EXIT_OK} success, {EXIT_FAILURE} failure, {EXIT_USAGE} usage error, "
    f"{EXIT_PARTIAL} finished with some failed items, {EXIT_INTERRUPTED} interrupted"
)

# name -> (module in denarius.apps.cli, one-line help). Order is the order of `denarius --help`.
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
    "bundle-keygen": ("cmd_bundle_keygen", "create an Ed25519 keypair for signing bundle manifests"),
    "bundle-sign": ("cmd_bundle_sign", "sign an existing bundle's manifest with an Ed25519 private key"),
    "serve": ("cmd_serve", "serve a model bundle over gRPC (health, reflection, metrics, TLS, tokens)"),
    "identify": ("cmd_identify", "identify a coin from its obverse/reverse photos (via a server or a local bundle)"),
    "bench": ("cmd_bench", "benchmark throughput, latency and landmark cost (JSON + Markdown + PNG)"),
    "landmarks": ("cmd_landmarks", "characteristic landmarks of a coin photo (optimised mask, occlusion, saliency)"),
    "guidebook": ("cmd_guidebook", "write a bundle's class guidebooks (mean landmarks of each RIC label and emperor) into it"),
    "landmarks-eval": ("cmd_landmarks_eval", "score landmark methods on a synthetic set's ground truth (pointing game, energy, deletion)"),
    "watchlist": ("cmd_watchlist", "a watchlist of physical specimens: add, remove, list, match (same specimen / same die)"),
    "kernel-check": ("cmd_kernel_check", "check the landmark CUDA kernels against NumPy (errors, timings); NumPy alone without a GPU"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denarius",
        description="Identify Roman imperial coins and show their characteristic landmarks.",
        epilog=_EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text (default) or json: one JSON object per line (time, level, logger, message, request_id)")
    parser.add_argument("--version", action="version", version=f"denarius {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(f"denarius.apps.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"denarius.apps.cli.{module_name}":
                raise
            # A broken install, never a normal state: tests/test_imports.py imports every command.
            logging.getLogger(__name__).warning("subcommand %r unavailable: %s", name, error)
            continue
        examples = "examples:\n" + "".join(f"  {line}\n" for line in module.EXAMPLES)
        command_parser = sub.add_parser(name, help=help_text, description=help_text, epilog=examples + "\n" + _EPILOG,
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Client text in a message is escaped and tracebacks are indented (serving/logs.py).
    configure_logging(level=logging.DEBUG if args.verbose else logging.INFO, log_format=args.log_format)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(args) or EXIT_OK)
    except ConfigError as error:
        print(f"denarius {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DenariusError as error:
        print(f"denarius {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:  # a full disk, a folder where a file was expected, a permission: one line, no traceback
        print(f"denarius {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except ModuleNotFoundError as error:
        print(f"denarius {args.command}: error: {missing_extra_hint(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"denarius {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def describe_os_error(error: OSError) -> str:
    """One line for an OSError: what failed and on which file.

    A full disk or an exhausted quota (the writers name the output in ``filename``, see
    ``denarius.engine.atomic_write``) reads "no space left on device while writing
    out.jsonl (ENOSPC); free some space or write elsewhere".
    """
    name, code = getattr(error, "filename", None), error.errno
    if code is not None and code in DISK_FULL_ERRNOS:
        reason = (error.strerror or os.strerror(code)).lower()
        where = f" while writing {name}" if name else ""
        return f"{reason}{where} ({errno.errorcode.get(code, code)}); free some space or write elsewhere"
    where = f" ({name})" if name else ""
    return f"{error.strerror or error}{where}"


# top-level module -> the extra that installs it (tests/test_packaging.py checks it against
# pyproject.toml's extras)
_EXTRAS = {
    "grpc": "serve", "grpc_health": "serve", "grpc_reflection": "serve", "google": "serve", "prometheus_client": "serve",
    "fastapi": "serve", "starlette": "serve", "uvicorn": "serve", "multipart": "serve", "python_multipart": "serve",
    "faiss": "serve", "cryptography": "serve",
    "torch": "train", "onnx": "train", "sklearn": "train", "skimage": "train", "matplotlib": "train", "captum": "train",
    "onnxruntime": "cpu", "ray": "ray", "tensorrt": "tensorrt", "pycuda": "gpu", "openvino": "openvino",
}


def missing_extra_hint(error: ModuleNotFoundError) -> str:
    """'this command needs <module>: pip install "denarius[<extra>]"' for a missing optional dependency."""
    top = (error.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return f"a required module is missing: {error}"
    return f"this command needs {top}, which is not installed: pip install 'denarius[{extra}]'"


if __name__ == "__main__":
    sys.exit(main())
