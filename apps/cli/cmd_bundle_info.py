"""`denarius bundle-info`: verify a model bundle and print what it holds (no PyTorch needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = (
    'denarius bundle-info bundles/v1',
    'denarius bundle-info bundles/v1 --verify-key keys/bundle-signing.pub',
)  # shown under `denarius bundle-info --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory (from `denarius export`)")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of every file")
    parser.add_argument("--verify-key", type=Path, default=None, metavar="PUB.pem",
                        help="require manifest.json to be signed with this Ed25519 public key (from `denarius bundle-keygen`)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--classes", action="store_true", help="list every class name")


def _size(path: Path) -> str:
    size = path.stat().st_size
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"cnn": {"mean": {"ric": 0.8}}} -> {"cnn.mean.ric": 0.8} (metrics of `denarius evaluate` nest)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def summary(bundle) -> dict:
    """Plain-dict summary of a loaded ``denarius.engine.bundle.Bundle``."""
    return {
        "path": str(bundle.path),
        "schema_version": bundle.schema_version,
        "version": bundle.version,
        "created": bundle.created,
        "preprocess": bundle.preprocess.to_dict(),
        "emperors": len(bundle.hierarchy.emperors),
        "rics": len(bundle.hierarchy.rics),
        "models": {
            name: {
                "side": info.side,
                "classes": len(info.classes),
                "input": [None, 3, info.input_size, info.input_size],
                "files": {variant: {"path": rel, "bytes": (bundle.path / rel).stat().st_size} for variant, rel in info.files.items()},
                "plans": dict(info.plans),
                "agreement": dict(info.agreement),
            }
            for name, info in bundle.models.items()
        },
        "metrics": dict(bundle.metrics),
        "descriptions": len(bundle.descriptions),
        "signed_by": bundle.signed_by,
    }


def run(args: argparse.Namespace) -> int:
    from denarius.engine.bundle import load_bundle

    bundle = load_bundle(args.bundle, verify=not args.no_verify, verify_key=args.verify_key)
    if args.json:
        print(json.dumps(summary(bundle), indent=2))
        return 0
    spec = bundle.preprocess
    verified = "not verified (--no-verify)" if args.no_verify else "every sha256 verified"
    if bundle.signed_by:
        verified += f", manifest signature verified (key {bundle.signed_by})"
    print(f"bundle {bundle.path}: model version {bundle.version}, schema {bundle.schema_version}, created {bundle.created}; {verified}")
    print(
        f"  preprocessing: resize {spec.resize}, crop {spec.crop}, mean {list(spec.mean)}, std {list(spec.std)}, "
        f"{spec.channel_order}, background removal {'on' if spec.remove_background else 'off'}, pipeline version {spec.pipeline_version}"
    )
    tree = bundle.hierarchy
    print(f"  hierarchy: {len(tree.emperors)} emperors, {len(tree.rics)} RIC classes; {len(bundle.descriptions)} RIC descriptions")
    for name, info in bundle.models.items():
        print(f"  {name} model ({info.side}): {len(info.classes)} classes, "
              f"input (N, 3, {info.input_size}, {info.input_size}) '{info.input_name}' -> '{info.output_name}'")
        for variant, relative in info.files.items():
            print(f"    {variant:5s} {relative} ({_size(bundle.path / relative)})")
        for key, relative in info.plans.items():
            print(f"    plan  {relative} [{key}] ({_size(bundle.path / relative)})")
        for variant, report in info.agreement.items():
            line = (f"    {variant} vs fp32: top-1 agreement {_percent(report.get('top1_agreement'))} "
                    f"on {report.get('images', '?')} held-out images")
            if report.get("accuracy_delta") is not None:
                line += f", accuracy delta {report['accuracy_delta']:+.1%}"
            print(line)
        if args.classes:
            print("    classes: " + ", ".join(info.classes))
    if bundle.metrics:
        flat = _flatten(bundle.metrics)
        print("  metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items()))
    else:
        print("  metrics: none recorded (run cross-validation to add them)")
    return 0
