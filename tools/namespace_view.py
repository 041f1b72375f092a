"""Lay the checkout out as the installed namespace, without pip: a folder of symbolic links.

    python3 tools/namespace_view.py DIR      # DIR/denarius/{__init__.py, engine, training, ...}
    PYTHONPATH=DIR python3 -c "import denarius.engine"

The layer folders sit at the repository's top level and install as ``denarius.<layer>``
(pyproject.toml's ``[tool.setuptools.package-dir]``, read here, so a new layer needs no edit).
Used where nothing may be installed (tools/gpu_check.sh on a GPU host without a package
registry) and by the import-linter test, whose graph builder walks one package folder.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # requires-python is >=3.10: there tomli (the test extra installs it)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def package_dirs(repo: Path = REPO) -> dict[str, Path]:
    """{"denarius.engine": <repo>/engine, ...}: the layers of pyproject.toml's package-dir."""
    table = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: repo / folder for name, folder in table.items() if name != "denarius"}


def build(out: Path, repo: Path = REPO) -> Path:
    """Make ``out/denarius`` (replacing an old one); returns ``out``."""
    root = Path(out) / "denarius"
    if root.is_symlink() or root.is_file():
        root.unlink()
    elif root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "__init__.py").symlink_to(repo / "denarius" / "__init__.py")
    for name, folder in package_dirs(repo).items():
        (root / name.split(".", 1)[1]).symlink_to(folder, target_is_directory=True)
    return Path(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tools/namespace_view.py DIR")
    print(build(Path(sys.argv[1])))
