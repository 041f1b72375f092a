"""`denarius scan` onto a real full disk (a tmpfs of a few KiB): one error line naming the output,
exit status 1, no traceback, no temporary file, and an output that holds complete lines only,
so the same command resumes once there is room."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """40 coin pairs ``c####_obv.png`` / ``c####_rev.png`` (a disc on a plain background)."""
    folder = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(3)
    for i in range(40):
        for side in ("obv", "rev"):
            image = np.full((80, 80, 3), 220, np.uint8)
            cv2.circle(image, (40, 40), 30, tuple(int(v) for v in rng.integers(40, 180, 3)), -1)
            assert cv2.imwrite(str(folder / f"c{i:04d}_{side}.png"), image)
    return folder


def scan_cli(pairs: Path, bundle: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "denarius.apps.cli", "scan", str(pairs), "--bundle", str(bundle), "--out", str(out),
               "--batch-size", "4", "--backend", "ort-cpu", "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=False)


def error_lines(stderr: str) -> list[str]:
    """stderr without the log lines (``<date> <time> LEVEL name: ...``)."""
    return [line for line in stderr.splitlines() if line and not line[:4].isdigit()]


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".partial" in p.name)


def test_full_disk_mid_scan_is_one_line_and_the_output_resumes(pairs, tiny_bundle, small_disk):
    disk = small_disk(16)  # room for the header and a few batches of lines
    out = disk / "out.jsonl"
    done = scan_cli(pairs, tiny_bundle, out)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert error_lines(done.stderr) == [
        f"denarius scan: error: no space left on device while writing {out} (ENOSPC); free some space or write elsewhere"]
    assert temporary_files(disk) == []
    data = out.read_bytes()
    assert data and data.endswith(b"\n"), "the failed write was not cut back"
    written = [json.loads(line)["coin_id"] for line in data.decode().splitlines()]
    assert 0 < len(written) < 40 and len(set(written)) == len(written)

    subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)  # room again
    done = scan_cli(pairs, tiny_bundle, out)
    assert done.returncode == 0, done.stderr
    assert f"already done     {len(written)}  (resumed)" in done.stdout
    finished = [json.loads(line)["coin_id"] for line in out.read_text().splitlines()]
    assert sorted(finished) == [f"c{i:04d}" for i in range(40)]


def test_full_disk_before_the_job_header(pairs, tiny_bundle, small_disk):
    disk = small_disk(16, leave=0)
    out = disk / "out.jsonl"
    done = scan_cli(pairs, tiny_bundle, out)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert error_lines(done.stderr) == [
        f"denarius scan: error: no space left on device while writing {out}.scan.json (ENOSPC); "
        "free some space or write elsewhere"]
    assert temporary_files(disk) == []
