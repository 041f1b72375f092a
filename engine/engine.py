"""Batched hierarchical identification of coin pairs.

    from denarius.engine import Engine, CoinPair

    with Engine("bundle/") as engine:                       # backend="auto", default precision
        [result] = engine.identify([CoinPair(obverse=open("o.jpg", "rb").read(), reverse="r.jpg")])
        best = result.top                                    # raises result.error if the coin failed
        print(best.ric, best.emperor, best.score, best.p_ric, best.p_emperor)

For every coin the two classifiers give p(e | obverse) and p(r | reverse) (softmax computed in
float64 from the logits); every RIC leaf r is scored by ``Hierarchy.joint_scores``::

    score(r) = p(parent(r) | obverse) * p(r | reverse)

and the top-k leaves are returned. With only the obverse the candidates are emperors ranked
by p(e | obverse); with only the reverse they are RIC leaves ranked by p(r | reverse).

Per-coin failures: a corrupt or unusable image fails only its own coin. By default
(``errors="return"``) its ``Identification`` has ``error`` set (an ``InputError`` naming the
side) and no candidates, and ``.top`` re-raises it; ``errors="raise"`` raises the first
failure (lowest index) instead, after the batch ran.

Results do not depend on the batch size or on the order of the coins in a request (each
image is preprocessed and inferred independently; only floating-point rounding of the
backend's batched kernels differs, well within 1e-5 on the scores).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.backends import open_backend
from denarius.engine.bundle import SIDES, Bundle, load_bundle
from denarius.engine.errors import BundleError, ConfigError, DenariusError, InputError
from denarius.engine.preprocess import preprocess

__all__ = ["CoinPair", "Candidate", "Identification", "Engine", "softmax64"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoinPair:
    """One coin to identify.

    Each side is encoded image bytes, a path, a decoded (H, W, 3) uint8 RGB array, an
    already preprocessed (3, S, S) float32 array (S = the bundle's input size), or None
    when that side was not photographed. At least one side must be given.
    """

    obverse: object = None
    reverse: object = None
    coin_id: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One ranked answer.

    Attributes:
        ric: RIC label, or None in an obverse-only (emperor) ranking.
        emperor: the emperor (for a RIC leaf: its parent in the hierarchy).
        score: the ranking score in [0, 1]: the joint score p(e|Io) p(r|Ir) for a pair,
            p(emperor|obverse) for obverse only, p(ric|reverse) for reverse only.
        p_ric: p(ric | reverse), or None without a reverse.
        p_emperor: p(emperor | obverse), or None without an obverse.
        obverse_description, reverse_description: RIC catalogue text ("" when unknown).
    """

    ric: str | None
    emperor: str
    score: float
    p_ric: float | None
    p_emperor: float | None
    obverse_description: str = ""
    reverse_description: str = ""

    @property
    def label(self) -> str:
        """The ranked class: the RIC label, or the emperor in an emperor ranking."""
        return self.ric if self.ric is not None else self.emperor


@dataclass(frozen=True)
class Identification:
    """The answer for one coin.

    Attributes:
        coin_id: the caller's id (``CoinPair.coin_id``), passed through.
        mode: "joint" (both sides), "emperor" (obverse only), "ric" (reverse only), or
            "error".
        candidates: best first, at most top_k; empty when ``error`` is set.
        model_version: the bundle's model version.
        error: the InputError that failed this coin, else None.
    """

    coin_id: str | None
    mode: str
    candidates: tuple[Candidate, ...]
    model_version: str
    error: InputError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top(self) -> Candidate:
        """The best candidate; raises this coin's error if it failed."""
        if self.error is not None:
            raise self.error
        return self.candidates[0]


def softmax64(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits (any float dtype) -> (N, C) float64 probabilities, rows summing to 1."""
    z = np.array(logits, dtype=np.float64)  # a copy, modified in place below
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class _BufferPool:
    """Reusable (max_batch, 3, S, S) float32 batch buffers: fresh ones page-fault ~20 MB each."""

    def __init__(self, shape: tuple[int, ...]):
        self._shape, self._free, self._lock = shape, [], threading.Lock()

    def acquire(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return np.empty(self._shape, np.float32)

    def release(self, buffer: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < 8:
                self._free.append(buffer)


class Engine:
    """Identifies coins with a bundle's two classifiers and its hierarchy.

    Args:
        bundle: a loaded ``Bundle`` or the path of a bundle folder.
        backend: "auto" (tensorrt > ort-cuda > ort-cpu), "ort-cpu", "ort-cuda", "tensorrt".
        precision: None for the backend's default (ort-cpu: int8 when the bundle's INT8
            variant agrees with fp32 on >= 98% of top-1s, else fp32), or "fp32"/"fp16"/"int8".
        max_batch: coins per inference batch (``identify`` chunks; the batcher's cap).
        max_wait_ms: how long the batcher holds a partial batch for more requests.
        eager_dispatch: the batcher sends a partial batch at once when no other request is
            being preprocessed (see ``denarius.engine.batcher.Batcher``); False always waits.
        queue_size: requests the batcher admits before rejecting with ``Overloaded``.
        preprocess_workers: decode/preprocess threads (OpenCV releases the GIL).
        threads: ort-cpu intra-op threads (default: physical cores).
        opencv_threads: OpenCV's own worker threads, a process-wide setting applied here;
            1 (default) because the preprocessing threads already run images in parallel and
            OpenCV's inner parallel loops on top cost ~35% more CPU per image (8.5 vs 13.3 ms
            for a 640 px JPEG, measured on the 2-core dev box); None leaves OpenCV alone.
    Raises:
        BundleError, BackendUnavailable, ConfigError: see ``load_bundle`` / ``open_backend``.
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike,
        *,
        backend: str = "auto",
        precision: str | None = None,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        eager_dispatch: bool = True,
        queue_size: int = 256,
        preprocess_workers: int = 2,
        threads: int | None = None,
        opencv_threads: int | None = 1,
    ):
        if max_batch < 1 or queue_size < 1 or preprocess_workers < 1 or max_wait_ms < 0:
            raise ConfigError(
                f"need max_batch >= 1, queue_size >= 1, preprocess_workers >= 1, max_wait_ms >= 0; got "
                f"{max_batch}, {queue_size}, {preprocess_workers}, {max_wait_ms}"
            )
        if opencv_threads is not None:
            cv2.setNumThreads(int(opencv_threads))
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.spec = self.bundle.preprocess
        sizes = {info.input_size for info in self.bundle.models.values()}
        if sizes != {self.spec.crop}:
            raise BundleError(f"{self.bundle.path}: model input sizes {sorted(sizes)} differ from the preprocessing crop {self.spec.crop}")
        self.max_batch, self.max_wait_ms, self.queue_size = int(max_batch), float(max_wait_ms), int(queue_size)
        self.eager_dispatch = bool(eager_dispatch)
        self.backend = open_backend(self.bundle, backend, precision, max_batch=max(64, self.max_batch), threads=threads)
        self._pool = ThreadPoolExecutor(preprocess_workers, thread_name_prefix="denarius-preprocess")
        self._buffers = _BufferPool((self.max_batch, 3, self.spec.crop, self.spec.crop))
        self._batcher = None
        self._lock = threading.Lock()
        self._closed = False
        logger.info(
            "engine: model %s, backend %s, precision %s, max batch %d",
            self.version, self.backend.name, self.backend.precision, self.max_batch,
        )

    # ------------------------------------------------------------------ properties

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def precision(self) -> str:
        return self.backend.precision

    def info(self) -> dict:
        """Plain description for serving (GetModelInfo) and logs."""
        return {
            "model_version": self.version,
            "created": self.bundle.created,
            "backend": self.backend.name,
            "precision": self.backend.precision,
            "input_size": self.spec.crop,
            "emperors": list(self.bundle.hierarchy.emperors),
            "rics": list(self.bundle.hierarchy.rics),
            "preprocess": self.spec.to_dict(),
            "metrics": dict(self.bundle.metrics),
            "max_batch": self.max_batch,
        }

    # ------------------------------------------------------------------ synchronous API

    def identify(self, pairs, *, top_k: int = 5, errors: str = "return") -> list[Identification]:
        """Identify many coins, batched; results in the order of ``pairs``.

        Args:
            pairs: iterable of ``CoinPair`` (or ``(obverse, reverse)`` tuples).
            top_k: candidates per coin (>= 1; fewer when the ranking has fewer classes).
            errors: "return" (a failed coin gets ``Identification.error``) or "raise"
                (raise the first failed coin's InputError, its message naming the index).
        Returns:
            one ``Identification`` per pair.
        """
        self._check_open()
        _check_top_k(top_k)
        if errors not in ("return", "raise"):
            raise ConfigError(f"errors must be 'return' or 'raise', got {errors!r}")
        pairs = list(pairs)
        results: list[Identification | None] = [None] * len(pairs)
        starts = list(range(0, len(pairs), self.max_batch))
        # Preprocessing of the next two chunks overlaps inference of the current one.
        running = [self._launch(pairs, start, results) for start in starts[:2]]
        for k in range(len(starts)):
            chunk = running[k]
            if k + 2 < len(starts):
                running.append(self._launch(pairs, starts[k + 2], results))
            try:
                wait(chunk["futures"])
                self._finish(chunk, results, top_k)
            finally:
                if all(f.done() for f in chunk["futures"]):  # never recycle a buffer still being written
                    for buffer in chunk["buffers"]:
                        self._buffers.release(buffer)
                running[k] = None
        if errors == "raise":
            for index, result in enumerate(results):
                if result.error is not None:
                    raise InputError(f"coin {index}: {result.error.reason}", side=result.error.side)
        return results

    def coerce(self, pair, *, index: int | None = None) -> CoinPair:
        """A ``CoinPair`` from a CoinPair or an (obverse, reverse) tuple; InputError otherwise."""
        where = "" if index is None else f"coin {index}: "
        if isinstance(pair, tuple) and len(pair) == 2:
            pair = CoinPair(obverse=pair[0], reverse=pair[1])
        if not isinstance(pair, CoinPair):
            raise InputError(f"{where}expected a CoinPair or an (obverse, reverse) tuple, got {type(pair).__name__}")
        if pair.obverse is None and pair.reverse is None:
            raise InputError(f"{where}neither side given: a coin needs an obverse, a reverse, or both")
        return pair

    # ------------------------------------------------------------------ batched / concurrent API

    @property
    def batcher(self):
        """The dynamic batcher (created on first use with this engine's settings)."""
        with self._lock:
            self._check_open()
            if self._batcher is None:
                from denarius.engine.batcher import Batcher

                self._batcher = Batcher(
                    self, max_batch=self.max_batch, max_wait_ms=self.max_wait_ms, queue_size=self.queue_size, eager=self.eager_dispatch
                )
            return self._batcher

    def submit(self, pair, *, top_k: int = 5, deadline: float | None = None, timeout: float | None = None) -> Future:
        """Queue one coin on the dynamic batcher; see ``Batcher.submit``."""
        return self.batcher.submit(pair, top_k=top_k, deadline=deadline, timeout=timeout)

    async def identify_async(self, pair, *, top_k: int = 5, deadline: float | None = None, timeout: float | None = None) -> Identification:
        """``submit`` for asyncio callers: awaits the batcher's future."""
        return await asyncio.wrap_future(self.submit(pair, top_k=top_k, deadline=deadline, timeout=timeout))

    # ------------------------------------------------------------------ lifecycle

    def close(self, *, drain: bool = True) -> None:
        """Stop the batcher (finishing queued work unless ``drain=False``), the
        preprocessing threads and the backend. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            batcher = self._batcher
        if batcher is not None:
            batcher.close(drain=drain)
        self._pool.shutdown(wait=True)
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DenariusError("the engine is closed")

    # ------------------------------------------------------------------ internals shared with the batcher

    def preprocess_side(self, source, side: str, out: np.ndarray | None = None) -> np.ndarray:
        """One side -> (3, S, S) float32 network input, written into ``out`` when given.

        Raises:
            InputError: undecodable/out-of-bounds image, or a float array of the wrong shape
                (the message names the side).
        """
        size = self.spec.crop
        if isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[0] == 3 and source.dtype.kind == "f":
            if source.shape != (3, size, size):
                raise InputError(f"a preprocessed image must have shape (3, {size}, {size}), got {source.shape}", side=side)
            image = source
        elif isinstance(source, (bytes, bytearray, memoryview, str, Path, os.PathLike, np.ndarray)):
            if isinstance(source, (bytearray, memoryview)):
                source = bytes(source)
            try:
                image = preprocess(source, self.spec, side=side)
            except (cv2.error, ValueError, TypeError) as error:
                if isinstance(error, InputError):
                    raise
                # OpenCV/NumPy refusing an odd array is still this image's fault, not the batch's.
                raise InputError(f"cannot preprocess this image ({type(error).__name__}: {error})", side=side) from None
        else:
            raise InputError(f"unsupported image type {type(source).__name__}: give bytes, a path or an array", side=side)
        if out is None:
            return np.ascontiguousarray(image, dtype=np.float32)
        out[...] = image
        return out

    def score_batch(self, obverse, reverse, rows, coin_ids, top_ks) -> list[Identification]:
        """Infer and rank one batch.

        Args:
            obverse: (No, 3, S, S) float32 obverse images, or None when No = 0.
            reverse: (Nr, 3, S, S) float32 reverse images, or None when Nr = 0.
            rows: per coin, (row in obverse or None, row in reverse or None).
            coin_ids, top_ks: per coin.
        Returns:
            one Identification per coin, in ``rows`` order.
        """
        hierarchy = self.bundle.hierarchy
        p_emp = softmax64(self.backend.infer("emperor", obverse)) if obverse is not None and len(obverse) else None
        p_ric = softmax64(self.backend.infer("ric", reverse)) if reverse is not None and len(reverse) else None
        both = [j for j, (o, r) in enumerate(rows) if o is not None and r is not None]
        joint = {}
        if both:
            scores = hierarchy.joint_scores(p_emp[[rows[j][0] for j in both]], p_ric[[rows[j][1] for j in both]])
            joint = dict(zip(both, scores))
        results = []
        for j, (o, r) in enumerate(rows):
            pe = None if o is None else p_emp[o]
            pr = None if r is None else p_ric[r]
            results.append(self._rank(coin_ids[j], pe, pr, joint.get(j), top_ks[j]))
        return results

    def failed(self, coin_id, error: InputError) -> Identification:
        return Identification(coin_id=coin_id, mode="error", candidates=(), model_version=self.version, error=error)

    def _rank(self, coin_id, p_emp, p_ric, joint, top_k) -> Identification:
        hierarchy, descriptions = self.bundle.hierarchy, self.bundle.descriptions
        if p_ric is None:  # obverse only: an emperor ranking
            order = np.argsort(-p_emp, kind="stable")[:top_k]
            candidates = tuple(
                Candidate(ric=None, emperor=hierarchy.emperors[e], score=float(p_emp[e]), p_ric=None, p_emperor=float(p_emp[e]))
                for e in order
            )
            return Identification(coin_id, "emperor", candidates, self.version)
        score = p_ric if joint is None else joint
        order = np.argsort(-score, kind="stable")[:top_k]
        candidates = []
        for r in order:
            ric, parent = hierarchy.rics[r], int(hierarchy.parent[r])
            text = descriptions.get(ric) or {}
            candidates.append(Candidate(
                ric=ric,
                emperor=hierarchy.emperors[parent],
                score=float(score[r]),
                p_ric=float(p_ric[r]),
                p_emperor=None if p_emp is None else float(p_emp[parent]),
                obverse_description=str(text.get("obverse", "")),
                reverse_description=str(text.get("reverse", "")),
            ))
        return Identification(coin_id, "ric" if joint is None else "joint", tuple(candidates), self.version)

    def _launch(self, pairs: list, start: int, results: list) -> dict:
        """Coerce one chunk's pairs and queue their preprocessing into pooled buffers."""
        indices = range(start, min(start + self.max_batch, len(pairs)))
        obverse, reverse = self._buffers.acquire(), self._buffers.acquire()
        buffers = {"obverse": obverse, "reverse": reverse}
        counts = {"obverse": 0, "reverse": 0}
        rows, futures, items = [], [], []
        for index in indices:
            try:
                pair = self.coerce(pairs[index], index=index)
            except InputError as error:
                results[index] = self.failed(getattr(pairs[index], "coin_id", None), error)
                continue
            row = {}
            for side in SIDES:
                source = getattr(pair, side)
                if source is None:
                    continue
                row[side] = counts[side]
                counts[side] += 1
                futures.append((index, side, self._pool.submit(self.preprocess_side, source, side, buffers[side][row[side]])))
            rows.append((row.get("obverse"), row.get("reverse")))
            items.append((index, pair.coin_id))
        return {"rows": rows, "items": items, "futures": [f for _, _, f in futures], "tasks": futures,
                "buffers": (obverse, reverse), "counts": counts}

    def _finish(self, chunk: dict, results: list, top_k: int) -> None:
        obverse, reverse = chunk["buffers"]
        failed: dict[int, InputError] = {}
        for index, side, future in chunk["tasks"]:
            error = future.exception()
            if error is None:
                continue
            if not isinstance(error, InputError):
                raise error
            failed.setdefault(index, error)
        for (index, _), (o, r) in zip(chunk["items"], chunk["rows"]):
            if index in failed:  # keep the batch computable; the row's output is ignored
                if o is not None:
                    obverse[o] = 0.0
                if r is not None:
                    reverse[r] = 0.0
        if not chunk["items"]:
            return
        no, nr = chunk["counts"]["obverse"], chunk["counts"]["reverse"]
        scored = self.score_batch(
            obverse[:no] if no else None,
            reverse[:nr] if nr else None,
            chunk["rows"],
            [coin_id for _, coin_id in chunk["items"]],
            [top_k] * len(chunk["items"]),
        )
        for (index, coin_id), result in zip(chunk["items"], scored):
            results[index] = self.failed(coin_id, failed[index]) if index in failed else result


def _check_top_k(top_k) -> None:
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
        raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
