"""`denarius preprocess`: run the one image pipeline on photos and write a contact sheet."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
log = logging.getLogger(__name__)


EXAMPLES = (
    'denarius preprocess photos/ --out crops/',
    'denarius preprocess data/manifest.csv --out crops/',
)  # shown under `denarius preprocess --help`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="image files, folders of images, or a manifest CSV")
    parser.add_argument("--out", type=Path, required=True, help="output folder (canonical PNGs + contact_sheet.png)")
    parser.add_argument("--resize", type=int, default=256, help="canonical image side (default 256)")
    parser.add_argument("--crop", type=int, default=224, help="network input side (default 224)")
    parser.add_argument("--no-background-removal", action="store_true", help="keep the photo background")
    parser.add_argument("--limit", type=int, default=64, help="at most this many images (default 64)")


def _collect(inputs: list[Path]) -> list[Path]:
    from denarius.engine.manifest import read_manifest

    paths: list[Path] = []
    for item in inputs:
        if item.suffix.lower() == ".csv":
            for record in read_manifest(item):
                paths += [record.obverse, record.reverse]
        elif item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from denarius.apps.cli import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL
    from denarius.engine.contact_sheet import contact_sheet, write_png
    from denarius.engine.errors import InputError
    from denarius.engine.imageio import decode_image
    from denarius.engine.preprocess import PreprocessSpec, canonical_image, crop_image

    spec = PreprocessSpec(resize=args.resize, crop=args.crop, remove_background=not args.no_background_removal)
    paths = _collect(args.inputs)[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, captions, failures = [], [], 0
    for path in tqdm(paths, desc="preprocess", unit="img"):
        try:
            original = decode_image(path, max_pixels=spec.max_pixels, min_side=spec.min_side)
            crop = crop_image(canonical_image(original, spec), spec)
        except InputError as error:
            failures += 1
            log.warning("%s: %s", path, error)
            continue
        write_png(args.out / f"{path.stem}.png", crop)
        rows.append([original, crop])
        captions.append(f"{path.name}: {original.shape[1]}x{original.shape[0]} -> {spec.crop}px")
    sheet_path = args.out / "contact_sheet.png"
    write_png(sheet_path, contact_sheet(rows, captions))
    print(f"{len(rows)} images preprocessed, {failures} refused; contact sheet: {sheet_path}")
    if not failures:
        return EXIT_OK
    return EXIT_PARTIAL if rows else EXIT_FAILURE
