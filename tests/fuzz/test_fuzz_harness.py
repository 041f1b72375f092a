"""The fuzz harness runs, briefly, so it cannot rot: libFuzzer under atheris over the seed
corpus and its mutations, with no finding (CI's .ci/run fuzzes for 60 s on top)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent / "fuzz_decode.py"


def test_fuzz_harness_finds_nothing_in_a_few_seconds(tmp_path):
    pytest.importorskip("atheris", reason="the fuzz extra is not installed: pip install -e '.[fuzz]'")
    corpus, findings = tmp_path / "corpus", tmp_path / "findings"
    findings.mkdir()
    subprocess.run([sys.executable, str(HARNESS), "--write-seeds", str(corpus)], check=True, timeout=120)
    seeds = sorted(p.name for p in corpus.iterdir())
    assert any(n.startswith("image_bomb") for n in seeds) and any(n.startswith("request_") for n in seeds)
    run = subprocess.run(
        [sys.executable, str(HARNESS), "-max_total_time=5", f"-artifact_prefix={findings}/", str(corpus)],
        capture_output=True, text=True, timeout=300)
    log = run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "INITED" in log and "Done" in log, log[-4000:]
    assert not list(findings.iterdir()), log[-4000:]
    assert len(list(corpus.iterdir())) >= len(seeds)  # libFuzzer kept what it found interesting
