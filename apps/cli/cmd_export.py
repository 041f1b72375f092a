"""`denarius export`: training run directory -> model bundle (ONNX, gradient graphs, variants)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    'denarius export runs/r1 --out bundles/v1',
    'denarius export runs/r1 --out bundles/v1 --int8 --calibration data/manifest.csv',
    'denarius export runs/r1 --out bundles/v1 --sign-key keys/bundle-signing.key',
    'denarius export runs/r1 --out bundles/v1 --calibrate-on heldout.csv --unknown-manifest unknown.csv --open-set-far 0.05',
)  # shown under `denarius export --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory of `denarius train` (emperor.pt, ric.pt, run.json)")
    parser.add_argument("--out", type=Path, required=True, metavar="BUNDLE", help="bundle directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    parser.add_argument("--sign-key", type=Path, default=None, metavar="KEY.pem",
                        help="sign manifest.json with this Ed25519 private key (from `denarius bundle-keygen`); "
                             "servers given the public key refuse an edited manifest")
    parser.add_argument("--model-version", default=None,
                        help="version string recorded in the bundle (default: run folder name + checkpoint hash)")
    quant = parser.add_argument_group("INT8")
    quant.add_argument("--int8", action="store_true",
                       help="add QDQ INT8 files (onnxruntime static quantisation; also TensorRT's INT8 input)")
    quant.add_argument("--calibration", type=Path, default=None, metavar="MANIFEST",
                       help="dataset manifest whose photographs calibrate INT8 (default: the run's manifest)")
    quant.add_argument("--calibration-size", type=int, default=300, metavar="N", help="coins used for calibration (default 300)")
    quant.add_argument("--evaluation-size", type=int, default=200, metavar="N",
                       help="held-out coins for the INT8 agreement report (default 200)")
    quant.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                       help="activation range estimator (default minmax)")
    world = parser.add_argument_group("calibration and coins outside the catalogue")
    world.add_argument("--calibrate-on", type=Path, default=None, metavar="HELDOUT.csv",
                       help="held-out coins of the catalogue: fit one temperature per model on half, report the ECE on the other "
                            "(images shared with the training manifest are dropped); scores become calibrated")
    world.add_argument("--unknown-manifest", type=Path, default=None, metavar="UNKNOWN.csv",
                       help="coins of emperors/types outside the catalogue (e.g. `denarius synth --seed 1`): choose the open-set "
                            "score and threshold; pairs below it are answered 'unknown'")
    world.add_argument("--open-set-far", type=float, default=0.05, metavar="RATE",
                       help="false-accept rate of unknown coins the threshold is chosen for (default 0.05)")
    world.add_argument("--open-set-score", choices=("max_joint", "agreement", "energy", "min_side"), default=None,
                       help="open-set score (default: the one with the highest AUROC)")
    parser.add_argument("--fp16", action="store_true", help="add fp16 files (fp16 compute, fp32 image/logits)")
    trt = parser.add_argument_group("TensorRT (only where `import tensorrt` works; skipped with a message otherwise)")
    trt.add_argument("--tensorrt", "--trt", action="store_true", help="build TensorRT plans for this machine's GPU")
    trt.add_argument("--trt-precision", choices=("fp32", "fp16", "int8"), default=None,
                     help="plan precision (default: int8 with --int8, else fp16)")
    trt.add_argument("--trt-batch", type=int, nargs=3, default=(1, 8, 32), metavar=("MIN", "OPT", "MAX"),
                     help="batch optimisation profile (default 1 8 32)")
    trt.add_argument("--trt-workspace-mib", type=int, default=2048, metavar="MIB", help="builder workspace limit (default 2048)")
    trt.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                     help="persistent TensorRT timing cache (default: RUN_DIR/tensorrt.cache)")
    trt.add_argument("--strongly-typed", action="store_true",
                     help="TensorRT 10: strongly typed network (precision from the fp16/QDQ file); always on in 11")
    parser.add_argument("--parity-images", type=int, default=16, metavar="N",
                        help="photographs in the ORT-vs-PyTorch parity batch (default 16)")
    parser.add_argument("--parity-photo", type=Path, action="append", default=[], metavar="PATH",
                        help="photograph to include in the parity batch first (repeatable)")


def run(args: argparse.Namespace) -> int:
    from denarius.export.bundle_export import ExportConfig, export_bundle
    from denarius.export.quantize import QuantizeConfig
    from denarius.export.tensorrt import TensorRTConfig

    if args.calibration is not None and not args.int8:
        print("denarius export: note: --calibration is only used with --int8")
    minimum, optimum, maximum = args.trt_batch
    config = ExportConfig(
        int8=args.int8,
        calibration=args.calibration,
        quantize=QuantizeConfig(
            calibration_size=args.calibration_size, evaluation_size=args.evaluation_size, method=args.calibration_method
        ),
        fp16=args.fp16,
        tensorrt=args.tensorrt,
        tensorrt_config=TensorRTConfig(
            precision=args.trt_precision or ("int8" if args.int8 else "fp16"),
            min_batch=minimum, opt_batch=optimum, max_batch=maximum,
            workspace_mib=args.trt_workspace_mib,
            timing_cache=args.timing_cache or args.run_dir / "tensorrt.cache",
            strongly_typed=True if args.strongly_typed else None,
        ),
        model_version=args.model_version,
        parity_sources=tuple(args.parity_photo),
        parity_images=args.parity_images,
        overwrite=args.overwrite,
        sign_key=args.sign_key,
        calibrate_on=args.calibrate_on,
        unknown_manifest=args.unknown_manifest,
        open_set_far=args.open_set_far,
        open_set_score=args.open_set_score,
    )
    result = export_bundle(args.run_dir, args.out, config=config)
    signed = f", manifest signed by {result.signed_by}" if result.signed_by else ""
    print(f"bundle {result.path} (model version {result.version}{signed})")
    for model, report in result.parity.items():
        print(
            f"  {model}: ORT vs PyTorch on {report['images']} photos: max |diff| {report['max_abs_diff']:.2e} "
            f"= {report['relative']:.2e} of the logit scale (limit {report['tolerance']:.0e})"
        )
        for variant, agreement in result.agreement.get(model, {}).items():
            line = (f"  {model}: {variant} vs fp32 on {agreement['images']} held-out photos: "
                    f"top-1 agreement {agreement['top1_agreement']:.1%}")
            if agreement.get("accuracy_delta") is not None:
                line += (
                    f", accuracy {agreement['variant_accuracy']:.1%} vs {agreement['fp32_accuracy']:.1%}"
                    f" ({agreement['accuracy_delta']:+.1%})"
                )
            print(line)
        for key, name in result.plans.get(model, {}).items():
            print(f"  {model}: TensorRT plan {name} ({key})")
    calibration = result.open_world.get("calibration")
    if calibration:
        report = calibration["report"]
        for model in ("emperor", "ric"):
            ece = report["ece"][model]
            print(f"  {model}: temperature {calibration[model]['temperature']:.3f}; ECE on {report['test_coins']} held-out coins "
                  f"{ece['before']:.4f} -> {ece['after']:.4f} (fitted on {report['fit_coins']}); {report['figure']}")
    rule = result.open_world.get("open_set")
    if rule:
        aurocs = ", ".join(f"{name} {value:.3f}" for name, value in rule["report"]["auroc"].items())
        print(f"  open set: AUROC known vs {rule['report']['unknown_coins']} unknown coins: {aurocs}")
        print(f"  open set: score {rule['score']}, threshold {rule['threshold']:.4g} for a false-accept rate of {rule['far']:.1%} "
              f"(measured {rule['report']['false_accept_rate']:.1%}; known coins accepted {rule['report']['known_accepted']:.1%}); "
              f"{rule['report']['figure']}")
    for note in result.skipped:
        print(f"  note: {note}")
    return 0
