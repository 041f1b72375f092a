"""`denarius scan --ray`: the same job on a local Ray instance gives the local scan's lines.

One module-scoped ``ray.init(num_cpus=2)`` and one Ray scan (Ray start-up dominates on 2
cores); that scan also resumes a torn, partial output, so the journal is exercised through
the Ray runner too. Skipped when Ray Data is not installed (``pip install 'denarius[ray]'``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'denarius[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'denarius[ray]')")

from denarius.serving.scan import ScanConfig, run_scan  # noqa: E402


def write_pairs(folder: Path, count: int, *, seed: int = 1, size: int = 120) -> list[str]:
    """``count`` coin-like JPEG pairs ``r####_obv.jpg`` / ``r####_rev.jpg``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        for side in ("obv", "rev"):
            image = np.full((size, size, 3), int(rng.integers(150, 230)), np.uint8)
            cv2.circle(image, (size // 2, size // 2), int(size * 0.38), tuple(int(v) for v in rng.integers(40, 140, 3)), -1)
            for _ in range(6):
                centre = tuple(int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
                cv2.circle(image, centre, int(rng.integers(3, 15)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
            cv2.imwrite(str(folder / f"r{i:04d}_{side}.jpg"), image)
    return [f"r{i:04d}" for i in range(count)]


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_scan_resumes_and_matches_the_local_scan(local_ray, tiny_bundle, tmp_path):
    folder = tmp_path / "coins"
    ids = write_pairs(folder, 40)
    (folder / "r0030_obv.jpg").write_bytes(b"not an image")  # a per-coin error survives Ray too
    (folder / "stray_rev.jpg").write_bytes((folder / "r0001_rev.jpg").read_bytes())
    options = dict(input=folder, bundle=tiny_bundle, batch_size=8, progress=False, backend="ort-cpu", precision="fp32")

    local_out = tmp_path / "local.jsonl"
    run_scan(ScanConfig(out=local_out, **options))
    local_lines = local_out.read_bytes().splitlines(keepends=True)
    assert len(local_lines) == 41

    ray_out = tmp_path / "ray.jsonl"
    ray_out.write_bytes(b"".join(local_lines[:15]) + local_lines[15][:30])  # a partial, torn output
    (tmp_path / "ray.jsonl.scan.json").write_bytes((tmp_path / "local.jsonl.scan.json").read_bytes())
    summary = run_scan(ScanConfig(out=ray_out, ray="auto", workers=1, **options))
    assert summary.runner == "ray" and summary.already_done == 15 and summary.repaired_bytes == 30
    assert summary.scanned == 26 and summary.errors_by_kind == {"input": 1, "unpaired": 1}

    ray_lines = ray_out.read_bytes()
    assert ray_lines.endswith(b"\n")
    # Identical lines, in the same order: Ray preserves the input order.
    assert ray_lines.splitlines() == [line.rstrip(b"\n") for line in local_lines]
    records = [json.loads(line) for line in ray_lines.splitlines()]
    assert sorted(r["coin_id"] for r in records) == sorted([*ids, "stray"])


def test_a_ray_client_address_is_refused_with_what_to_use_instead(tiny_bundle, tmp_path):
    from denarius.engine.errors import ConfigError

    folder = tmp_path / "coins"
    write_pairs(folder, 2)
    with pytest.raises(ConfigError, match=r"Ray Client.*--ray auto.*GCS address"):
        run_scan(ScanConfig(input=folder, bundle=tiny_bundle, out=tmp_path / "out.jsonl", ray="ray://head:10001",
                            progress=False))
    assert not (tmp_path / "out.jsonl").exists()

