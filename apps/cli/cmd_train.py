"""``denarius train MANIFEST --out RUN_DIR``: train the emperor (obverse) and RIC (reverse) models.

Writes RUN_DIR/emperor.pt, RUN_DIR/ric.pt (checkpoints, saved after every epoch) and
RUN_DIR/run.json, which ``denarius export`` turns into a model bundle. ``--resume``
continues from the checkpoints in RUN_DIR (same manifest, width and input size).
"""

from __future__ import annotations

import argparse

EXAMPLES = (
    'denarius train data/manifest.csv --out runs/r1',
    'denarius train data/manifest.csv --out runs/r1 --epochs 60 --weights alexnet-owt.pth',
)  # shown under `denarius train --help`

def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The TrainConfig flags, shared with ``denarius evaluate``."""
    # Defaults come from TrainConfig itself (one source of truth); None = "use the default".
    g = parser.add_argument_group("CNN training")
    g.add_argument("--epochs", type=int, default=None, help="passes over the training coins (default 40)")
    g.add_argument("--input-size", type=int, default=None, help="network input side in px (default 96; the paper: 224)")
    g.add_argument("--width", type=float, default=None, help="AlexNet channel multiplier (default 0.25; the paper: 1.0)")
    g.add_argument("--weights", default=None, help="'imagenet' or a torchvision AlexNet .pth (default: from scratch)")
    g.add_argument("--lr", type=float, default=None, help="learning rate of the pre-trained layers (default 2e-4)")
    g.add_argument(
        "--new-layer-lr-mult", type=float, default=None,
        help="LR multiplier of the new last layer (default 10 with --weights, 1 from scratch)",
    )
    g.add_argument("--optimizer", choices=("adamw", "sgd"), default=None, help="default adamw")
    g.add_argument("--batch-size", type=int, default=None, help="images per step (default 32)")
    g.add_argument("--weight-decay", type=float, default=None, help="default 5e-4")
    g.add_argument("--dropout", type=float, default=None, help="classifier dropout (default 0; AlexNet: 0.5)")
    g.add_argument("--jitter", type=float, default=None, help="photometric jitter of training crops, 0 = off (default 0.5)")
    g.add_argument("--no-balance", dest="balance", action="store_false", default=None,
                   help="plain cross-entropy instead of inverse-class-frequency weights")
    g.add_argument("--seed", type=int, default=0, help="seeds initialisation, shuffling, crops, dropout and folds")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: best on a shared, busy CPU)")
    parser.add_argument("--merge-threshold", type=int, default=2,
                        help="merge RIC types whose reverse descriptions differ in fewer words (0: off)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def train_config_from_args(args: argparse.Namespace):
    from denarius.training.train import TrainConfig

    mapping = {
        "epochs": args.epochs, "input_size": args.input_size, "width": args.width, "weights": args.weights,
        "lr": args.lr, "new_layer_lr_mult": args.new_layer_lr_mult, "optimizer": args.optimizer,
        "batch_size": args.batch_size, "weight_decay": args.weight_decay, "dropout": args.dropout, "jitter": args.jitter,
        "balance": args.balance,
        "seed": args.seed, "threads": args.threads,
    }
    return TrainConfig(**{k: v for k, v in mapping.items() if v is not None})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="dataset manifest CSV")
    parser.add_argument("--out", required=True, help="run folder for emperor.pt, ric.pt and run.json")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    parser.add_argument("--metrics", default=None, help="a report.json of `denarius evaluate` whose mean accuracies go into run.json")
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from denarius.engine.errors import ConfigError
    from denarius.training.train import setup_torch, train_run

    config = train_config_from_args(args)
    metrics = None
    if args.metrics:
        path = Path(args.metrics)
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--metrics {path}: cannot read a report.json ({exc})") from exc
        metrics = {m: {"mean": report[m]["mean"], "std": report[m]["std"]} for m in ("cnn", "svm") if m in report}
    setup_torch(config.threads or 1)
    run_info = train_run(
        args.manifest, args.out, config=config, merge_threshold=args.merge_threshold, resume=args.resume,
        metrics=metrics, progress=not args.quiet,
    )
    for task, info in run_info["training"].items():
        print(f"{task}: {info['classes']} classes, {info['epochs']} epochs, train loss {info['train_loss']:.3f}, "
              f"train accuracy {100 * info['train_accuracy']:.1f}%")
    print(f"wrote {Path(args.out) / 'emperor.pt'}, {Path(args.out) / 'ric.pt'}, {Path(args.out) / 'run.json'}")
    return 0
