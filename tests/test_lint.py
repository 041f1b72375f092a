"""Lint and types as habits: ``ruff check`` over the whole tree and mypy on the runtime
(denarius.engine, denarius.serving) must both come back clean.

The rules live in pyproject.toml (``[tool.ruff]``, ``[tool.mypy]``); ruff and mypy come with
the ``test`` extra. mypy reads the layers as the installed namespace through the folder of
symbolic links that tools/namespace_view.py builds (the same view the import-linter test uses).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import namespace_view  # noqa: E402  (a tool script, not a package)

MYPY_PACKAGES = ["denarius.engine", "denarius.serving"]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)


def _cache_dir(request, name: str, tmp_path: Path) -> Path:
    """A folder that outlives the test run when pytest's cache is on (faster reruns), else tmp_path."""
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir(name)) if cache is not None else tmp_path / name


def test_ruff_finds_nothing():
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."]
    result = _run(command, REPO)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout[-20000:]}{result.stderr[-4000:]}"


def test_mypy_finds_nothing_in_engine_and_serving(request, tmp_path):
    view = namespace_view.build(_cache_dir(request, "lint_namespace_view", tmp_path))
    command = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
               "--cache-dir", str(_cache_dir(request, "mypy", tmp_path)), "--no-error-summary"]
    for package in MYPY_PACKAGES:
        command += ["-p", package]
    result = _run(command, view)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 0 and not errors, (
        f"mypy found {len(errors)} error(s):\n{result.stdout[-20000:]}{result.stderr[-4000:]}")

