"""`denarius guidebook`: write a bundle's class guidebooks (the mean landmark map of every RIC
label and emperor over held-out coins) into the bundle, listed and hashed in its manifest.

The bundle's own landmark service computes the maps (optimised method, epsilon 0.5, by
default), so the guidebook is of the models the bundle serves. ``denarius serve`` then
answers ``GET /v1/guidebook/{label}`` with the PNG and the web page shows it for the
chosen type. The guidebook files are part of the bundle: their sha256 are in
``manifest.json``, so a load verifies them, and a signed bundle must be signed again
(``--sign-key`` here, or ``denarius bundle-sign``): a signed bundle without ``--sign-key`` is
refused rather than left unsigned.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    "denarius guidebook bundles/v1 --images data/heldout/manifest.csv --per-class 8",
    "denarius guidebook bundles/v1 --images heldout.csv --exclude-shared-with data/train/manifest.csv --sign-key keys/bundle-signing.key",
)  # shown under `denarius guidebook --help`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory (from `denarius export`), written in place")
    parser.add_argument("--images", type=Path, required=True, metavar="MANIFEST",
                        help="dataset manifest (CSV) of coins of the bundle's catalogue the models did not train on")
    parser.add_argument("--per-class", type=int, default=8, metavar="N", help="coins averaged per class at most (default 8)")
    parser.add_argument("--exclude-shared-with", nargs="+", type=Path, default=[], metavar="MANIFEST",
                        help="drop coins with an image byte-identical to one of these manifests' (the training sets)")
    parser.add_argument("--epsilon", type=float, default=0.5, help="epsilon of the optimised landmarks (default 0.5)")
    parser.add_argument("--backend", default="auto", help="auto, ort-cpu, ort-cuda or tensorrt (default auto)")
    parser.add_argument("--sign-key", type=Path, metavar="KEY.pem",
                        help="Ed25519 private key: sign the rewritten manifest (required when the bundle is signed)")


def run(args: argparse.Namespace) -> int:
    from denarius.engine.bundle import load_bundle
    from denarius.engine.bundle_signing import SIGNATURE_NAME, load_private_key, sign_manifest
    from denarius.engine.errors import ConfigError
    from denarius.engine.landmarks.api import LandmarkConfig
    from denarius.engine.landmarks.guidebook_build import GuidebookConfig, build_guidebook
    from denarius.engine.manifest import image_digests, read_manifest

    config = GuidebookConfig(per_class=args.per_class, landmarks=LandmarkConfig(epsilon=args.epsilon),
                             backend=args.backend, progress=True)
    key = load_private_key(args.sign_key) if args.sign_key is not None else None
    signed = (args.bundle / SIGNATURE_NAME).is_file()
    if signed and key is None:
        raise ConfigError(f"{args.bundle} is signed ({SIGNATURE_NAME}); adding a guidebook rewrites its manifest, so pass "
                          "--sign-key KEY.pem to sign it again (or delete the signature to leave the bundle unsigned)")
    load_bundle(args.bundle)  # refuse a bundle that does not verify before any work
    records = read_manifest(args.images)
    if args.exclude_shared_with:
        seen = set().union(*(image_digests(read_manifest(m)) for m in args.exclude_shared_with))
        kept = [r for r in records if not image_digests([r]) & seen]
        print(f"dropped {len(records) - len(kept)} of {len(records)} coins sharing an image with the training manifests")
        records = kept
    index = build_guidebook(args.bundle, records, config)
    entries = index["entries"]
    rics = [e for e in entries if e["kind"] == "ric"]
    emperors = [e for e in entries if e["kind"] == "emperor"]
    bundle = load_bundle(args.bundle)
    missing = [label for label in bundle.hierarchy.rics if label not in {e["label"] for e in rics}]
    print(f"guidebook: {len(rics)} of {len(bundle.hierarchy.rics)} RIC labels, {len(emperors)} of "
          f"{len(bundle.hierarchy.emperors)} emperors, up to {args.per_class} coins each -> {args.bundle / 'guidebook'}")
    if missing:
        print(f"no held-out coins (so no guidebook) for {len(missing)} RIC labels: {', '.join(missing[:10])}"
              f"{', ...' if len(missing) > 10 else ''}")
    if key is not None:
        signature = sign_manifest(args.bundle, key)
        verified = load_bundle(args.bundle, verify_key=key.public_key())
        print(f"signed {args.bundle / 'manifest.json'} -> {signature} (key {verified.signed_by})")
    return 0
