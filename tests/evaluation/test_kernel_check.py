"""`denarius kernel-check` (denarius.evaluation.kernel_check) on a machine without CUDA."""

from __future__ import annotations

import json

import pytest


def test_kernel_check_times_numpy_and_says_why_cuda_did_not_run(tmp_path, capsys):
    from denarius.apps.cli import main
    from denarius.engine.landmarks.cuda import cuda_available
    from denarius.evaluation.kernel_check import OPERATIONS

    if cuda_available():
        pytest.skip("this machine has CUDA: tools/gpu_check.sh covers it")
    assert main(["kernel-check", "--out", str(tmp_path), "--size", "64", "--batch", "2", "--repeats", "2"]) == 0
    result = json.loads((tmp_path / "kernel_check.json").read_text())
    assert result["cuda"] == {"available": False, "skipped": "pycuda is not installed or no CUDA device is visible"}
    assert result["passed"] is None
    assert set(result["cases"]) == {"windows-11", "windows-21", "superpixels"}
    for row in result["cases"].values():
        assert row["regions"] >= 1
        for operation in OPERATIONS:
            assert row[operation]["numpy_ms"] > 0 and "cuda_ms" not in row[operation]
    assert "CUDA skipped" in capsys.readouterr().out
    assert main(["kernel-check", "--out", str(tmp_path), "--size", "64", "--repeats", "1", "--require-cuda"]) == 1
    assert main(["kernel-check", "--size", "16"]) == 2
    assert "--size must be >= 32" in capsys.readouterr().err
