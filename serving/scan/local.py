"""Scanning with an in-process engine: the steps every local and Ray runner shares.

:class:`LocalScanner` reads and preprocesses a group of coins in a thread pool, identifies
them in one engine call and turns the results into the scan's JSON lines
(``serving/scan/records.py``). The local runner drives one; each Ray actor holds one, so
both write the same lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from denarius.engine.bundle import SIDES
from denarius.engine.errors import InputError
from denarius.engine.lookahead import lookahead
from denarius.engine.scoring import CoinPair
from denarius.serving.scan.inputs import CoinItem
from denarius.serving.scan.landmark_boxes import LandmarkBoxes
from denarius.serving.scan.records import error_record, identification_record

__all__ = ["LocalScanner", "group_items", "candidate_dicts"]


def group_items(items: Sequence[CoinItem], batch_size: int) -> Iterator[list[CoinItem]]:
    """Consecutive groups holding ``batch_size`` scannable coins each (the last one fewer).

    Items with a ``problem`` ride along in the group where they appear, so the output keeps
    the input order; a long run of them is cut every ``4 * batch_size`` items so that error
    lines are flushed too.
    """
    group: list[CoinItem] = []
    scannable = 0
    for item in items:
        group.append(item)
        scannable += item.problem is None
        if scannable >= batch_size or len(group) >= 4 * batch_size:
            yield group
            group, scannable = [], 0
    if group:
        yield group


def candidate_dicts(identification) -> list[dict]:
    """An engine ``Identification``'s candidates as plain dicts (rank added later)."""
    return [
        {"ric": c.ric, "emperor": c.emperor, "score": c.score, "p_ric": c.p_ric, "p_emperor": c.p_emperor}
        for c in identification.candidates
    ]


class LocalScanner:
    """Scans with an in-process ``Engine``: preprocess in threads, identify full batches.

    Used by the local runner and, one per actor, by the Ray runner, so both write the same
    lines.

    Args:
        engine: an open ``engine.Engine``.
        top_k: candidates per coin.
        workers: preprocessing threads.
        landmarks: add landmark boxes per side (``serving/scan/landmark_boxes.py``).
    """

    def __init__(self, engine, *, top_k: int, workers: int, landmarks: bool = False):
        self.engine = engine
        self.top_k = top_k
        self.landmarks = None
        if landmarks:
            self.landmarks = LandmarkBoxes(engine)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="denarius-scan")

    @property
    def model_version(self) -> str:
        return self.engine.version

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.landmarks is not None:
            self.landmarks.close()

    def __enter__(self) -> LocalScanner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ steps

    def prepare(self, item: CoinItem) -> tuple[np.ndarray, np.ndarray] | dict:
        """Read and preprocess both sides: ((3,S,S) f32, (3,S,S) f32), or the coin's error line."""
        if item.problem is not None:
            kind, message = item.problem
            return error_record(item, kind=kind, message=message, model_version=self.model_version)
        arrays = []
        for side in SIDES:
            path = getattr(item, side)
            try:
                data = Path(path).read_bytes()
            except OSError as error:
                return error_record(item, kind="read", message=f"{side}: cannot read {path}: {error.strerror or error}",
                                    model_version=self.model_version)
            try:
                arrays.append(self.engine.scorer.preprocess_side(data, side))
            except InputError as error:
                return error_record(item, kind="input", message=str(error), model_version=self.model_version)
        return tuple(arrays)

    def finish(self, items: Sequence[CoinItem], prepared: Sequence) -> list[dict]:
        """Identify the prepared coins of one group in one engine call; lines in input order."""
        records: dict[int, dict] = {i: p for i, p in enumerate(prepared) if isinstance(p, dict)}
        todo = [i for i in range(len(prepared)) if i not in records]
        if todo:
            pairs = [CoinPair(obverse=prepared[i][0], reverse=prepared[i][1], coin_id=items[i].coin_id) for i in todo]
            identified = []
            for i, result in zip(todo, self.engine.identify(pairs, top_k=self.top_k), strict=True):
                if result.error is not None:
                    records[i] = error_record(items[i], kind="input", message=str(result.error), model_version=self.model_version)
                    continue
                records[i] = identification_record(
                    items[i], mode=result.mode, candidates=candidate_dicts(result), model_version=result.model_version,
                    unknown=result.unknown, open_set_score=result.open_set_score)
                identified.append((i, result))
            if self.landmarks is not None and identified:
                boxes = self.landmarks.annotate([prepared[i] for i, _ in identified], [r for _, r in identified])
                for (i, _), landmarks in zip(identified, boxes, strict=True):
                    records[i]["landmarks"] = landmarks
        return [records[i] for i in range(len(prepared))]

    def scan_group(self, items: Sequence[CoinItem]) -> list[dict]:
        """prepare (in the pool) + finish, for one group (the Ray actors' entry point)."""
        return self.finish(items, list(self._pool.map(self.prepare, items)))

    def iter_batches(self, items: Sequence[CoinItem], *, batch_size: int, depth: int = 2) -> Iterator[list[dict]]:
        """Lines of ``items``, one list per group, preprocessing ``depth`` groups ahead."""
        groups = group_items(items, batch_size)
        for group, futures in lookahead(groups, start=lambda group: [self._pool.submit(self.prepare, i) for i in group],
                                        depth=depth):
            yield self.finish(group, [f.result() for f in futures])
