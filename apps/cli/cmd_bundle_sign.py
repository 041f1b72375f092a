"""`denarius bundle-sign`: sign an existing bundle's manifest.json (verified first; needs `cryptography`)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    'denarius bundle-sign bundles/v1 --key keys/bundle-signing.key',
)  # shown under `denarius bundle-sign --help`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory (from `denarius export`)")
    parser.add_argument("--key", type=Path, required=True, metavar="KEY.pem",
                        help="Ed25519 private key (from `denarius bundle-keygen`)")


def run(args: argparse.Namespace) -> int:
    from denarius.engine.bundle import load_bundle
    from denarius.engine.bundle_signing import load_private_key, sign_manifest

    key = load_private_key(args.key)
    load_bundle(args.bundle)  # sign only what verifies: every path inside, every sha256 right
    signature = sign_manifest(args.bundle, key)
    try:  # what was signed is what verifies (no manifest swapped in between)
        bundle = load_bundle(args.bundle, verify_key=key.public_key())
    except BaseException:
        signature.unlink(missing_ok=True)
        raise
    print(f"signed {args.bundle / 'manifest.json'} -> {signature} (key {bundle.signed_by})")
    return 0
