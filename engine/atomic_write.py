"""Whole-file writes that leave either the old file or the new one, never a stray temporary.

Every writer of a small output (the scan's job header, a bundle manifest, a synthetic
set's manifest, a contact sheet) goes through :func:`write_atomic`, a large one written
piece by piece (the watchlist's keypoint index) through :func:`write_atomic_with`: the bytes go to a
hidden temporary file in the target's folder (``.<name>.<random>.tmp``), which is renamed
over the target only once complete. When anything fails (a full disk, a quota, an
interrupt) the temporary file is removed and the ``OSError`` is raised again with the
*target's* name as its ``filename``, so the one-line CLI error says which output could not
be written (``denarius.apps.cli.main``)::

    denarius scan: error: no space left on device while writing out.jsonl.scan.json
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomic", "write_atomic_with", "fsync_dir", "output_error", "DISK_FULL_ERRNOS"]

# "No space left" and "quota exceeded" read the same to the person running a command.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def output_error(error: OSError, path: str | os.PathLike) -> OSError:
    """The same error (same class and errno) naming ``path``, the output being written.

    ``os.write`` and ``fsync`` raise errors without a file name; the caller knows it.
    """
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno), os.fspath(path))


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (fsync of the directory itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = False, mode: int | None = None) -> Path:
    """Replace ``path`` with ``data`` in one rename; no temporary file survives a failure.

    Args:
        path: the file to create or replace (its folder must exist).
        data: the complete new contents.
        durable: fsync the file before the rename and the folder after it, so the new
            contents survive a power cut (the scan's job header needs this).
        mode: permission bits of the new file (e.g. 0o600 for a private key), filtered by
            the umask; None = 0o644.
    Returns:
        ``path`` as a Path.
    Raises:
        OSError: the write, fsync or rename failed (ENOSPC on a full disk, EDQUOT, EACCES,
            ...); its ``filename`` is ``path``. The target is left as it was.
    """
    return write_atomic_with(path, lambda handle: handle.write(data), durable=durable, mode=mode)


def write_atomic_with(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], *, durable: bool = False, mode: int | None = None
) -> Path:
    """:func:`write_atomic` for contents that ``write(handle)`` writes to a binary file
    handle (a large file, without first building all of it in memory)."""
    path = Path(path)
    temporary = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
    try:
        # O_EXCL: never write through a file (or a planted symlink) that is already there.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644 if mode is None else mode)
    except OSError as error:
        raise output_error(error, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise output_error(error, path) from None
    except BaseException:
        _remove(temporary)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def _remove(temporary: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
