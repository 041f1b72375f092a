"""`denarius serve` / `denarius identify` / remote landmarks from the command line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from denarius.apps.cli import build_parser, cmd_serve, main, remote_landmarks
from denarius.engine.errors import ConfigError


def test_identify_via_server_prints_a_table(server, fixture_photos, capsys):
    code = main(["identify", "--server", f"127.0.0.1:{server.port}", str(fixture_photos["obverse"]),
                 str(fixture_photos["reverse"]), "--top-k", "3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "RIC type" in out and "p(ric|rev)" in out and "model tiny-test, mode joint" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "2 ", "3 "))]) == 3


def test_identify_json_same_answer_via_server_and_in_process(server, tiny_bundle, fixture_photos, capsys):
    photos = [str(fixture_photos["obverse"]), str(fixture_photos["reverse"])]
    assert main(["identify", "--server", f"127.0.0.1:{server.port}", *photos, "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert main(["identify", "--bundle", str(tiny_bundle), *photos, "--json", "--backend", "ort-cpu",
                 "--precision", "fp32"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert [c["ric"] for c in remote["candidates"]] == [c["ric"] for c in local["candidates"]]
    assert [c["score"] for c in remote["candidates"]] == pytest.approx([c["score"] for c in local["candidates"]], abs=1e-5)
    assert local["mode"] == "joint" and len(local["candidates"]) == 5


def test_identify_obverse_only_and_errors(server, fixture_photos, tmp_path, capsys):
    assert main(["identify", "--server", f"127.0.0.1:{server.port}", str(fixture_photos["obverse"]), "-"]) == 0
    assert "p(emperor|obverse)" in capsys.readouterr().out
    text = tmp_path / "notes.txt"
    text.write_text("this is not a coin photo\n")
    assert main(["identify", "--server", f"127.0.0.1:{server.port}", str(text), "-"]) == 1  # the coin failed
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "obverse" in err and "text" in err
    assert main(["identify", "--server", f"127.0.0.1:{server.port}", "-", "-"]) == 2
    assert main(["identify", "--server", f"127.0.0.1:{server.port}", str(tmp_path / "absent.jpg"), "-"]) == 1
    assert "absent.jpg" in capsys.readouterr().err


def test_remote_landmarks_writes_the_overlay_png(server, fixture_photos, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    remote_landmarks.add_arguments(parser)
    args = parser.parse_args(["--server", f"127.0.0.1:{server.port}"])
    out = tmp_path / "overlay.png"
    assert remote_landmarks.run(args, image=fixture_photos["reverse"], side="reverse", output=out,
                                max_iterations=5, method="optimized") == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    table = capsys.readouterr().out
    assert "p(target | image)" in table and "overlay written to" in table
    assert remote_landmarks.run(args, image=fixture_photos["obverse"], side="obverse", as_json=True,
                                method="saliency") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["heatmap"]["shape"] == ["64", "64"] and "data" not in data["heatmap"]
    assert data["target"] in {"Aurelianus", "Probus", "Tacitus"}


def test_serve_arguments_map_onto_server_config(tiny_bundle, tmp_path, monkeypatch):
    parser = build_parser()
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-1\ntok-2\n")
    args = parser.parse_args(["serve", str(tiny_bundle), "--port", "0", "--max-batch", "4", "--max-wait-ms", "2",
                              "--token-file", str(tokens), "--precision", "fp32", "--metrics-port", "-1",
                              "--max-message-mb", "1", "--stream-window", "3"])
    config = cmd_serve.config_from_args(args)
    assert config.host == "127.0.0.1"  # loopback by default
    assert config.tokens == ("tok-1", "tok-2") and config.metrics_port is None
    assert config.max_batch == 4 and config.max_message_bytes == 1024 * 1024 and config.stream_window == 3
    with pytest.raises(ConfigError, match="both"):
        cmd_serve.config_from_args(parser.parse_args(["serve", str(tiny_bundle), "--tls-cert", str(tokens)]))
    monkeypatch.delenv("DENARIUS_ABSENT_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="DENARIUS_ABSENT_TOKEN"):
        cmd_serve.config_from_args(parser.parse_args(["serve", str(tiny_bundle), "--token-env", "DENARIUS_ABSENT_TOKEN"]))


def test_serve_with_a_broken_bundle_exits_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "denarius.apps.cli", "serve", str(tmp_path), "--port", "0",
                             "--metrics-port", "-1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "denarius serve: error:" in result.stderr and "manifest" in result.stderr


def test_serving_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import denarius.serving.server, denarius.serving.client, denarius.serving.servicer, "
            "denarius.serving.runtime, denarius.serving.status\n"
            "import denarius.apps.cli.cmd_serve, denarius.apps.cli.cmd_identify, denarius.apps.cli.remote_landmarks\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_version_and_every_subcommand_shows_examples_that_parse(capsys):
    import shlex

    from denarius import __version__
    from denarius.apps.cli import COMMANDS

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"denarius {__version__}"
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert "examples:\n  denarius " + name in text and "exit status: 0 success" in text, name
        for line in text.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines():
            argv = shlex.split(line, comments=True)[1:]  # as a shell reads it: a trailing "# ..." is a comment
            assert argv[0] == name
            parser.parse_args(argv)  # an example that does not parse exits 2 here


def test_in_process_identify_needs_no_grpc(tiny_bundle, fixture_photos):
    code = ("import sys; sys.modules['grpc'] = None; sys.modules['torch'] = None\n"
            "from denarius.apps.cli import main\n"
            f"sys.exit(main(['identify', '--bundle', {str(tiny_bundle)!r}, {str(fixture_photos['obverse'])!r}, "
            f"{str(fixture_photos['reverse'])!r}, '--json']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["candidates"]


def test_a_missing_extra_is_named_with_its_install_command(tiny_bundle):
    code = ("import sys; sys.modules['grpc'] = None\n"
            "from denarius.apps.cli import main\n"
            f"sys.exit(main(['serve', {str(tiny_bundle)!r}, '--port', '0']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "pip install 'denarius[serve]'" in result.stderr and "Traceback" not in result.stderr
