"""The watchlist directory: specimens in SQLite, their keypoints in an index file.

Layout of a watchlist directory::

    watchlist.sqlite   specimens(id, specimen_id UNIQUE, source, note, added,
                       features_version) and features(specimen, side, points,
                       descriptors, outline, geometry)
    keypoints.index    the keypoint index (keypoint_index.py; labels = specimens.id)

SQLite is the truth: one add or remove is one transaction (WAL journal, synchronous=FULL),
so a process killed at any instant leaves it with or without the whole specimen. The index
file is a snapshot of the in-memory index, written by write-then-rename once every
``snapshot_every`` adds and removes and at close (at 100,000 specimens it is ~1 GB: writing
it after every add made one add take seconds); at open it is reconciled with SQLite (rows it
lacks are filed from their stored descriptors, ~1.5 ms each, and count as unsaved changes;
labels SQLite no longer has are deleted), and rebuilt from SQLite when it is missing or
unreadable. A watchlist
written by an earlier version (global-descriptor and colour columns and an ``index.hnsw``
file, no flan outlines) is converted at open: the column and the file go, the keypoint index is
built from SQLite, and its specimens match as same die until added again.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denarius.engine.errors import AlreadyExists, ConfigError, InputError, NotFound
from denarius.engine.watchlist.descriptor import FEATURES_VERSION, NO_GEOMETRY, NO_OUTLINE, SideFeatures, side_features
from denarius.engine.watchlist.flan import RAYS
from denarius.engine.watchlist.keypoint_index import INDEXED_FEATURES, KeypointIndex
from denarius.engine.watchlist.verify import DIFFERENT, SAME_DIE, SAME_SPECIMEN, Verification, VerifyConfig, verify

__all__ = ["Specimen", "WatchlistMatch", "Watchlist", "count_earlier_features", "SAME_SPECIMEN", "SAME_DIE", "DIFFERENT"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS specimens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    specimen_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL,
    features_version INTEGER
);
CREATE TABLE IF NOT EXISTS features (
    specimen INTEGER NOT NULL REFERENCES specimens(id) ON DELETE CASCADE,
    side TEXT NOT NULL,
    points BLOB NOT NULL,
    descriptors BLOB NOT NULL,
    outline BLOB,
    geometry BLOB,
    PRIMARY KEY (specimen, side)
);
"""
_SIDES = ("obverse", "reverse")
_MAX_ID = 128
SNAPSHOT_EVERY = 1000


@dataclass(frozen=True)
class Specimen:
    """One listed specimen: its id, where it came from, a note, when it was added (Unix s)."""

    specimen_id: str
    source: str
    note: str
    added: float


@dataclass(frozen=True)
class WatchlistMatch:
    """A listed specimen a query was verified against.

    Attributes:
        specimen: the listed specimen.
        verdict: "same_specimen" or "same_die" (different ones are not returned).
        inliers: (obverse, reverse) RANSAC inliers.
        similarity: the retrieval score: the share of the query's keypoints that voted for
            this specimen (``keypoint_index.py``), in [0, 1].
        verification: the full geometric check (inlier correspondences for drawing).
    """

    specimen: Specimen
    verdict: str
    inliers: tuple[int, int]
    similarity: float
    verification: Verification


def _locked(method):
    """Run a Watchlist method under its lock."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


def count_earlier_features(db: sqlite3.Connection) -> int:
    """Specimens of a watchlist database listed by an earlier feature version than
    ``FEATURES_VERSION`` (all of them in a database from before the column)."""
    if "features_version" not in [row[1] for row in db.execute("PRAGMA table_info(specimens)")]:
        return int(db.execute("SELECT COUNT(*) FROM specimens").fetchone()[0])
    return int(db.execute(
        "SELECT COUNT(*) FROM specimens WHERE features_version IS NULL OR features_version < ?", (FEATURES_VERSION,)
    ).fetchone()[0])


def _check_id(specimen_id: str) -> str:
    if not isinstance(specimen_id, str) or not specimen_id.strip():
        raise InputError("specimen id must be a non-empty string")
    if len(specimen_id) > _MAX_ID or not specimen_id.isprintable():
        raise InputError(f"specimen id must be at most {_MAX_ID} printable characters")
    return specimen_id.strip()


class Watchlist:
    """A watchlist directory, open for adding, removing, listing and matching.

    Thread-safe: one operation at a time (a lock around the SQLite connection and the
    index). Close it (or use ``with``).

    Args:
        path: the directory (created when ``create`` and missing).
        verified: how many of the best-voted candidates get the full geometric verification.
        threads: threads one match's keypoint search uses (the two sides side by side);
            1 searches on the calling thread alone.
        snapshot_every: adds and removes between two writes of the index file; a process
            killed in between loses nothing (SQLite has them), the next open files at most
            this many specimens again.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        create: bool = True,
        verified: int = 5,
        config: VerifyConfig | None = None,
        threads: int = 2,
        snapshot_every: int = SNAPSHOT_EVERY,
    ):
        if snapshot_every < 1:
            raise ConfigError(f"snapshot_every must be at least 1, got {snapshot_every}")
        self.path = Path(path)
        if not self.path.is_dir():
            if not create:
                raise ConfigError(f"watchlist directory {self.path} does not exist")
            self.path.mkdir(parents=True)
        self.verified = verified
        self.threads = threads
        self.snapshot_every = snapshot_every
        self._unsaved = 0  # adds and removes the index file does not have yet
        self.config = VerifyConfig() if config is None else config
        self._lock = threading.RLock()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="watchlist-search") if threads > 1 else None
        self._db = sqlite3.connect(self.path / "watchlist.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._convert_earlier_version()
        self._index, filed = self._open_index()
        self._unsaved = filed  # filed from SQLite: the index file lacks them until the next snapshot
        if filed >= snapshot_every or not self.index_file.is_file():
            self._snapshot()
        if earlier := self.listed_by_earlier_features():
            log.warning("watchlist %s: %d of %d specimen(s) were listed by an earlier feature version and match only as "
                        "far as their stored features allow (no surface comparison; the oldest, same die at most); "
                        "add them again to bring them up to date", self.path, earlier, len(self))

    def _convert_earlier_version(self) -> None:
        """A watchlist of an earlier version: its global-descriptor and colour columns and its
        HNSW file go; outline, keypoint-geometry and feature-version columns come (NULL: those
        specimens match as same die, or without the surface, until added again)."""
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(features)")]
        for unused in ("vector", "chroma"):
            if unused in columns:
                self._db.execute(f"ALTER TABLE features DROP COLUMN {unused}")
        if "outline" not in columns:
            self._db.execute("ALTER TABLE features ADD COLUMN outline BLOB")
            log.warning("watchlist %s: its specimens have no flan outline; add them again to match them as same specimen",
                        self.path)
        if "features_version" not in [row[1] for row in self._db.execute("PRAGMA table_info(specimens)")]:
            self._db.execute("ALTER TABLE specimens ADD COLUMN features_version INTEGER")  # NULL: before version 4
        if "geometry" not in columns:
            self._db.execute("ALTER TABLE features ADD COLUMN geometry BLOB")  # NULL: the surface is not compared
        (self.path / "index.hnsw").unlink(missing_ok=True)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Watchlist:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_locked
    def close(self) -> None:
        """Write the index file if it is behind, and release the directory."""
        if self._unsaved:
            self._snapshot()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._db.close()

    @_locked
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM specimens").fetchone()[0])

    @property
    def index(self) -> KeypointIndex:
        return self._index

    @property
    def index_file(self) -> Path:
        return self.path / "keypoints.index"

    def _open_index(self) -> tuple[KeypointIndex, int]:
        """The index file reconciled with SQLite, and how many specimens were filed from SQLite."""
        ids = {int(r[0]) for r in self._db.execute("SELECT id FROM specimens")}
        index = None
        if self.index_file.is_file():
            try:
                index = KeypointIndex.load(self.index_file)
            except (OSError, ValueError) as error:
                log.warning("watchlist index %s unreadable (%s): rebuilding it from SQLite", self.index_file, error)
        if index is None:
            index = KeypointIndex()
        missing = sorted(ids - index.stored_labels())
        index.keep_only(ids)
        for first in range(0, len(missing), 1000):  # in blocks: one faiss call per side each
            block = missing[first:first + 1000]
            index.add_many(block, [self.indexed_descriptors(label) for label in block])
        if missing:
            log.info("watchlist %s: %d specimen(s) added to the index from SQLite", self.path, len(missing))
        return index, len(missing)

    @_locked
    def indexed_descriptors(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """A listed specimen's (obverse, reverse) strongest descriptors, as the index files them."""
        rows = dict(self._db.execute(
            f"SELECT side, substr(descriptors, 1, {32 * INDEXED_FEATURES}) FROM features WHERE specimen = ?", (label,)))
        # substr() of a featureless side's empty blob is NULL
        return tuple(np.frombuffer(rows[side] or b"", np.uint8).reshape(-1, 32) for side in _SIDES)  # type: ignore[return-value]

    def add(self, specimen_id: str, obverse, reverse, *, source: str = "", note: str = "") -> Specimen:
        """List a specimen from its two photos (bytes, paths or (H, W, 3) uint8 RGB).

        Raises:
            InputError: a photo cannot be decoded (names the side) or a bad id.
            AlreadyExists: the id is listed.
        """
        features = (side_features(obverse, side="obverse"), side_features(reverse, side="reverse"))
        return self.add_features(specimen_id, features, source=source, note=note)

    @_locked
    def add_features(
        self, specimen_id: str, features: tuple[SideFeatures, SideFeatures], *, source: str = "", note: str = ""
    ) -> Specimen:
        """List a specimen from already computed (obverse, reverse) features."""
        specimen_id = _check_id(specimen_id)
        added = time.time()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "INSERT INTO specimens (specimen_id, source, note, added, features_version) VALUES (?, ?, ?, ?, ?)",
                (specimen_id, str(source), str(note), added, FEATURES_VERSION),
            )
            label = int(cursor.lastrowid or 0)
            for side, f in zip(_SIDES, features, strict=True):
                self._db.execute(
                    "INSERT INTO features (specimen, side, points, descriptors, outline, geometry) VALUES (?, ?, ?, ?, ?, ?)",
                    (label, side, f.points.astype(np.float32).tobytes(), f.descriptors.astype(np.uint8).tobytes(),
                     f.outline.astype(np.float32).tobytes(), f.geometry.astype(np.float32).tobytes()),
                )
            self._db.execute("COMMIT")
        except sqlite3.IntegrityError:
            self._db.execute("ROLLBACK")
            raise AlreadyExists(f"specimen {specimen_id!r} is already on the watchlist; remove it first") from None
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._index.add(label, (features[0].descriptors, features[1].descriptors))
        self._changed()
        return Specimen(specimen_id, str(source), str(note), added)

    @_locked
    def save_index(self) -> None:
        """Write the index file now (write-then-rename; :meth:`close` does it when behind)."""
        self._index.save(self.index_file)
        self._unsaved = 0

    def _changed(self) -> None:
        self._unsaved += 1
        if self._unsaved >= self.snapshot_every:
            self._snapshot()

    def _snapshot(self) -> None:
        """:meth:`save_index`, where a failure (a full disk) costs nothing but the next open's
        reconciliation: the change itself is committed in SQLite."""
        try:
            self.save_index()
        except OSError as error:
            log.warning("watchlist %s: index file not written (%s); %d change(s) will be filed from SQLite at the next open",
                        self.path, error, self._unsaved)

    @_locked
    def remove(self, specimen_id: str) -> Specimen:
        """Take a specimen off the list. Raises NotFound for an id that is not listed."""
        row = self._db.execute(
            "SELECT id, specimen_id, source, note, added FROM specimens WHERE specimen_id = ?", (specimen_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"specimen {specimen_id!r} is not on the watchlist ({len(self)} listed; see `denarius watchlist list`)")
        self._db.execute("DELETE FROM specimens WHERE id = ?", (row[0],))  # autocommit: one transaction
        self._index.remove(int(row[0]))
        self._changed()
        return Specimen(*row[1:])

    # ------------------------------------------------------------------ reads
    @_locked
    def listed(self, *, limit: int | None = None, offset: int = 0) -> list[Specimen]:
        """Listed specimens in the order they were added."""
        rows = self._db.execute(
            "SELECT specimen_id, source, note, added FROM specimens ORDER BY id LIMIT ? OFFSET ?",
            (-1 if limit is None else int(limit), int(offset)),
        ).fetchall()
        return [Specimen(*row) for row in rows]

    @_locked
    def listed_by_earlier_features(self) -> int:
        """How many specimens were listed by an earlier feature version (``FEATURES_VERSION``):
        they match by what their stored features allow; adding them again brings them up to date."""
        return count_earlier_features(self._db)

    @_locked
    def get(self, specimen_id: str) -> Specimen:
        row = self._db.execute("SELECT specimen_id, source, note, added FROM specimens WHERE specimen_id = ?", (specimen_id,)).fetchone()
        if row is None:
            raise NotFound(f"specimen {specimen_id!r} is not on the watchlist")
        return Specimen(*row)

    def _features(self, label: int) -> tuple[Specimen, tuple[SideFeatures, SideFeatures]] | None:
        rows = self._db.execute(
            "SELECT s.specimen_id, s.source, s.note, s.added, f.side, f.points, f.descriptors, f.outline, f.geometry "
            "FROM specimens s JOIN features f ON f.specimen = s.id WHERE s.id = ?",
            (label,),
        ).fetchall()
        if len(rows) != 2:
            return None  # removed since the search
        sides = {}
        for row in rows:
            sides[row[4]] = SideFeatures(
                points=np.frombuffer(row[5], np.float32).reshape(-1, 2),
                descriptors=np.frombuffer(row[6], np.uint8).reshape(-1, 32),
                outline=NO_OUTLINE if row[7] is None else np.frombuffer(row[7], np.float32).reshape(RAYS, 2),
                geometry=NO_GEOMETRY if row[8] is None else np.frombuffer(row[8], np.float32).reshape(-1, 3),
            )
        return Specimen(*rows[0][:4]), (sides["obverse"], sides["reverse"])

    def match(self, obverse, reverse, *, top_k: int = 3) -> list[WatchlistMatch]:
        """Listed specimens the coin in these two photos is (same_specimen) or shares a die with.

        Returns:
            at most ``top_k`` matches, same specimen before same die, then by inliers;
            empty for an empty watchlist or no verified candidate.
        Raises:
            InputError: a photo cannot be decoded (the message names the side).
        """
        query = (side_features(obverse, side="obverse"), side_features(reverse, side="reverse"))
        return self.match_features(query, top_k=top_k)

    @_locked
    def match_features(self, query: tuple[SideFeatures, SideFeatures], *, top_k: int = 3) -> list[WatchlistMatch]:
        """:meth:`match` for already computed (obverse, reverse) features.

        Two stages: the ``verified`` specimens with most keypoint votes
        (``keypoint_index.py``), then the full geometric verification of each.
        """
        labels, scores = self.search((query[0].descriptors, query[1].descriptors))
        return self.verify_candidates(query, labels, scores, top_k=top_k)

    @_locked
    def search(self, descriptors: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1 of :meth:`match_features`: the ``verified`` best-voted (K,) labels and
        their (K,) scores for (obverse, reverse) (N, 32) uint8 query descriptors."""
        return self._index.search(descriptors, self.verified, executor=self._executor)

    @_locked
    def verify_candidates(
        self, query: tuple[SideFeatures, SideFeatures], labels: np.ndarray, scores: np.ndarray, *, top_k: int = 3
    ) -> list[WatchlistMatch]:
        """Stage 2 of :meth:`match_features` on (K,) index labels and their retrieval scores."""
        found = []
        for label, score in zip(labels.tolist(), scores.tolist(), strict=True):
            listed = self._features(label)
            if listed is None:
                continue  # removed since the search
            # on this thread: a check is well under a millisecond, and spreading 5 candidates'
            # checks over two threads measured slower (5.4 vs 3.7 ms)
            result = verify(query, listed[1], self.config)
            if result.verdict == DIFFERENT:
                continue
            found.append(WatchlistMatch(
                specimen=listed[0], verdict=result.verdict,
                inliers=(result.obverse.inliers, result.reverse.inliers), similarity=float(score), verification=result,
            ))
        found.sort(key=lambda m: (m.verdict != SAME_SPECIMEN, -m.verification.score))
        return found[:top_k]
