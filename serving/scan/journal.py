"""Exactly-once, resumable JSON-lines output for ``denarius scan``.

The output file is the journal: one JSON object per line, one line per finished coin. The
protocol that makes a scan killable at any instant (SIGKILL, power cut after an fsync)::

    open        take an exclusive lock (a second scan into the same file is refused);
                compare the job header ``<out>.scan.json`` with this job's (input, model
                version, precision, top-k, landmarks): a mismatch is refused unless --restart;
                cut the file back to its last complete, parseable line (a torn tail from a
                kill mid-write), and read the coin ids already finished
    append      each batch is ONE os.write() of complete lines (looped only if the kernel
                writes part of it), then fsync, before the next batch starts
    resume      the caller skips every coin id the journal reports as finished

A kill between two writes leaves complete lines; a kill inside a write leaves complete lines
plus a torn tail that the next open cuts off, so every coin ends up in the file exactly
once. The header is written atomically (temp file, fsync, rename, fsync of the folder)
before the first line; a write that fails (a full disk) is cut back off, and the error
names the file (``denarius scan`` prints it in one line and exits 1).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from denarius.engine.atomic_write import output_error, write_atomic
from denarius.engine.errors import ConfigError

__all__ = ["Journal", "header_path", "HEADER_FORMAT"]

log = logging.getLogger(__name__)

HEADER_FORMAT = 1


def header_path(out: str | Path) -> Path:
    """The job header that sits next to the output: ``results.jsonl`` -> ``results.jsonl.scan.json``."""
    out = Path(out)
    return out.with_name(out.name + ".scan.json")


class Journal:
    """The open output file of one scan job; use as a context manager.

    Args:
        out: the JSON-lines output path (its folder is created).
        header: what identifies the job (JSON-serialisable, compared key by key on resume).
        restart: discard an existing output of a different or the same job and start over.

    Attributes:
        done: coin ids already in the file (finished by an earlier run), a set of str.
        repaired_bytes: bytes of torn tail cut off at open (0 when the file was clean).

    Raises:
        ConfigError: the output belongs to a different job (the message names the
            differing settings and the --restart flag), it exists without a header, or
            another scan holds it.
    """

    def __init__(self, out: str | Path, *, header: Mapping, restart: bool = False):
        self.path = Path(out)
        self.header = json.loads(json.dumps({"format": HEADER_FORMAT, **header}))
        self.restart = restart
        self.done: set[str] = set()
        self.repaired_bytes = 0
        self._fd: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> Journal:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise ConfigError(f"{self.path} is being written by another running scan; wait for it or choose another --out") from None
            raise
        self._fd = fd
        try:
            self._check_header()
            self._repair_and_load()
        except OSError as error:  # ftruncate/fsync name no file: this journal is the one
            self.close()
            raise (output_error(error, self.path) if error.filename is None else error) from None
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # also releases the lock

    def _open_fd(self) -> int:
        """The output's file descriptor; ConfigError when the journal is not open."""
        if self._fd is None:
            raise ConfigError("the journal is not open")
        return self._fd

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ header

    def _check_header(self) -> None:
        hpath = header_path(self.path)
        fd = self._open_fd()
        size = os.fstat(fd).st_size
        if self.restart:
            if size:
                log.info("--restart: discarding %d bytes of earlier results in %s", size, self.path)
            os.ftruncate(fd, 0)
            os.fsync(fd)
            write_atomic(hpath, json.dumps(self.header, indent=2, sort_keys=True).encode() + b"\n", durable=True)
            return
        stored = None
        if hpath.is_file():
            try:
                stored = json.loads(hpath.read_text())
            except (OSError, ValueError) as error:
                raise ConfigError(f"cannot read the scan header {hpath} ({error}); rerun with --restart to start over") from None
        if stored is None:
            if size:
                raise ConfigError(
                    f"{self.path} already holds {size} bytes but has no scan header {hpath.name}; it was not written "
                    "by this scan. Choose another --out, or pass --restart to overwrite it")
            write_atomic(hpath, json.dumps(self.header, indent=2, sort_keys=True).encode() + b"\n", durable=True)
            return
        if stored != self.header:
            keys = sorted(set(stored) | set(self.header))
            diffs = [f"{k}: output has {stored.get(k)!r}, this run {self.header.get(k)!r}"
                     for k in keys if stored.get(k) != self.header.get(k)]
            raise ConfigError(
                f"{self.path} holds results of a different scan job, so it cannot be resumed:\n  "
                + "\n  ".join(diffs) + "\nrerun with the same arguments to resume, or add --restart to start over")

    # ------------------------------------------------------------------ repair + resume

    def _repair_and_load(self) -> None:
        """Cut the file back to its last good line; collect finished coin ids."""
        with open(self.path, "rb") as handle:
            data = handle.read()
        good_end = 0
        position = 0
        duplicates = 0
        while position < len(data):
            newline = data.find(b"\n", position)
            if newline < 0:
                break  # torn tail: no newline
            line = data[position:newline]
            try:
                coin_id = json.loads(line)["coin_id"]
                if not isinstance(coin_id, str):
                    raise TypeError("coin_id is not a string")
            except (ValueError, KeyError, TypeError):
                # Only a crash can produce an unparsable line, and only at the end of what
                # was written; everything after it is redone.
                break
            if coin_id in self.done:
                duplicates += 1
            self.done.add(coin_id)
            position = good_end = newline + 1
        if good_end < len(data):
            self.repaired_bytes = len(data) - good_end
            log.warning("%s: cut off %d bytes of an incomplete last write (a scan was interrupted); "
                        "those coins are scanned again", self.path, self.repaired_bytes)
            fd = self._open_fd()
            os.ftruncate(fd, good_end)
            os.fsync(fd)
        if duplicates:  # never written by this module; a hand-edited or concatenated file
            log.warning("%s: %d coin ids appear more than once", self.path, duplicates)

    # ------------------------------------------------------------------ append

    def append(self, records: Iterable[Mapping]) -> int:
        """Write records as complete JSON lines in one write, then fsync.

        A failed write (a full disk: ENOSPC) is undone: the file is cut back to the lines
        it held before, so it never ends in a torn line, and the error names the file.

        Returns:
            the number of records written.
        Raises:
            OSError: the write or fsync failed; ``filename`` is the output's path.
        """
        fd = self._open_fd()
        records = list(records)
        lines = [json.dumps(record, ensure_ascii=False, separators=(",", ":")) for record in records]
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode("utf-8")
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as error:
            self._undo_append(fd, before)
            raise output_error(error, self.path) from None
        for record in records:
            self.done.add(record["coin_id"])
        return len(lines)

    def _undo_append(self, fd: int, size: int) -> None:
        """Cut the file back to ``size`` bytes after a failed append (shrinking needs no space)."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as error:  # the next open cuts the torn tail anyway
            log.warning("%s: could not cut back a failed write (%s); the next run repairs it", self.path, error)
