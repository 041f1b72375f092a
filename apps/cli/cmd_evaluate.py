"""``denarius evaluate MANIFEST --out REPORT_DIR``: k-fold cross-validation, CNN and/or SVM.

Reports the paper's three tasks (Reverse, Obverse, Hierarchy) as mean per-class accuracy
with fold std, plus top-1/top-5, in REPORT_DIR/report.json and table.md, with confusion
matrices and accuracy-vs-iterations PNGs. Both methods use the same folds.
"""

from __future__ import annotations

import argparse

from denarius.apps.cli.cmd_train import add_training_arguments, train_config_from_args

EXAMPLES = (
    'denarius evaluate data/manifest.csv --out reports/cv --method both --folds 5',
)  # shown under `denarius evaluate --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="dataset manifest CSV")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--method", choices=("cnn", "svm", "both"), default="both", help="default both")
    parser.add_argument("--folds", type=int, default=5, help="k of the class-balanced k-fold split (default 5)")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNGs")
    add_training_arguments(parser)
    g = parser.add_argument_group("SIFT + SVM baseline")
    g.add_argument("--svm-image-size", type=int, default=None,
                   help="canonical image side for SIFT (default: the CNN's canonical size, 256/224 x --input-size)")
    g.add_argument("--svm-step", type=int, default=None, help="dense SIFT grid spacing in px (default 6)")
    g.add_argument("--svm-codebook", type=int, default=None, help="visual words (default 256)")
    g.add_argument("--svm-c", type=float, default=None, help="LinearSVC C (default 1.0)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from denarius.training.baseline_svm import SVMConfig
    from denarius.training.data import load_dataset
    from denarius.training.evaluate import cross_validate
    from denarius.training.report import format_table, write_report

    methods = ("cnn", "svm") if args.method == "both" else (args.method,)
    train_config = train_config_from_args(args)
    image_size = args.svm_image_size or train_config.preprocess_spec().resize  # same pixels as the CNN
    svm_fields = {"image_size": image_size, "step": args.svm_step, "codebook_size": args.svm_codebook, "C": args.svm_c}
    svm_config = SVMConfig(seed=args.seed, **{k: v for k, v in svm_fields.items() if v is not None})
    dataset = load_dataset(args.manifest, merge_threshold=args.merge_threshold)
    if "cnn" in methods:
        from denarius.training.train import setup_torch  # torch: only for the CNN

        setup_torch(train_config.threads or 1)
    report = cross_validate(
        dataset, folds=args.folds, seed=args.seed, methods=methods, train_config=train_config,
        svm_config=svm_config, manifest=str(Path(args.manifest).resolve()), progress=not args.quiet,
    )
    written = write_report(report, args.out, figures=not args.no_figures)
    print(format_table(report), end="")
    print(f"{len(report['folds'])} folds, {report['coins']} coins, {report['wall_seconds']:.0f} s on {report['hardware']}")
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0
