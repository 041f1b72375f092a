"""The ``watchlist`` bench section: is a re-photographed coin found among listed specimens?

Workload (all from the generator, ``training/synth/specimen_set.py``, preset ``bench``:
80 types, ``dies_per_type`` dies each): ``listed`` specimens get their listing photo
(photo 0) added to a watchlist; the first ``queries`` of them are re-photographed (photo 1:
another session, any turn, another scale, framing, background and JPEG quality) and matched;
``unlisted`` further specimens, struck from the same dies as listed ones, are matched
with their own photo as hard negatives.

Measured:

- recall@1: a re-photograph's first match is its own specimen with verdict same_specimen;
- false-match rate: a query (unlisted die-mate, or a re-photograph) whose first match is
  same_specimen with another specimen;
- how often the re-photographed specimen is among the candidates verified;
- match latency (features of the query computed beforehand; their cost is reported
  apart), p50/p90 on the watchlist's 2 threads, at ``listed`` and at ``index_size`` listed. The larger index
  is the ``listed`` real specimens plus copies of them with 12% of every descriptor's bits
  flipped; only the keypoint search depends on the list's size (verification always sees
  ``verified`` candidates), so the latency at ``index_size`` is, per query, the search in
  the large index plus the verification of the candidates the real list returns;
- index build time and memory (RSS growth, file size), SQLite bytes per specimen.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import platform
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["bench_watchlist", "bench_watchlist_section", "draw_correspondences", "TARGETS"]

log = logging.getLogger(__name__)


# the targets: (direction, bound)
TARGETS = {"recall_at_1": ("min", 0.98), "false_match_rate_all_queries": ("max", 0.001), "match_ms_p50_at_index_size": ("max", 20.0)}


def bench_watchlist_section(config) -> dict:
    """``denarius bench --sections watchlist``: 10,000 listed (400 with --quick) into ``OUT/watchlist/``."""
    listed = 400 if config.quick else 10_000
    return bench_watchlist(config.out / "watchlist", listed=listed, queries=min(500, listed // 2), unlisted=min(500, listed // 2),
                           index_size=10_000 if config.quick else 100_000, dies_per_type=max(1, listed // 400))


def _features_task(paths: tuple[str, str]):
    from denarius.engine.watchlist.descriptor import side_features

    return side_features(paths[0], side="obverse"), side_features(paths[1], side="reverse")


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _reusable(folder: Path, listing: list[dict]) -> bool:
    """True when ``folder`` already lists exactly these specimens, all by the current feature
    version (a re-run: their features are kept; features of an earlier version are computed again)."""
    import sqlite3

    from denarius.engine.watchlist.store import count_earlier_features

    database = folder / "watchlist.sqlite"
    if not database.is_file():
        return False
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        stored = [r[0] for r in db.execute("SELECT specimen_id FROM specimens ORDER BY id")]
        return stored == [r["specimen_id"] for r in listing] and not count_earlier_features(db)


def _flipped(descriptors: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """(N, 32) uint8 descriptors with ``share`` of their bits flipped at random."""
    return np.bitwise_xor(descriptors, np.packbits(rng.random((len(descriptors), 256)) < share, axis=1))


def _features(rows: list[dict], root: Path, workers: int) -> list:
    paths = [(str(root / r["obverse"]), str(root / r["reverse"])) for r in rows]
    if workers <= 1:
        return [_features_task(p) for p in paths]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(_features_task, paths, chunksize=32)


def bench_watchlist(
    out: Path,
    *,
    listed: int = 10_000,
    queries: int = 500,
    unlisted: int = 500,
    index_size: int = 100_000,
    dies_per_type: int = 25,
    seed: int = 11,
    workers: int = 2,
) -> dict:
    """Run the watchlist bench into ``out`` (specimens/, watchlist/, watchlist.json); returns the JSON dict."""
    import cv2

    from denarius.engine.watchlist import SAME_SPECIMEN, Watchlist
    from denarius.engine.watchlist.keypoint_index import KeypointIndex
    from denarius.training.synth.specimen_set import generate_specimens

    out = Path(out)
    root = out / "specimens"
    total = listed + unlisted
    start = time.perf_counter()
    if not (root / "manifest.csv").is_file():
        generate_specimens(root, n_specimens=total, n_rephotographed=queries, photos=1, dies_per_type=dies_per_type,
                           preset="bench", seed=seed, workers=workers, progress=False)
    generate_seconds = time.perf_counter() - start
    with (root / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    listing = [r for r in rows if r["photo"] == "0"][:listed]
    listed_ids = {r["specimen_id"] for r in listing}
    rephotos = [r for r in rows if r["photo"] == "1" and r["specimen_id"] in listed_ids][:queries]
    negatives = [r for r in rows if r["photo"] == "0" and r["specimen_id"] not in listed_ids][:unlisted]
    listed_dies = {r["die_id"] for r in listing}

    folder = out / "watchlist"
    reused = _reusable(folder, listing)
    start = time.perf_counter()
    listing_features = None if reused else _features(listing, root, workers)
    feature_seconds = None if reused else time.perf_counter() - start
    query_features = _features(rephotos + negatives, root, workers)
    cv2.setNumThreads(1)
    # the query's own feature cost, single thread
    extract = []
    for row in rephotos[:100]:
        t0 = time.perf_counter()
        _features_task((str(root / row["obverse"]), str(root / row["reverse"])))
        extract.append(time.perf_counter() - t0)

    if not reused and folder.exists():
        for name in ("watchlist.sqlite", "watchlist.sqlite-wal", "watchlist.sqlite-shm", "keypoints.index", "index.hnsw"):
            (folder / name).unlink(missing_ok=True)
    (folder / "keypoints.index").unlink(missing_ok=True)  # a re-run: only the index is rebuilt (current parameters)
    start = time.perf_counter()
    with Watchlist(folder) as watchlist:
        if listing_features is not None:
            for row, features in zip(listing, listing_features, strict=True):
                watchlist.add_features(row["specimen_id"], features, source="bench")
            watchlist.save_index()
        labels = sorted(watchlist.index.stored_labels())
        listed_descriptors = [watchlist.indexed_descriptors(label) for label in labels]
    add_seconds = time.perf_counter() - start
    sqlite_bytes = (folder / "watchlist.sqlite").stat().st_size + sum(
        p.stat().st_size for p in folder.glob("watchlist.sqlite-*"))

    # the keypoint index of the real list, built alone, and its memory
    rss0 = _rss_mib()
    start = time.perf_counter()
    real_index = KeypointIndex()
    real_index.add_many(labels, listed_descriptors)
    build_real = time.perf_counter() - start
    rss_real = _rss_mib() - rss0
    del real_index

    # the index at index_size: the real list plus copies of its specimens with 12% of every
    # descriptor's bits flipped (latency only: recall and false matches are the real list's)
    rng = np.random.default_rng(seed)
    rss0 = _rss_mib()
    start = time.perf_counter()
    big = KeypointIndex()
    big.add_many(labels, listed_descriptors)
    for first in range(len(labels), index_size, 5000):
        fakes = list(range(10_000_000 + first, 10_000_000 + min(index_size, first + 5000)))
        sources = [listed_descriptors[int(i)] for i in rng.integers(len(labels), size=len(fakes))]
        big.add_many(fakes, [tuple(_flipped(d, 0.12, rng) for d in pair) for pair in sources])
    build_big = time.perf_counter() - start
    rss_big = _rss_mib() - rss0
    big_file = out / "keypoints_big.index"
    big.save(big_file)
    big_file_bytes = big_file.stat().st_size
    big_file.unlink()

    found = wrong_rephoto = false_negative = die_only = retrieved = 0
    latency_listed, latency_big = [], []
    with Watchlist(folder, create=False) as watchlist, ThreadPoolExecutor(watchlist.threads) as searchers:
        threads = watchlist.threads  # the large index is searched as the watchlist searches its own
        label_of = {s.specimen_id: label for label, s in zip(labels, watchlist.listed(), strict=True)}  # both in id order
        for i, (row, query) in enumerate(zip(rephotos + negatives, query_features, strict=True)):
            descriptors = (query[0].descriptors, query[1].descriptors)
            t0 = time.perf_counter()
            found_labels, scores = watchlist.search(descriptors)
            t1 = time.perf_counter()
            matches = watchlist.verify_candidates(query, found_labels, scores)
            t2 = time.perf_counter()
            big.search(descriptors, watchlist.verified, executor=searchers)
            t3 = time.perf_counter()
            latency_listed.append(t2 - t0)
            latency_big.append((t3 - t2) + (t2 - t1))
            top = matches[0] if matches else None
            if i < len(rephotos):
                retrieved += label_of[row["specimen_id"]] in found_labels.tolist()
                if top and top.verdict == SAME_SPECIMEN:
                    if top.specimen.specimen_id == row["specimen_id"]:
                        found += 1
                    else:
                        wrong_rephoto += 1
                elif top:
                    die_only += 1
            elif top and top.verdict == SAME_SPECIMEN:
                false_negative += 1
    results = {
        "workload": {
            "listed": len(listing), "rephotographed_queries": len(rephotos), "unlisted_die_mate_queries": len(negatives),
            "unlisted_with_a_listed_die_mate": sum(1 for r in negatives if r["die_id"] in listed_dies),
            "dies": len(listed_dies), "types": 80, "dies_per_type": dies_per_type, "specimen_seed": seed,
            "index_size_for_latency": index_size,
            "index_padding": (f"{len(listing)} real specimens + {max(0, index_size - len(listing))} copies of them with 12% of "
                              "every descriptor's bits flipped (latency only)"),
        },
        "recall_at_1": found / max(1, len(rephotos)),
        "rephotos_retrieved_among_verified": retrieved / max(1, len(rephotos)),
        "rephotos_top_same_die_only": die_only / max(1, len(rephotos)),
        "rephotos_other_specimen_as_same": wrong_rephoto / max(1, len(rephotos)),
        "false_match_rate_unlisted": false_negative / max(1, len(negatives)),
        "false_match_rate_all_queries": (false_negative + wrong_rephoto) / max(1, len(rephotos) + len(negatives)),
        "match_ms_p50_at_listed": 1e3 * float(np.median(latency_listed)),
        "match_ms_p90_at_listed": 1e3 * float(np.percentile(latency_listed, 90)),
        "match_ms_p50_at_index_size": 1e3 * float(np.median(latency_big)),
        "match_ms_p90_at_index_size": 1e3 * float(np.percentile(latency_big, 90)),
        "match_threads": threads,
        "query_features_ms_p50": 1e3 * float(np.median(extract)),
        "index_build_s_listed": build_real,
        "index_memory_mib_listed": rss_real,
        "index_build_s_index_size": build_big,
        "index_memory_mib_index_size": rss_big,
        "index_file_mib_index_size": big_file_bytes / 2**20,
        "sqlite_kib_per_specimen": sqlite_bytes / 1024 / max(1, len(listing)),
        "watchlist_add_s_listed": add_seconds,
        "listed_reused_from_an_earlier_run": reused,
        "features_s_listed": feature_seconds,
        "generate_s": generate_seconds,
        "machine": f"{os.cpu_count()} CPUs ({platform.machine()}), no GPU",
    }
    results["targets"] = {
        name: {"bound": bound, "direction": direction, "value": results[name],
               "met": results[name] >= bound if direction == "min" else results[name] <= bound}
        for name, (direction, bound) in TARGETS.items()
    }
    (out / "watchlist.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def draw_correspondences(query: tuple, listed: tuple, verification, path: Path, *, lines: int = 60) -> Path:
    """A PNG of the verified inlier correspondences: query crops (left) and listed crops
    (right), obverse above reverse, up to ``lines`` inlier pairs per side drawn between them;
    on the listed crop its flan outline (green) and the query's carried by the design's fit
    (magenta): for the same specimen the two coincide.

    Args:
        query, listed: (obverse, reverse) photos (paths or bytes) of the query and the listed specimen.
        verification: the :class:`~denarius.engine.watchlist.verify.Verification` between them.
    """
    import cv2

    from denarius.engine.preprocess import canonical_image
    from denarius.engine.watchlist.descriptor import WATCHLIST_SPEC, side_features

    size, gap = WATCHLIST_SPEC.resize, 24
    canvas = np.full((2 * size + gap, 2 * size + gap, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    for row, (side, check) in enumerate((("obverse", verification.obverse), ("reverse", verification.reverse))):
        y = row * (size + gap)
        left = canonical_image(query[row], WATCHLIST_SPEC, side=side)
        right = canonical_image(listed[row], WATCHLIST_SPEC, side=side)
        canvas[y:y + size, :size] = left
        canvas[y:y + size, size + gap:] = right
        keep = rng.permutation(len(check.query_points))[:lines]
        for (qx, qy), (lx, ly) in zip(check.query_points[keep], check.listed_points[keep], strict=True):
            colour = tuple(int(c) for c in rng.integers(40, 230, 3))
            cv2.line(canvas, (int(qx), int(y + qy)), (int(size + gap + lx), int(y + ly)), colour, 1, cv2.LINE_AA)
            cv2.circle(canvas, (int(qx), int(y + qy)), 2, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, (int(size + gap + lx), int(y + ly)), 2, colour, -1, cv2.LINE_AA)
        if check.matrix is not None:
            carried = side_features(query[row]).outline.astype(np.float64) @ check.matrix[:, :2].T + check.matrix[:, 2]
            for outline, colour in ((side_features(listed[row]).outline, (40, 200, 40)), (carried, (220, 40, 220))):
                for px, py in outline[np.isfinite(outline).all(axis=1)]:
                    cv2.circle(canvas, (int(size + gap + px), int(y + py)), 1, colour, -1, cv2.LINE_AA)
        cv2.putText(canvas, f"{side}: {check.inliers} inliers, flan {100 * check.flan:.1f}%", (6, y + 16),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
        raise RuntimeError("PNG encoding failed")
    Path(path).write_bytes(png.tobytes())
    return Path(path)


if __name__ == "__main__":  # pragma: no cover - `python -m denarius.apps.bench.watchlist OUT [listed]`
    import sys

    logging.basicConfig(level=logging.INFO)
    arguments = sys.argv[1:]
    size = int(arguments[1]) if len(arguments) > 1 else 10_000
    print(json.dumps(bench_watchlist(Path(arguments[0]), listed=size, queries=min(500, size), unlisted=min(500, size),
                                     index_size=max(size, 100_000), dies_per_type=max(1, size // 400)), indent=2))
