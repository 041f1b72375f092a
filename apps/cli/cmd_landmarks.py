"""`denarius landmarks`: characteristic landmarks of one coin photo (PNG overlay + JSON).

    denarius landmarks --bundle BUNDLE IMAGE --side reverse [--method optimized|occlusion|saliency]
        [--epsilon 0.5] [--reference blur|black] [--window 11 --stride 3 | --superpixels N | --pixels] [--target LABEL]
        [--sweep] --out DIR

writes ``DIR/<image stem>_<method>.png`` (red = more discriminative, blue = less) and
``.json`` (target, p(c) full and masked, iterations, top regions, mask, persistence); for
the optimised method also ``<stem>_optimized_masked.png``, what the network saw (the kept
regions, the rest blurred or black). ``--sweep`` writes the paper's Figure 6 strip
``DIR/<stem>_sweep.png`` (epsilon 0.1, 0.3, 0.5, 0.7, 1.0 with p(c) under each: the
masked images, and the heatmaps below) from one batched optimiser run. ``--server HOST:PORT`` asks a running
``denarius serve`` instead of a local bundle (apps/cli/remote_landmarks.py).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

METHODS = ("optimized", "occlusion", "saliency")


EXAMPLES = (
    'denarius landmarks --bundle bundles/v1 reverse.jpg --side reverse --out lm/',
    'denarius landmarks --server 127.0.0.1:50051 obverse.jpg --side obverse --out lm/ --method occlusion',
)  # shown under `denarius landmarks --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from denarius.apps.cli import remote_landmarks

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--bundle", type=Path, help="model bundle to run in-process")
    where.add_argument("--server", metavar="HOST:PORT", help="ask a running `denarius serve` instead")
    parser.add_argument("image", type=Path, help="coin photo (one side)")
    parser.add_argument("--side", required=True, choices=("obverse", "reverse"), help="which side the photo shows")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the PNG and JSON")
    method = parser.add_argument_group("method")
    method.add_argument("--method", default="optimized", choices=METHODS, help="landmark method (default optimized)")
    method.add_argument("--epsilon", type=float, default=0.5, help="confidence the mask may lose, in (0, 1] (default 0.5)")
    method.add_argument("--reference", default="blur", choices=("blur", "black"),
                        help="what a removed region becomes: blurred (default) or black (the paper's masking)")
    method.add_argument("--target", help="class label to explain (default: the predicted class)")
    method.add_argument("--sweep", action="store_true", help="epsilon 0.1, 0.3, 0.5, 0.7, 1.0 strip (paper Fig. 6)")
    method.add_argument("--lambda", dest="lam", type=float, default=1.0, help="weight of the L1 term (default 1)")
    method.add_argument("--max-iterations", type=int, default=100, help="optimiser iteration cap (default 100)")
    regions = parser.add_argument_group("regions (default: 11x11 windows, stride 3)")
    regions.add_argument("--window", type=int, default=11, help="sliding window side in pixels (default 11)")
    regions.add_argument("--stride", type=int, default=3, help="sliding window stride (default 3)")
    kinds = regions.add_mutually_exclusive_group()
    kinds.add_argument("--superpixels", type=int, metavar="N", help="SLIC superpixels (about N) instead of windows")
    kinds.add_argument("--pixels", action="store_true", help="single pixels instead of windows")
    parser.add_argument("--top", type=int, default=5, help="top regions reported (default 5)")
    parser.add_argument("--backend", default="auto", choices=("auto", "ort-cpu", "ort-cuda"),
                        help="in-process backend (default auto: ort-cuda on a GPU host, else ort-cpu); fp32")
    remote_landmarks.add_arguments(parser, add_server=False)


def _config(args: argparse.Namespace):
    from denarius.engine.landmarks import LandmarkConfig, OptimizerConfig

    return LandmarkConfig(
        method=args.method,
        epsilon=args.epsilon,
        reference=args.reference,
        window=args.window,
        stride=args.stride,
        superpixels=args.superpixels,
        pixels=args.pixels,
        optimizer=OptimizerConfig(lam=args.lam, max_iterations=args.max_iterations),
        top=args.top,
    )


def _caption(landmark_map) -> str:
    if landmark_map.p_masked is None:
        return f"{landmark_map.method} p(c)={landmark_map.p_full:.3f}"
    return f"eps={landmark_map.epsilon:g} p(c)={landmark_map.p_masked:.3f}\n{landmark_map.iterations} it"


def run_local(args: argparse.Namespace, config) -> int:
    import numpy as np

    from denarius.engine.bundle import load_bundle
    from denarius.engine.errors import ConfigError
    from denarius.engine.landmarks import SWEEP_EPSILONS
    from denarius.engine.landmarks.model import model_for_side
    from denarius.engine.landmarks.service import LandmarkService
    from denarius.evaluation.figures import grid, write_png

    bundle = load_bundle(args.bundle)
    name = model_for_side(bundle, args.side)
    if args.sweep and config.method != "optimized":
        raise ConfigError(f"--sweep needs --method optimized, got {config.method!r}")
    with LandmarkService.open(bundle, backend=args.backend, models=(name,)) as service:
        epsilons = SWEEP_EPSILONS if args.sweep else None
        maps = service.for_source(args.image, side=args.side, config=config, target=args.target, epsilons=epsilons, progress=True)
        crop = maps[0].image
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.image.stem
    scale = max(1, 256 // crop.shape[0])
    record = {"image": str(args.image), "side": args.side, "model": name, "bundle_version": bundle.version}
    if args.sweep:
        # row 1: what the network saw at each epsilon (the kept landmarks, the rest replaced
        # by the reference), row 2: the persistence heatmaps
        reference = LandmarkService.reference(crop[None], maps[0].reference)  # None: black
        shown = np.zeros_like(crop) if reference is None else np.clip(reference[0], 0, 255).astype(np.uint8)
        tiles = [[crop] + [m.masked_image for m in maps], [shown] + [m.overlay(scale=scale) for m in maps]]
        captions = [
            [f"input p(c)={maps[0].p_full:.3f}\n{maps[0].label}"] + [_caption(m) for m in maps],
            [f"reference: {maps[0].reference}"] + ["heatmap (persistence)"] * len(maps),
        ]
        png = write_png(args.out / f"{stem}_sweep.png", grid(tiles, captions=captions))
        record["maps"] = [m.to_dict() for m in maps]
        json_path = args.out / f"{stem}_sweep.json"
    else:
        (landmark_map,) = maps
        png = landmark_map.save_png(args.out / f"{stem}_{config.method}.png", scale=scale)
        if landmark_map.masked_image is not None:
            write_png(args.out / f"{stem}_{config.method}_masked.png", landmark_map.masked_image)
        record.update(landmark_map.to_dict())
        json_path = args.out / f"{stem}_{config.method}.json"
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    for m in maps:
        masked = "" if m.p_masked is None else f", p(c | landmarks) = {m.p_masked:.4f} (epsilon {m.epsilon:g}, {m.iterations} iterations)"
        print(f"{m.method}: target {m.label}: p(c) = {m.p_full:.4f}{masked}; "
              f"{m.forward_equivalents:.0f} forward-pass equivalents, {m.seconds:.2f} s")
        if m.vacuous:
            print(f"  note: epsilon {m.epsilon:g} is vacuous here - the {m.reference} reference alone (every region removed) keeps p(c) "
                  "above p - epsilon, so the smallest mask is empty; the heatmap still ranks the regions; use a smaller epsilon for a mask")
    for rank, region in enumerate(maps[-1 if not args.sweep else len(maps) // 2].top_regions, start=1):
        print(f"  {rank}. box {region['box']} score {region['score']:.4g}")
    print(f"wrote {png} and {json_path}")
    return 0


def run_remote(args: argparse.Namespace, config) -> int:
    from denarius.apps.cli import remote_landmarks

    options = dict(method=config.method, window=config.window, stride=config.stride, superpixels=config.superpixels,
                   pixels=config.pixels, target=args.target, sparsity=config.optimizer.lam,
                   max_iterations=config.optimizer.max_iterations, top_regions=config.top, reference=config.reference)
    if args.sweep:
        import cv2
        import numpy as np

        from denarius.engine.errors import ConfigError
        from denarius.engine.landmarks import SWEEP_EPSILONS
        from denarius.evaluation.figures import grid, write_png

        if config.method != "optimized":
            raise ConfigError(f"--sweep needs --method optimized, got {config.method!r}")
        tiles, captions = [], []
        for eps in SWEEP_EPSILONS:
            response = remote_landmarks.fetch(args, image=args.image.read_bytes(), side=args.side, overlay=True, epsilon=eps, **options)
            tiles.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(response.overlay_png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            captions.append(f"eps={eps:g} p(c)={response.masked_probability:.3f}\n{response.iterations} it")
        path = write_png(args.out / f"{args.image.stem}_sweep.png", grid([tiles], captions=[captions]))
        print(f"wrote {path}")
        return 0
    output = args.out / f"{args.image.stem}_{config.method}.png"
    return remote_landmarks.run(args, image=args.image.read_bytes(), side=args.side, epsilon=config.epsilon, output=output, **options)


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.server:
        return run_remote(args, config)
    return run_local(args, config)
