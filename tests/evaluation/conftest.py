"""Fixtures of the evaluation tests: a hand-made synthetic set with known landmarks."""

from __future__ import annotations

import csv
import json

import cv2
import pytest


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory, symbol_coin):
    """A hand-made synthetic set in `denarius synth`'s format (2 coins)."""
    root = tmp_path_factory.mktemp("synth")
    (root / "images").mkdir()
    rows, lines = [], []
    for i, (emperor, ric) in enumerate([("Probus", "RIC V Probus 10"), ("Tacitus", "RIC V Tacitus 30")]):
        for side in ("obverse", "reverse"):
            photo, regions = symbol_coin(i)
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
