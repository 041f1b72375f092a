"""engine and serving import on a host without PyTorch."""

import subprocess
import sys


def test_engine_and_serving_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import denarius, denarius.engine, denarius.serving, denarius.apps.cli\n"
        "import denarius.engine.preprocess, denarius.engine.bundle, denarius.engine.hierarchy\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_cli_help_lists_subcommands_without_torch():
    code = "import sys; sys.modules['torch'] = None\nfrom denarius.apps.cli import main\nmain(['--help'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "preprocess" in result.stdout and "validate" in result.stdout


def test_every_registered_command_module_exists():
    import importlib

    from denarius.apps.cli import COMMANDS

    for name, (module_name, _) in COMMANDS.items():
        module = importlib.import_module(f"denarius.apps.cli.{module_name}")
        assert callable(module.add_arguments) and callable(module.run), name
