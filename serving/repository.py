"""Where ``denarius serve`` finds its bundle: a bundle folder, or a model repository of versions.

``denarius serve PATH`` takes either

- a **bundle folder** (``PATH/manifest.json``), served as it is; or
- a **model repository**: a folder of versioned bundles, Triton's ``<name>/<version>/``
  layout with ``PATH`` as the model's folder::

      models/coins/
        1/manifest.json  emperor.onnx ...
        2/manifest.json  emperor.onnx ...
        .3.partial/       (hidden: being copied, never considered)

The served version is the **highest complete one**. A version is a sub-folder whose name
does not start with ``.`` and that holds a ``manifest.json`` (``denarius export`` writes it
last, atomically, so a bundle still being exported is not complete). Names compare in
natural order (:func:`version_key`): runs of digits as numbers, the rest as text, so
``2 < 10``, ``v2 < v10`` and ``2024-01-05 < 2024-02-01``. To publish a version copied from
elsewhere, copy it to a hidden folder of the repository and rename it into place (one atomic
step), or copy ``manifest.json`` last. Removing the highest version makes the next one the
highest again (a rollback, at the next reload).

:func:`choose` resolves a path to the bundle to load; :class:`Choice` carries a stamp of its
manifest (inode, size, mtime), so a reload can tell "the same bundle" from "a rewritten
one" with one ``stat``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from denarius.engine.bundle import MANIFEST_NAME
from denarius.engine.errors import BundleError

__all__ = ["Choice", "choose", "version_key", "versions", "folder_stamp"]

_DIGITS = re.compile(r"(\d+)")


def version_key(name: str) -> tuple:
    """Natural order: ``"v10"`` -> ``("v", 10, "")``; ties (``"01"`` / ``"1"``) broken by the name.

    ``re.split`` with a group alternates text and digit runs starting with text, so two keys
    always compare text with text and numbers with numbers.
    """
    parts = _DIGITS.split(name)
    return (tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), name)


def _manifest_stamp(folder: Path) -> tuple[int, int, int] | None:
    try:
        stat = (folder / MANIFEST_NAME).stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def versions(repository: str | os.PathLike) -> list[str]:
    """The complete versions of a repository (see the module docstring), lowest first."""
    found = []
    try:
        entries = list(os.scandir(Path(repository)))
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if (Path(entry.path) / MANIFEST_NAME).is_file():
            found.append(entry.name)
    return sorted(found, key=version_key)


@dataclass(frozen=True)
class Choice:
    """The bundle folder to load, its repository version (None for a plain bundle folder) and
    its manifest's stamp (inode, size, mtime_ns)."""

    path: Path
    version: str | None
    stamp: tuple[int, int, int] | None

    def describe(self) -> str:
        return str(self.path) if self.version is None else f"{self.path.parent} version {self.version}"


def choose(path: str | os.PathLike) -> Choice:
    """The bundle ``denarius serve PATH`` serves now: PATH itself when it holds a manifest.json,
    else the highest complete version of the repository PATH.

    Raises:
        BundleError: PATH is not a folder, or neither a bundle nor a repository with a
            complete version.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle folder or model repository not found: {root}")
    stamp = _manifest_stamp(root)
    if stamp is not None:
        return Choice(root, None, stamp)
    found = versions(root)
    if not found:
        raise BundleError(
            f"{root} is neither a bundle (no {MANIFEST_NAME}) nor a model repository (no <version>/{MANIFEST_NAME} "
            "sub-folder); create a bundle with `denarius export`")
    folder = root / found[-1]
    return Choice(folder, found[-1], _manifest_stamp(folder))


def folder_stamp(folder: str | os.PathLike) -> tuple:
    """(name, size, mtime_ns) of every entry of a bundle folder, sorted: changes when any file
    is rewritten, so a version that failed to load is tried again once it has been fixed."""
    stamps = []
    try:
        entries = list(os.scandir(Path(folder)))
    except OSError:
        return ()
    for entry in entries:
        try:
            stat = entry.stat()
        except OSError:
            continue
        stamps.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(stamps))
