"""`denarius landmarks-eval`: score the landmark methods on a synthetic set's ground truth.

    denarius landmarks-eval --bundle BUNDLE SYNTH_DIR --out DIR

writes ``DIR/scores.json`` (``methods.<optimized|occlusion|saliency>.{pointing_game, energy,
deletion_auc, seconds_per_image, forward_equivalents}`` for the first window size, and
``by_window``), ``DIR/scores.md`` (a Markdown table) and ``DIR/figure.png`` (paper Fig. 7:
input with ground-truth polygons, then each method at 11x11 and 21x21) and
``DIR/guidebook_<side>_<label>.png`` (mean optimised landmarks of the most frequent labels) and
``DIR/path.png`` (the optimised heatmap's pointing game had the optimiser stopped after 2, 3,
5, ... iterations, against the baselines; ``path`` in scores.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

METHODS = ("optimized", "occlusion", "saliency")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("synth_dir", type=Path, help="folder written by `denarius synth` (manifest.csv + landmarks.jsonl)")
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle with gradient graphs")
    parser.add_argument("--out", type=Path, required=True, help="output folder (scores.json, scores.md, figure.png)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to score (default all)")
    parser.add_argument("--windows", nargs="+", type=int, default=[11, 21], help="window sizes (default 11 21; the first is the headline)")
    parser.add_argument("--stride", type=int, default=3, help="window stride (default 3)")
    parser.add_argument("--epsilon", type=float, default=0.5, help="optimiser epsilon (default 0.5)")
    parser.add_argument("--reference", default="blur", choices=("blur", "black"),
                        help="what a removed region becomes, for the optimiser, occlusion and the deletion curve (default blur)")
    parser.add_argument("--sides", nargs="+", default=["obverse", "reverse"], choices=("obverse", "reverse"), help="sides to score")
    parser.add_argument("--limit", type=int, help="at most this many images per side")
    parser.add_argument("--batch", type=int, default=8, help="images per landmark call (default 8)")
    parser.add_argument("--guidebooks", type=int, default=2, help="class guidebooks per side for the most frequent labels (default 2)")


def run(args: argparse.Namespace) -> int:
    from denarius.engine.bundle import load_bundle
    from denarius.evaluation.eval import EvalConfig, evaluate

    config = EvalConfig(
        methods=tuple(args.methods), windows=tuple(args.windows), stride=args.stride, epsilon=args.epsilon, reference=args.reference,
        sides=tuple(args.sides), limit=args.limit, batch=args.batch, guidebooks=args.guidebooks,
    )
    scores = evaluate(load_bundle(args.bundle), args.synth_dir, args.out, config=config)
    print((args.out / "scores.md").read_text(), end="")
    written = [args.out / name for name in ("scores.json", "scores.md", "figure.png", "path.png") if (args.out / name).exists()]
    print("wrote " + ", ".join(str(path) for path in written))
    return 0 if scores["images"] else 1
