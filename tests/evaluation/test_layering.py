"""The runtime and the gRPC layer never import denarius.evaluation; the CLI's commands (apps)
import it only inside a function (their ``run``), so ``import denarius.apps.cli`` stays
free of it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _evaluation_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, inside a function) of every import of denarius.evaluation in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                names = [child.module or ""]
            if any(name == "denarius.evaluation" or name.startswith("denarius.evaluation.") for name in names):
                found.append((child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def test_engine_and_serving_do_not_import_evaluation():
    offenders = []
    for folder in ("engine", "serving"):
        for path in sorted((REPO / folder).rglob("*.py")):
            is_cli = path.relative_to(REPO).parts[:2] == ("serving", "cli")
            for line, in_function in _evaluation_imports(path):
                if not (is_cli and in_function):
                    offenders.append(f"{path.relative_to(REPO)}:{line}")
    assert not offenders, "denarius.evaluation imported by the runtime / gRPC layer (or at a CLI module's top): " + ", ".join(offenders)


def test_the_check_sees_an_import(tmp_path):
    """The scanner finds module-level and function-level imports (so the test above can fail)."""
    path = tmp_path / "m.py"
    path.write_text("import denarius.evaluation.eval\n\ndef run():\n    from denarius.evaluation.metrics import energy\n")
    assert _evaluation_imports(path) == [(1, False), (4, True)]
