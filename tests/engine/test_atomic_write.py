"""Whole-file writes on a real full disk (a tmpfs of a few KiB): ENOSPC names the target, the
old contents stay, and no temporary file is left behind."""

from __future__ import annotations

import errno
import stat

import numpy as np
import pytest

from denarius.engine.atomic_write import write_atomic, write_atomic_with
from denarius.engine.contact_sheet import write_png


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_full_disk_raises_enospc_naming_the_target_and_keeps_the_old_file(small_disk):
    disk = small_disk(64)
    target = disk / "header.json"
    write_atomic(target, b"old contents\n", durable=True)
    with pytest.raises(OSError) as caught:
        write_atomic(target, b"x" * (256 * 1024), durable=True)  # four times the disk
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(target)
    assert target.read_bytes() == b"old contents\n"
    assert leftovers(disk) == []


def test_creating_the_temporary_file_fails_cleanly_too(small_disk):
    disk = small_disk(16, leave=0)
    with pytest.raises(OSError) as caught:
        write_atomic(disk / "sheet.png", b"\x89PNG" + bytes(64 * 1024))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.endswith("sheet.png")
    assert not (disk / "sheet.png").exists() and leftovers(disk) == []


def test_contact_sheet_png_on_a_full_disk(small_disk):
    disk = small_disk(16)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # incompressible: ~190 KiB
    with pytest.raises(OSError) as caught:
        write_png(disk / "contact_sheet.png", noise)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(disk / "contact_sheet.png")
    assert list(disk.iterdir()) == []


def test_mode_and_replace(tmp_path):
    target = tmp_path / "key"
    write_atomic(target, b"secret", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"secret"
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_a_streamed_write_on_a_full_disk_keeps_the_old_file(small_disk):
    disk = small_disk(64)
    target = disk / "keypoints.index"
    write_atomic(target, b"old index\n", durable=True)

    def write(handle):  # as the keypoint index writes itself: piece by piece
        for _ in range(64):
            handle.write(b"x" * 4096)

    with pytest.raises(OSError) as caught:
        write_atomic_with(target, write, durable=True)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_bytes() == b"old index\n"
    assert leftovers(disk) == []
    write_atomic_with(target, lambda handle: handle.write(b"new"), durable=True)
    assert target.read_bytes() == b"new" and leftovers(disk) == []
