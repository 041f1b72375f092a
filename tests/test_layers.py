"""The layer rules of pyproject.toml's [tool.importlinter], checked on the code and shown to bite."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import namespace_view  # noqa: E402  (a tool script, not a package)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("importlinter") is None,
                                reason="import-linter is not installed (the test extra has it)")


def lint_imports(repo: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on ``repo``'s namespace, seen through a folder of symbolic links."""
    view = namespace_view.build(tmp_path / "view", repo)
    env = {**os.environ, "PYTHONPATH": str(view), "COLUMNS": "200"}  # one line per contract
    command = [str(Path(sys.executable).with_name("lint-imports")), str(repo / "pyproject.toml"), "--no-cache"]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_the_code_keeps_every_layer_contract(tmp_path):
    result = lint_imports(REPO, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("engine/hierarchy.py", "import denarius.training.data", "Layers"),
    ("training/data.py", "from denarius.serving import status", "Layers"),
    ("serving/status.py", "import denarius.apps.cli", "Layers"),
    ("serving/status.py", "import denarius.evaluation.metrics", "Layers"),  # siblings, independent
    ("engine/bundle.py", "import torch", "No PyTorch in the runtime"),
    ("serving/client.py", "import denarius.training.data", "No PyTorch in the runtime"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, contract):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    for folder in ["denarius", *(path.name for path in namespace_view.package_dirs(REPO).values())]:
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(copy, tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), result.stdout[-3000:]
