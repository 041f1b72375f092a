"""`denarius bundle-keygen`: an Ed25519 keypair for signing bundle manifests (needs `cryptography`)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    'denarius bundle-keygen --out keys/',
    'denarius bundle-keygen --out keys/ --overwrite',
)  # shown under `denarius bundle-keygen --help`; then: export --sign-key keys/bundle-signing.key,
#   bundle-info --verify-key keys/bundle-signing.pub


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for bundle-signing.key (private, mode 0600: keep it off servers) "
                             "and bundle-signing.pub (public: give it to servers)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing keypair in DIR")


def run(args: argparse.Namespace) -> int:
    from denarius.engine.bundle_signing import generate_keypair, key_fingerprint, load_public_key

    private_path, public_path = generate_keypair(args.out, overwrite=args.overwrite)
    print(f"private key {private_path} (mode 0600; signs bundles: `denarius export ... --sign-key {private_path}`)")
    print(f"public key  {public_path} ({key_fingerprint(load_public_key(public_path))}; "
          f"verifies them: `denarius bundle-info BUNDLE --verify-key {public_path}`)")
    return 0
