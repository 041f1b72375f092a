"""Fit the watchlist's keypoint words (engine/watchlist/data/keypoint_words.npy).

The keypoint index (``engine/watchlist/keypoint_index.py``) files every listed ORB
descriptor under its nearest word; the words are a binary k-means of descriptors from
synthetic specimens of preset ``small`` (another catalogue than the bench's), specimen seed 0:

    python tools/fit_watchlist_words.py OUT_DIR [n_specimens]

Writes OUT_DIR/specimens (the photos) and the words file in the package.
"""

from __future__ import annotations

import csv
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

WORDS_FILE = Path(__file__).resolve().parents[1] / "engine" / "watchlist" / "data" / "keypoint_words.npy"


def _descriptors(paths: tuple[str, str]) -> list[np.ndarray]:
    from denarius.engine.watchlist.descriptor import side_features
    from denarius.engine.watchlist.keypoint_index import INDEXED_FEATURES

    return [side_features(path).descriptors[:INDEXED_FEATURES] for path in paths]


def main(out: Path, n_specimens: int) -> None:
    import faiss

    from denarius.engine.watchlist.keypoint_index import WORDS
    from denarius.training.synth.specimen_set import generate_specimens

    root = out / "specimens"
    if not (root / "manifest.csv").is_file():
        generate_specimens(root, n_specimens=n_specimens, n_rephotographed=0, photos=1, dies_per_type=10, preset="small",
                           seed=0, workers=2, progress=True)
    with (root / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with multiprocessing.Pool(2) as pool:
        parts = pool.map(_descriptors, [(str(root / r["obverse"]), str(root / r["reverse"])) for r in rows], chunksize=8)
    data = np.concatenate([d for part in parts for d in part])
    print(f"{len(data)} descriptors from {len(rows)} specimens; fitting {WORDS} words")
    start = time.perf_counter()
    quantizer = faiss.IndexBinaryFlat(256)
    ivf = faiss.IndexBinaryIVF(quantizer, 256, WORDS)
    ivf.cp.seed = 0
    ivf.train(data)
    words = faiss.rev_swig_ptr(quantizer.xb.data(), quantizer.ntotal * 32).reshape(WORDS, 32).copy()
    WORDS_FILE.parent.mkdir(parents=True, exist_ok=True)
    np.save(WORDS_FILE, words)
    print(f"fitted in {time.perf_counter() - start:.1f} s -> {WORDS_FILE}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1200)
