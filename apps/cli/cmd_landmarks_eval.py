"""`denarius landmarks-eval`: score the landmark methods on a synthetic set's ground truth.

    denarius landmarks-eval --bundle BUNDLE SYNTH_DIR --out DIR [--peers captum] [--methods ...]

writes ``DIR/scores.json`` (per method: ``methods`` at the first window size, ``by_window``,
``by_side``, each with ``pointing_game``, ``pointing_game_torchray``,
``pointing_game_tie_robust``, ``pointing_game_difficult``, ``energy``, ``deletion_auc``,
``sufficiency`` (per kept share q), ``sufficiency_auc``, costs and ``intervals``; then
``baselines`` (centre and random point), ``peers`` (Captum's methods, with ``--peers
captum``), ``parts``, ``path``), ``DIR/scores.md`` (the tables, with 95% bootstrap intervals),
``DIR/heatmaps_<side>.npz`` (the maps scored, ground-truth masks, labels and crop geometry:
see :mod:`denarius.evaluation.heatmaps`), ``DIR/figure.png`` (paper Fig. 7: input with
ground-truth polygons, then each method at each window), ``DIR/guidebook_<side>_<label>.png``
(mean optimised landmarks of the most frequent labels) and ``DIR/path.png`` (the optimised
heatmap's pointing game had the optimiser stopped after 2, 3, 5, ... iterations). The
metrics are described in :mod:`denarius.evaluation.eval`; a new method variant is
registered in :mod:`denarius.evaluation.methods`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    'denarius landmarks-eval --bundle bundles/v1 data/heldout --out lm-eval/ --limit 128 --windows 5 --stride 2',
    'denarius landmarks-eval --bundle bundles/v1 data/heldout --out lm-eval/ --windows 5 --stride 2 --peers captum '
    '--exclude-shared-with data/train/manifest.csv',
)  # shown under `denarius landmarks-eval --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("synth_dir", type=Path, help="folder written by `denarius synth` (manifest.csv + landmarks.jsonl)")
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle with gradient graphs")
    parser.add_argument("--out", type=Path, required=True, help="output folder (scores.json, scores.md, figure.png)")
    parser.add_argument("--methods", nargs="+", default=["optimized", "occlusion", "saliency"], metavar="METHOD",
                        help="methods to score, names in denarius.evaluation.methods.EVAL_METHODS (default: optimized occlusion saliency)")
    parser.add_argument("--windows", nargs="+", type=int, default=[11, 21], help="window sizes (default 11 21; the first is the headline)")
    parser.add_argument("--stride", type=int, default=3, help="window stride (default 3)")
    parser.add_argument("--epsilon", type=float, default=0.5, help="optimiser epsilon (default 0.5)")
    parser.add_argument("--reference", default="blur", choices=("blur", "black"),
                        help="what a removed region becomes, for the optimiser, occlusion and the deletion curve (default blur)")
    parser.add_argument("--sides", nargs="+", default=["obverse", "reverse"], choices=("obverse", "reverse"), help="sides to score")
    parser.add_argument("--limit", type=int, help="at most this many images per side")
    parser.add_argument("--batch", type=int, default=8, help="images per landmark call (default 8)")
    parser.add_argument("--guidebooks", type=int, default=2, help="class guidebooks per side for the most frequent labels (default 2)")
    parser.add_argument("--peers", nargs="*", default=[], choices=("captum",),
                        help="peer libraries on the same model: captum (Occlusion, Saliency, IntegratedGradients, LayerGradCam)")
    parser.add_argument("--ig-steps", type=int, default=32, help="integration steps of the Captum integrated-gradients peer (default 32)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--backend", default="auto", help="landmark service backend: auto, ort-cpu, ort-cuda (default auto)")
    parser.add_argument("--exclude-shared-with", nargs="+", type=Path, default=[], metavar="MANIFEST",
                        help="training manifests: images byte-identical (sha256) to one of theirs are not scored")
    parser.add_argument("--no-heatmaps", action="store_true", help="do not save heatmaps_<side>.npz")


def run(args: argparse.Namespace) -> int:
    from denarius.engine.bundle import load_bundle
    from denarius.evaluation.eval import EvalConfig, evaluate

    config = EvalConfig(
        methods=tuple(args.methods), windows=tuple(args.windows), stride=args.stride, epsilon=args.epsilon, reference=args.reference,
        sides=tuple(args.sides), limit=args.limit, batch=args.batch, guidebooks=args.guidebooks, peers=tuple(args.peers),
        ig_steps=args.ig_steps, resamples=args.resamples, seed=args.seed, backend=args.backend, save_heatmaps=not args.no_heatmaps,
        exclude_shared_with=tuple(args.exclude_shared_with),
    )
    scores = evaluate(load_bundle(args.bundle), args.synth_dir, args.out, config=config)
    print((args.out / "scores.md").read_text(), end="")
    names = ("scores.json", "scores.md", "figure.png", "path.png", "heatmaps_obverse.npz", "heatmaps_reverse.npz")
    written = [args.out / name for name in names if (args.out / name).exists()]
    print("wrote " + ", ".join(str(path) for path in written))
    return 0 if scores["images"] else 1
