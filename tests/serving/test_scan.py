"""`denarius scan`: real JPEG files, the real engine on the tiny bundle, real subprocesses.

What a user would notice: one line per coin with the engine's answer; a scan killed with
SIGKILL and rerun ends with every coin exactly once and the same answers; a torn last line
is repaired; a corrupt image fails only its coin; unpaired images are reported; an output
of another job is not resumed by accident.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from denarius.engine.errors import ConfigError
from denarius.serving.scan import Journal, ScanConfig, discover, header_path, run_scan

REPO = Path(__file__).resolve().parents[2]
SCORE_TOL = 1e-9  # the engine is batch-invariant on ort-cpu; only float noise would differ


def write_pairs(folder: Path, count: int, *, seed: int = 0, size: int = 120, start: int = 0) -> list[str]:
    """``count`` coin-like pairs ``c####_obv.jpg`` / ``c####_rev.jpg``: a textured disc on a
    plain background, different per coin. Returns the coin ids."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(start, start + count):
        for side in ("obv", "rev"):
            image = np.full((size, size, 3), int(rng.integers(150, 230)), np.uint8)
            cv2.circle(image, (size // 2 + int(rng.integers(-8, 9)), size // 2), int(size * 0.38),
                       tuple(int(v) for v in rng.integers(40, 140, 3)), -1)
            for _ in range(6):
                centre = tuple(int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
                cv2.circle(image, centre, int(rng.integers(3, 15)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
            assert cv2.imwrite(str(folder / f"c{i:04d}_{side}.jpg"), image)
        ids.append(f"c{i:04d}")
    return ids


def copy_pairs(source: Path, folder: Path, ids: list[str]) -> Path:
    """``folder`` (made here) holding the ``<id>_obv.jpg`` / ``<id>_rev.jpg`` pairs of ``ids`` from ``source``."""
    folder.mkdir()
    for coin_id in ids:
        for side in ("obv", "rev"):
            (folder / f"{coin_id}_{side}.jpg").write_bytes((source / f"{coin_id}_{side}.jpg").read_bytes())
    return folder


def read_lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn last line"
    return [json.loads(line) for line in data.decode().splitlines()]


def by_id(records: list[dict]) -> dict[str, dict]:
    ids = [r["coin_id"] for r in records]
    assert len(ids) == len(set(ids)), f"duplicate coin ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    return {r["coin_id"]: r for r in records}


def assert_same_records(got: dict[str, dict], want: dict[str, dict], *, paths: bool = True) -> None:
    """Same coins, same labels/errors, scores within SCORE_TOL (image paths too unless ``paths=False``)."""
    assert sorted(got) == sorted(want)
    for coin_id, record in want.items():
        other = got[coin_id]
        assert other["error"] == record["error"], coin_id
        assert [(c["rank"], c["ric"], c["emperor"]) for c in other["candidates"]] == \
            [(c["rank"], c["ric"], c["emperor"]) for c in record["candidates"]], coin_id
        for a, b in zip(other["candidates"], record["candidates"], strict=True):
            for key in ("score", "p_ric", "p_emperor"):
                assert a[key] == pytest.approx(b[key], abs=SCORE_TOL), (coin_id, key)
        plain = {"candidates", "score"} | (set() if paths else {"obverse", "reverse"})
        assert {k: v for k, v in other.items() if k not in plain} == {k: v for k, v in record.items() if k not in plain}, coin_id
        assert other["score"] == pytest.approx(record["score"], abs=SCORE_TOL), coin_id


def scan(input_path, bundle, out, **options):
    values = dict(input=input_path, bundle=bundle, out=out, batch_size=8, workers=2, progress=False, precision="fp32",
                  backend="ort-cpu")
    values.update(options)
    return run_scan(ScanConfig(**values))


@pytest.fixture(scope="module")
def coins(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("coins")
    return folder, write_pairs(folder, 160)


@pytest.fixture(scope="module")
def reference(coins, tiny_bundle, tmp_path_factory) -> dict[str, dict]:
    """An uninterrupted scan of the 160 coins."""
    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    summary = scan(coins[0], tiny_bundle, out, batch_size=16)
    assert summary.scanned == summary.ok == 160 and summary.errors == 0
    return by_id(read_lines(out))


def test_one_line_per_coin_with_the_engines_answers(coins, tiny_bundle, reference):
    from denarius.engine.engine import CoinPair, Engine

    folder, ids = coins
    assert sorted(reference) == ids
    sample = ids[::20]
    with Engine(tiny_bundle, backend="ort-cpu", precision="fp32") as engine:
        direct = engine.identify(
            [CoinPair(obverse=folder / f"{i}_obv.jpg", reverse=folder / f"{i}_rev.jpg", coin_id=i) for i in sample], top_k=5)
        version = engine.version
    for result in direct:
        line = reference[result.coin_id]
        assert line["error"] is None and line["mode"] == "joint" == result.mode
        assert line["model_version"] == version == "tiny-test"
        assert len(line["candidates"]) == 5
        assert line["ric"] == result.top.ric and line["emperor"] == result.top.emperor
        for got, want in zip(line["candidates"], result.candidates, strict=True):
            assert (got["ric"], got["emperor"]) == (want.ric, want.emperor)
            assert got["score"] == pytest.approx(want.score, abs=SCORE_TOL)
            assert got["p_ric"] == pytest.approx(want.p_ric, abs=SCORE_TOL)
            assert got["p_emperor"] == pytest.approx(want.p_emperor, abs=SCORE_TOL)
        assert line["obverse"] == str(folder / f"{result.coin_id}_obv.jpg")


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _run_until_lines_then_sigkill(command, env, out: Path, lines: int) -> int:
    """Start the scan, SIGKILL it once ``out`` holds ``lines`` lines; returns the lines then."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None and _line_count(out) < lines:
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, f"scan ended before it was killed: {process.stderr.read().decode()[-2000:]}"
    return _line_count(out)


def test_sigkill_mid_run_then_resume_gives_every_coin_exactly_once(coins, tiny_bundle, reference, tmp_path):
    folder, ids = coins
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "denarius.apps.cli", "scan", str(folder), "--bundle", str(tiny_bundle), "--out", str(out),
               "--batch-size", "4", "--workers", "2", "--no-progress", "--backend", "ort-cpu", "--precision", "fp32"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = _run_until_lines_then_sigkill(command, env, out, 12)  # at least three batches flushed
    assert 12 <= first < len(ids), "killed too late to test a resume"
    second = _run_until_lines_then_sigkill(command, env, out, first + 12)  # killed again while resuming
    assert first + 12 <= second < len(ids), "killed too late to test a second resume"

    rerun = subprocess.run([*command, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["already_done"] == second and summary["scanned"] == len(ids) - second
    assert_same_records(by_id(read_lines(out)), reference)


def test_torn_last_line_is_cut_and_its_coins_rescanned(coins, tiny_bundle, reference, tmp_path):
    folder, _ = coins
    out = tmp_path / "results.jsonl"
    scan(folder, tiny_bundle, out)
    data = out.read_bytes().splitlines(keepends=True)
    kept, lost = data[:100], data[100:]
    # a write cut short: 100 complete lines, then half of the 101st
    out.write_bytes(b"".join(kept) + lost[0][: len(lost[0]) // 2])
    summary = scan(folder, tiny_bundle, out, batch_size=5)
    assert summary.repaired_bytes == len(lost[0]) // 2
    assert summary.already_done == 100 and summary.scanned == 60
    assert_same_records(by_id(read_lines(out)), reference)

    again = scan(folder, tiny_bundle, out)  # nothing left to do
    assert again.scanned == 0 and again.already_done == 160 and again.repaired_bytes == 0
    assert len(read_lines(out)) == 160


def test_corrupt_image_fails_only_its_coin_and_unpaired_images_are_reported(coins, tiny_bundle, reference, tmp_path):
    source, _ = coins
    folder = tmp_path / "mixed"
    folder.mkdir()
    keep = ["c0000", "c0001", "c0002", "c0003"]
    for coin_id in keep:
        for side in ("obv", "rev"):
            (folder / f"{coin_id}_{side}.jpg").write_bytes((source / f"{coin_id}_{side}.jpg").read_bytes())
    (folder / "c0001_obv.jpg").write_bytes(b"this is not a JPEG at all")
    jpeg = (source / "c0002_rev.jpg").read_bytes()
    (folder / "c0002_rev.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # truncated
    (folder / "lonely_obv.jpg").write_bytes((source / "c0005_obv.jpg").read_bytes())
    (folder / "notes.png").write_bytes(cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes())
    for side in ("obverse", "reverse"):  # the synthetic generator's names
        (folder / f"long_{side}.jpg").write_bytes((source / f"c0003_{side[:3]}.jpg").read_bytes())
    nested = folder / "drawer" / "c9"
    nested.mkdir(parents=True)
    for side in ("obverse", "reverse"):
        (nested / f"{side}.jpg").write_bytes((source / f"c0004_{side[:3]}.jpg").read_bytes())

    out = tmp_path / "results.jsonl"
    summary = scan(folder, tiny_bundle, out, batch_size=2)
    lines = by_id(read_lines(out))
    assert sorted(lines) == ["c0000", "c0001", "c0002", "c0003", "drawer/c9", "lonely", "long", "notes"]
    assert lines["c0001"]["error"]["kind"] == "input" and "obverse" in lines["c0001"]["error"]["message"]
    assert lines["c0002"]["error"]["kind"] == "input" and "reverse" in lines["c0002"]["error"]["message"]
    assert lines["lonely"]["error"]["kind"] == "unpaired" and "no reverse" in lines["lonely"]["error"]["message"]
    assert lines["notes"]["error"]["kind"] == "unpaired"
    for failed in ("c0001", "c0002", "lonely", "notes"):
        assert lines[failed]["candidates"] == [] and lines[failed]["ric"] is None
    assert_same_records({k: lines[k] for k in ("c0000", "c0003")}, {k: reference[k] for k in ("c0000", "c0003")}, paths=False)
    assert lines["drawer/c9"]["ric"] == reference["c0004"]["ric"]  # <id>/obverse.* + <id>/reverse.* layout
    assert lines["long"]["candidates"] == reference["c0003"]["candidates"]
    assert summary.ok == 4 and summary.errors == 4
    assert summary.errors_by_kind == {"input": 2, "unpaired": 2}
    assert len(summary.unpaired) == 2 and any("lonely" in line for line in summary.unpaired)
    assert "unpaired images  2" in summary.format()


def test_manifest_input_with_a_missing_file(coins, tiny_bundle, reference, tmp_path):
    folder, _ = coins
    training = tmp_path / "train.csv"
    rows = ["coin_id,obverse,reverse,emperor,ric,obverse_description,reverse_description"]
    for i, coin_id in enumerate(["c0010", "c0011", "c0012"]):
        rows.append(f"{coin_id},{folder}/{coin_id}_obv.jpg,{folder}/{coin_id}_rev.jpg,Probus,RIC V Probus {i},,")
    rows.append(f"gone,{folder}/missing_obv.jpg,{folder}/c0013_rev.jpg,Probus,RIC V Probus 9,,")
    training.write_text("\n".join(rows) + "\n")
    unlabelled = tmp_path / "scan.csv"
    unlabelled.write_text("coin_id,obverse,reverse\n" + "\n".join(r.split(",Probus")[0] for r in rows[1:]) + "\n")

    for manifest in (training, unlabelled):
        assert [item.coin_id for item in discover(manifest).items] == ["c0010", "c0011", "c0012", "gone"]
        out = tmp_path / f"{manifest.stem}.jsonl"
        summary = scan(manifest, tiny_bundle, out)
        lines = by_id(read_lines(out))
        assert [r["coin_id"] for r in read_lines(out)] == ["c0010", "c0011", "c0012", "gone"]  # manifest order
        assert lines["gone"]["error"] == {"kind": "missing_file", "message": lines["gone"]["error"]["message"]}
        assert "missing_obv.jpg" in lines["gone"]["error"]["message"]
        assert_same_records({k: lines[k] for k in ("c0010", "c0011", "c0012")},
                            {k: reference[k] for k in ("c0010", "c0011", "c0012")})
        assert summary.errors_by_kind == {"missing_file": 1}


def test_other_job_is_refused_unless_restart(coins, tiny_bundle, tmp_path):
    folder, _ = coins
    small = tmp_path / "small"
    for coin_id in ("c0020", "c0021"):
        for side in ("obv", "rev"):
            small.mkdir(exist_ok=True)
            (small / f"{coin_id}_{side}.jpg").write_bytes((folder / f"{coin_id}_{side}.jpg").read_bytes())
    out = tmp_path / "results.jsonl"
    scan(small, tiny_bundle, out, top_k=3)
    with pytest.raises(ConfigError, match=r"(?s)top_k: output has 3, this run 5.*--restart"):
        scan(small, tiny_bundle, out, top_k=5)
    summary = scan(small, tiny_bundle, out, top_k=5, restart=True)
    assert summary.scanned == 2
    assert all(len(r["candidates"]) == 5 for r in read_lines(out))
    assert json.loads(header_path(out).read_text())["top_k"] == 5

    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"not": "ours"}\n')
    with pytest.raises(ConfigError, match="no scan header"):
        scan(small, tiny_bundle, foreign)
    with Journal(out, header=json.loads(header_path(out).read_text())):
        with pytest.raises(ConfigError, match="another running scan"):
            Journal(out, header={}).open()


def test_rerun_after_adding_images_scans_only_the_new_coins(coins, tiny_bundle, reference, tmp_path):
    folder, _ = coins
    growing = tmp_path / "growing"
    growing.mkdir()

    def add(coin_id):
        for side in ("obv", "rev"):
            (growing / f"{coin_id}_{side}.jpg").write_bytes((folder / f"{coin_id}_{side}.jpg").read_bytes())

    add("c0050"), add("c0051")
    out = tmp_path / "results.jsonl"
    assert scan(growing, tiny_bundle, out).scanned == 2
    add("c0052")
    summary = scan(growing, tiny_bundle, out, batch_size=1, workers=1)  # batch size and workers may change
    assert (summary.already_done, summary.scanned) == (2, 1)
    assert_same_records(by_id(read_lines(out)), {k: reference[k] for k in ("c0050", "c0051", "c0052")}, paths=False)


def test_cli_scan_prints_a_summary(coins, tiny_bundle, tmp_path, capsys):
    from denarius.apps.cli import main

    folder, _ = coins
    small = copy_pairs(folder, tmp_path / "small", ["c0030"])
    out = tmp_path / "r.jsonl"
    assert main(["scan", str(small), "--bundle", str(tiny_bundle), "--out", str(out), "--no-progress", "--top-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "scanned now      1  (1 ok, 0 errors)" in printed and "coins/s" in printed
    assert len(read_lines(out)[0]["candidates"]) == 2
    assert main(["scan", str(tmp_path / "nowhere"), "--bundle", str(tiny_bundle), "--out", str(out)]) == 1
    assert "scan INPUT not found" in capsys.readouterr().err


def test_landmarks_add_boxes_per_side(coins, tiny_bundle, tmp_path):
    from denarius.engine.bundle import load_bundle

    if not load_bundle(tiny_bundle).has("ric", "grad"):
        pytest.skip("the tiny bundle has no gradient graphs (denarius.export.gradgraph missing)")
    folder, _ = coins
    small = tmp_path / "small"
    small.mkdir()
    for coin_id in ("c0040", "c0041"):
        for side in ("obv", "rev"):
            (small / f"{coin_id}_{side}.jpg").write_bytes((folder / f"{coin_id}_{side}.jpg").read_bytes())
    out = tmp_path / "r.jsonl"
    scan(small, tiny_bundle, out, landmarks=True)
    for line in read_lines(out):
        for side, target in (("obverse", line["emperor"]), ("reverse", line["ric"])):
            found = line["landmarks"][side]
            assert found["target"] == target
            assert 1 <= len(found["regions"]) <= 5
            for box in found["regions"]:
                assert 0 <= box["x"] and box["x"] + box["width"] <= 64 and 0 <= box["y"] and box["y"] + box["height"] <= 64


def test_scan_through_a_server_matches_the_local_scan(coins, tiny_bundle, reference, tmp_path):
    pytest.importorskip("grpc")
    try:
        from denarius.serving.server import BackgroundServer, ServerConfig
    except ImportError as error:
        pytest.skip(f"denarius.serving.server not available: {error}")
    folder, ids = coins
    subset = tmp_path / "subset"
    subset.mkdir()
    for coin_id in ids[:40]:
        for side in ("obv", "rev"):
            (subset / f"{coin_id}_{side}.jpg").write_bytes((folder / f"{coin_id}_{side}.jpg").read_bytes())
    (subset / "broken_obv.jpg").write_bytes(b"garbage")
    (subset / "broken_rev.jpg").write_bytes((folder / "c0100_rev.jpg").read_bytes())
    config = ServerConfig(bundle=tiny_bundle, port=0, metrics_port=None, backend="ort-cpu", precision="fp32",
                          max_batch=8, max_wait_ms=5.0, grace_s=1.0)
    out = tmp_path / "remote.jsonl"
    with BackgroundServer(config) as server:
        summary = run_scan(ScanConfig(input=subset, out=out, server=f"127.0.0.1:{server.port}", batch_size=8, progress=False))
    assert summary.runner == "server" and summary.ok == 40 and summary.errors_by_kind == {"input": 1}
    lines = by_id(read_lines(out))
    assert lines["broken"]["error"]["kind"] == "input" and "obverse" in lines["broken"]["error"]["message"]
    assert_same_records({k: v for k, v in lines.items() if k != "broken"}, {k: reference[k] for k in ids[:40]}, paths=False)


def test_cli_scan_exit_status_says_whether_every_coin_succeeded(coins, tiny_bundle, tmp_path, capsys):
    from denarius.apps.cli import EXIT_PARTIAL, EXIT_USAGE, main

    folder, _ = coins
    mixed = copy_pairs(folder, tmp_path / "mixed", ["c0031"])
    for side in ("obv", "rev"):
        (mixed / f"c0032_{side}.jpg").write_bytes(b"not a photo")
    out = tmp_path / "mixed.jsonl"
    assert main(["scan", str(mixed), "--bundle", str(tiny_bundle), "--out", str(out), "--no-progress"]) == EXIT_PARTIAL
    assert "1 ok, 1 errors" in capsys.readouterr().out
    assert main(["scan", str(mixed), "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--no-progress"]) == EXIT_USAGE
    assert "is a folder; give the JSON-lines file to write" in capsys.readouterr().err
