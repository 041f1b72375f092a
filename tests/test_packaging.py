"""The wheel installs one top-level package, ``denarius``, holding every module of the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # requires-python is >=3.10: there tomli (the test extra installs it)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import namespace_view  # noqa: E402  (a tool script, not a package: it reads pyproject.toml's package-dir)

# {folder: installed package}, e.g. {"engine": "denarius.engine", "denarius": "denarius"}
LAYERS = {"denarius": "denarius"} | {folder.name: package for package, folder in namespace_view.package_dirs(REPO).items()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (setuptools builds in-tree and keeps build/)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in LAYERS:
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{result.stderr[-3000:]}")
    [path] = out.glob("denarius-*.whl")
    return path


def _tree_modules() -> set[str]:
    """Installed names of every .py file under the layer folders, e.g. denarius/engine/bundle.py."""
    names = set()
    for folder, package in LAYERS.items():
        for path in (REPO / folder).rglob("*.py"):
            names.add("/".join([*package.split("."), *path.relative_to(REPO / folder).parts]))
    return names


def test_wheel_has_denarius_as_its_only_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"denarius"}, f"top-level entries besides denarius: {sorted(tops - {'denarius'})}"
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["denarius"]


def test_wheel_holds_every_module_kernel_and_stub(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_tree_modules() - names)
    assert not missing, f"modules left out of the wheel (add their package to pyproject.toml): {missing[:10]}"
    assert "denarius/engine/kernels/landmarks.cu" in names
    assert "denarius/serving/denarius/v1/coins_pb2.pyi" in names
    static = {p.name for p in (REPO / "serving" / "http" / "static").iterdir() if p.is_file()}
    assert {"index.html", "app.js", "style.css"} <= static  # the web page: served from the package, no build step
    assert {f"denarius/serving/http/static/{name}" for name in static} <= names
    protos = {p.name for p in (REPO / "proto" / "denarius" / "v1").glob("*.proto")}
    assert protos and {f"denarius/proto/denarius/v1/{name}" for name in protos} <= names  # for clients in other languages


def test_console_script_points_into_the_namespace(wheel):
    archive = zipfile.ZipFile(wheel)
    entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert "denarius = denarius.apps.cli:main" in entry_points


def test_installed_wheel_imports_outside_the_checkout(wheel, tmp_path):
    """The wheel's own files, not the checkout's folders, answer `from denarius.engine import Engine`."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = (
        "import denarius, denarius.engine\n"
        "from denarius.engine import Engine\n"
        "from denarius.apps.cli import main\n"
        f"assert denarius.engine.__file__.startswith({str(target)!r}), denarius.engine.__file__\n"
        "print(denarius.__version__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]["version"]
    assert version == {"attr": "denarius.__version__"}
    assert result.stdout.strip() == __import__("denarius").__version__


def test_no_module_imports_the_old_top_level_names():
    offenders = []
    for folder in [*LAYERS, "tests"]:
        for path in (REPO / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.strip()
                for old in ("engine", "serving", "training", "export"):
                    if stripped.startswith((f"from {old}.", f"from {old} import", f"import {old}")):
                        offenders.append(f"{path.relative_to(REPO)}:{number}: {stripped}")
    assert not offenders, "\n".join(offenders)


def test_a_missing_optional_module_names_the_extra_that_installs_it():
    """Every distribution of the cpu/train/serve/ray extras has a module whose absence the
    CLI explains with an extra that really lists it (apps/cli missing_extra_hint)."""
    import importlib.metadata
    import re

    from denarius.apps.cli import missing_extra_hint

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def distribution(requirement: str) -> str:
        return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    listed = {name: {distribution(r) for r in requirements} for name, requirements in extras.items()}
    modules_of: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for name in distributions:
            modules_of.setdefault(name.lower().replace("_", "-"), set()).add(module)
    for extra in ("cpu", "train", "serve", "ray"):
        for name in sorted(listed[extra]):
            assert name in modules_of, f"{name} (extra {extra!r}) is not installed here"
            explained, hint = [], ""
            for module in sorted(modules_of.get(name, ())):
                hint = missing_extra_hint(ModuleNotFoundError(f"No module named '{module}'", name=module))
                named = re.search(r"denarius\[(\w+)\]", hint)
                if named and name in listed[named.group(1)]:
                    explained.append(module)
            assert explained, f"no missing module of {name} (extra {extra!r}) is explained by its extra: {hint!r}"
