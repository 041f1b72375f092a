"""Fixtures of the evaluation tests: a hand-made synthetic set with known landmarks."""

from __future__ import annotations

import csv
import json

import cv2
import pytest


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory, symbol_coin):
    """A hand-made synthetic set in `denarius synth`'s format: 3 coins, the last with its
    shield far enough right of the centre that the centre point misses it (a difficult image)."""
    root = tmp_path_factory.mktemp("synth")
    (root / "images").mkdir()
    rows, lines = [], []
    coins = [(0, "Probus", "RIC V Probus 10"), (1, "Tacitus", "RIC V Tacitus 30"), (5, "Probus", "RIC V Probus 11")]
    for i, (seed, emperor, ric) in enumerate(coins):
        for side in ("obverse", "reverse"):
            photo, regions = symbol_coin(seed)
            cv2.imwrite(str(root / "images" / f"c{i}_{side}.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
            lines.append({"coin_id": f"c{i}", "side": side, "width": photo.shape[1], "height": photo.shape[0], "regions": regions})
        rows.append({"coin_id": f"c{i}", "obverse": f"images/c{i}_obverse.png", "reverse": f"images/c{i}_reverse.png",
                     "emperor": emperor, "ric": ric, "obverse_description": "Radiate bust", "reverse_description": "Shield"})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "landmarks.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


@pytest.fixture(scope="module")
def eval_run(grad_bundle, synth_dir, tmp_path_factory):
    """One `denarius landmarks-eval` run (windows 21 and 11, batch 2, Captum peers when
    captum is installed); its output folder."""
    import importlib.util

    from denarius.apps.cli import main

    out = tmp_path_factory.mktemp("eval")
    peers = ["--peers", "captum", "--ig-steps", "4"] if importlib.util.find_spec("captum") else []
    argv = ["landmarks-eval", "--bundle", str(grad_bundle), str(synth_dir), "--out", str(out), "--windows", "21", "11", "--batch", "2"]
    assert main([*argv, *peers, "--resamples", "200"]) == 0
    return out
