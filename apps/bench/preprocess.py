"""The bench's ``preprocess`` section: what one image costs before the network sees it.

Measured on generated coin photos stored as 500-px JPEGs (the issue's reference size) and on
the bench workload's own photos, with OpenCV's inner threads set to 1 as the engine runs
them (``Engine(opencv_threads=1)``):

- **CPU time per image by stage** (``time.thread_time``, so waiting for a busy core is not
  counted): decoding at the chosen DCT scale, locating the coin (working copy + disc
  analysis), the warp with background blanking, normalisation, and the whole
  ``network_input`` call (header checks, a finer re-decode when the coin is small and every
  Python step included). Medians and 90th percentiles over the photos. Two floors beside
  them, for JPEGs: OpenCV's bare ``imdecode`` at the same scale (what the decode stage costs
  without its header checks and memory budget) and at 1/8 scale (libjpeg's entropy decoding,
  which no DCT scale avoids).
- **The same stages with pipeline version 1** on the same 500-px photos: the pipeline as it
  was before version 2 (bundles written before it still run it), the baseline of the speed-up.
- **Throughput of preprocessing alone** with 1 and 2 worker threads (images per second,
  wall clock), the figure a GPU host is sized from: one worker thread per core is what
  feeds the accelerator.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.bundle import Bundle
from denarius.engine.imageio import decode_image, plan_decode, read_header
from denarius.engine.preprocess import (
    PreprocessSpec,
    coin_mask,
    decode_side,
    locate_coin,
    network_input,
    normalize,
    warp_canonical,
)

__all__ = ["bench_preprocess", "photos_of_side"]

REFERENCE_SIDE = 500  # px: the photo size the <= 1 ms target is stated for


def photos_of_side(folder: Path, side_px: int, *, coins: int, seed: int = 7) -> list[bytes]:
    """Generated coin photos (obverse and reverse) stored as ``side_px``-px JPEGs, as bytes."""
    from denarius.engine.manifest import read_manifest
    from denarius.training.synth import generate  # numpy + OpenCV only; no torch

    out = folder / f"photos{side_px}"
    generate(out, preset="tiny", seed=seed, force=True, progress=False, n_coins=max(coins, 48),
             min_size=side_px, max_size=side_px)
    records = read_manifest(out / "manifest.csv")[:coins]
    return [getattr(record, side).read_bytes() for record in records for side in ("obverse", "reverse")]


def _cpu_ms(call: Callable[[], object], repeats: int) -> float:
    """Median CPU time of ``call()`` in this thread, ms (one warm-up call first)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return float(np.median(times)) * 1000.0


def stage_costs(photos: list[bytes], spec: PreprocessSpec, *, repeats: int) -> dict:
    """CPU ms per image by stage: median and p90 over ``photos``.

    Returns:
        ``{"ms_per_image": {stage: median}, "p90_ms": {stage: p90}, "images": n, "decoded_side": px}``
    """
    rows: dict[str, list[float]] = {k: [] for k in ("decode", "locate_coin", "warp_and_blank", "normalize", "total")}
    floors: dict[str, list[float]] = {"imdecode_same_scale": [], "imdecode_eighth_scale": []}
    decoded_sides = []
    out = np.empty((3, spec.crop, spec.crop), np.float32)
    offset = (spec.resize - spec.crop) // 2
    for data in photos:
        rgb = decode_image(data, max_pixels=spec.max_pixels, min_side=spec.min_side, keep_side=decode_side(spec))
        decoded_sides.append(min(rgb.shape[:2]))
        found, disc, matrix = locate_coin(data, spec)
        crop = warp_canonical(found, disc, matrix, spec.crop, offset)
        rows["decode"].append(_cpu_ms(lambda data=data: decode_image(
            data, max_pixels=spec.max_pixels, min_side=spec.min_side, keep_side=decode_side(spec)), repeats))
        rows["locate_coin"].append(_cpu_ms(lambda rgb=rgb: coin_mask(rgb, pipeline_version=spec.pipeline_version), repeats))
        rows["warp_and_blank"].append(_cpu_ms(
            lambda found=found, disc=disc, matrix=matrix: warp_canonical(found, disc, matrix, spec.crop, offset), repeats))
        rows["normalize"].append(_cpu_ms(lambda crop=crop: normalize(crop, spec, out=out), repeats))
        rows["total"].append(_cpu_ms(lambda data=data: network_input(data, spec, out=out), repeats))
        header = read_header(data)
        if header.format == "JPEG":
            encoded = np.frombuffer(data, np.uint8)
            flags = plan_decode(header, keep_side=decode_side(spec)).flags
            floors["imdecode_same_scale"].append(_cpu_ms(lambda encoded=encoded, flags=flags: cv2.imdecode(encoded, flags), repeats))
            floors["imdecode_eighth_scale"].append(_cpu_ms(
                lambda encoded=encoded: cv2.imdecode(encoded, cv2.IMREAD_REDUCED_COLOR_8), repeats))
    return {
        "ms_per_image": {k: round(float(np.median(v)), 4) for k, v in rows.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 4) for k, v in rows.items()},
        "jpeg_floors_ms": {k: round(float(np.median(v)), 4) for k, v in floors.items() if v},
        "images": len(photos),
        "decoded_side_px_median": int(np.median(decoded_sides)),
    }


def throughput(photos: list[bytes], spec: PreprocessSpec, *, workers: int, seconds: float) -> dict:
    """Images per second (wall) that ``workers`` threads preprocess, each into its own buffer."""
    def work(index: int) -> None:
        network_input(photos[index % len(photos)], spec, out=buffers[index % workers])

    buffers = [np.empty((3, spec.crop, spec.crop), np.float32) for _ in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(len(photos))))  # warm-up
        done, start = 0, time.perf_counter()
        cpu_start = time.process_time()
        while done < len(photos) or time.perf_counter() - start < seconds:
            list(pool.map(work, range(done, done + len(photos))))
            done += len(photos)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    return {"workers": workers, "images": done, "images_per_s": round(done / elapsed, 1),
            "cpu_ms_per_image": round(cpu / done * 1000.0, 4)}


def bench_preprocess(bundle: Bundle, config, workload_photos: list[bytes]) -> dict:
    """The ``preprocess`` section: stage costs on 500-px JPEGs and on the workload, and throughput.

    Args:
        bundle: whose ``PreprocessSpec`` is measured.
        config: the run's ``BenchConfig`` (``quick`` and ``seconds`` are read).
        workload_photos: the bench workload's encoded photos (obverse and reverse of each pair).
    """
    spec = bundle.preprocess
    repeats = 3 if config.quick else 9
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="denarius-bench-preprocess-") as scratch:
            reference = photos_of_side(Path(scratch), REFERENCE_SIDE, coins=8 if config.quick else 32)
        result = {
            "spec": {"resize": spec.resize, "crop": spec.crop, "first_decode_side_px": decode_side(spec)},
            "opencv_threads": 1,
            f"jpeg_{REFERENCE_SIDE}px": stage_costs(reference, spec, repeats=repeats),
            f"jpeg_{REFERENCE_SIDE}px_pipeline_1": stage_costs(
                reference, dataclasses.replace(spec, pipeline_version=1), repeats=repeats),
            "workload": stage_costs(workload_photos[: 16 if config.quick else 64], spec, repeats=repeats),
            "throughput": {str(n): throughput(reference, spec, workers=n, seconds=config.seconds) for n in (1, 2)},
        }
    finally:
        cv2.setNumThreads(previous)
    result["ms_per_image"] = result[f"jpeg_{REFERENCE_SIDE}px"]["ms_per_image"]
    result["pipeline_1_vs_this"] = round(
        result[f"jpeg_{REFERENCE_SIDE}px_pipeline_1"]["ms_per_image"]["total"] / result["ms_per_image"]["total"], 3)
    return result
