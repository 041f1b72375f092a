"""Training-side writers on a real full disk (a tmpfs of a few KiB): a checkpoint and a synthetic
set fail with ENOSPC naming the file (not torch's bare RuntimeError, not a traceback) and
leave no temporary file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from denarius.engine.preprocess import PreprocessSpec  # noqa: E402 - after the importorskip
from denarius.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from denarius.training.model import ModelConfig, build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def tiny_checkpoint() -> Checkpoint:
    config = ModelConfig(num_classes=3, width=0.125, input_size=64)
    return Checkpoint(task="ric", side="reverse", model_config=config, classes=("A", "B", "C"),
                      preprocess=PreprocessSpec.for_input_size(64).to_dict(), state_dict=build_model(config).state_dict())


def stray_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name)


def test_checkpoint_on_a_full_disk_is_enospc_naming_the_file(small_disk):
    disk = small_disk(64)  # the tiny AlexNet is ~1 MiB
    path = disk / "ric.pt"
    with pytest.raises(OSError) as caught:
        save_checkpoint(path, tiny_checkpoint())
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert not path.exists() and stray_files(disk) == []


def test_checkpoint_round_trip_still_works(tmp_path):
    path = save_checkpoint(tmp_path / "ric.pt", tiny_checkpoint())
    assert load_checkpoint(path).classes == ("A", "B", "C") and stray_files(tmp_path) == []


def test_synth_on_a_full_disk_is_one_line_and_exit_1(small_disk):
    disk = small_disk(48)
    command = [sys.executable, "-m", "denarius.apps.cli", "synth", "--out", str(disk / "set"), "--preset", "tiny",
               "--workers", "1", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("denarius synth: error:")]
    assert len(errors) == 1 and "no space left on device while writing " + str(disk / "set") in errors[0], done.stderr
    assert stray_files(disk) == []
