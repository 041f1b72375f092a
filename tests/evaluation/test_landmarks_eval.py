"""`denarius landmarks-eval` end to end on the tiny bundle and a hand-made synthetic set."""

from __future__ import annotations

import json

import cv2
import pytest

from denarius.evaluation.path_scores import PATH_CHECKPOINTS
from denarius.serving.cli import main


def test_landmarks_eval_scores(grad_bundle, synth_dir, tmp_path):
    out = tmp_path / "eval"
    assert main(["landmarks-eval", "--bundle", str(grad_bundle), str(synth_dir), "--out", str(out), "--windows", "21", "11", "--batch", "2"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["window"] == 21 and scores["images"] == 4
    for method in ("optimized", "occlusion", "saliency"):
        s = scores["methods"][method]
        assert set(s) >= {"pointing_game", "energy", "deletion_auc", "seconds_per_image", "forward_equivalents"}
        assert 0 <= s["pointing_game"] <= 1 and 0 <= s["energy"] <= 1 and 0 <= s["deletion_auc"] <= 1
    assert scores["methods"]["saliency"]["forward_equivalents"] == 3  # true class known: one forward + backward
    assert scores["by_window"]["11"]["occlusion"]["forward_equivalents"] == 362  # 19 x 19 windows + 1 at 64 px
    assert "| all | 21 | optimized |" in (out / "scores.md").read_text()
    sides = scores["by_side"]
    assert set(sides) == {"obverse", "reverse"} and "| reverse | 11 | saliency |" in (out / "scores.md").read_text()
    for window in ("21", "11"):
        for method in ("optimized", "occlusion", "saliency"):
            per_side = [sides[side][window][method] for side in ("obverse", "reverse")]
            assert sum(s["images"] for s in per_side) == scores["by_window"][window][method]["images"]
            weighted = sum(s["energy"] * s["images_with_ground_truth"] for s in per_side)
            both = scores["by_window"][window][method]
            assert weighted / both["images_with_ground_truth"] == pytest.approx(both["energy"])
    assert cv2.imread(str(out / "figure.png")) is not None
    assert scores["guidebooks"] and all(cv2.imread(p) is not None for p in scores["guidebooks"])
    # Ground-truth parts: every image has a shield and a legend; each method's maximum lies
    # in some part or in none, on every image.
    reverse = scores["parts"]["reverse"]
    assert reverse["shield"]["images"] == reverse["legend"]["images"] == 2
    for part in ("shield", "legend"):
        assert 0 <= reverse[part]["p_removed"] <= 1 and 0 < reverse[part]["area"] < 1
    for method in ("optimized", "occlusion", "saliency"):
        for side, parts in scores["parts"].items():
            shares = [v["maximum_inside"][method] for v in parts.values()]
            assert all(0 <= x <= 1 for x in shares) and sum(shares) >= 1 - 1e-9  # parts may overlap
    assert "| shield | 2 |" in (out / "scores.md").read_text()
    # The pointing game along the optimiser's path: every checkpoint, both sides, and the
    # last checkpoint (past every row's end) is the optimised score itself.
    for side, curve in scores["path"].items():
        assert curve["iterations"] == list(PATH_CHECKPOINTS)
        assert all(0 <= v <= 1 for v in curve["pointing_game"])
        optimised = scores["by_side"][side]["21"]["optimized"]
        assert curve["images"] == optimised["images_with_ground_truth"]
        assert curve["pointing_game"][-1] == pytest.approx(optimised["pointing_game"])
    assert set(scores["path"]) == {"obverse", "reverse"} and cv2.imread(str(out / "path.png")) is not None
    assert "Pointing game along the optimiser's path" in (out / "scores.md").read_text()
