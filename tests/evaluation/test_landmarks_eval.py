"""`denarius landmarks-eval` end to end on the tiny bundle and a hand-made synthetic set."""

from __future__ import annotations

import json

import cv2
import pytest

from denarius.apps.cli import main
from denarius.evaluation.path_scores import PATH_CHECKPOINTS

FAIR = ("pointing_game_torchray", "pointing_game_tie_robust", "pointing_game_difficult", "sufficiency_auc", "deletion_auc", "energy")


def test_landmarks_eval_scores(eval_run):
    out = eval_run
    scores = json.loads((out / "scores.json").read_text())
    assert scores["window"] == 21 and scores["images"] == 6
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
    figure = cv2.imread(str(out / "figure.png"))
    assert figure is not None and figure.shape[0] >= 6 * 160  # up to 4 coins per side: all 3 of each, 160-px tiles
    assert scores["guidebooks"] and all(cv2.imread(p) is not None for p in scores["guidebooks"])
    # Ground-truth parts: every image has a shield and a legend; each method's maximum lies
    # in some part or in none, on every image.
    reverse = scores["parts"]["reverse"]
    assert reverse["shield"]["images"] == reverse["legend"]["images"] == 3
    for part in ("shield", "legend"):
        assert 0 <= reverse[part]["p_removed"] <= 1 and 0 < reverse[part]["area"] < 1
    for method in ("optimized", "occlusion", "saliency"):
        for parts in scores["parts"].values():
            shares = [v["maximum_inside"][method] for v in parts.values()]
            assert all(0 <= x <= 1 for x in shares) and sum(shares) >= 1 - 1e-9  # parts may overlap
    assert "| shield | 3 |" in (out / "scores.md").read_text()
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


def _inside(value, interval):
    return interval is not None and interval[0] - 1e-12 <= value <= interval[1] + 1e-12


def test_landmarks_eval_fair_figures_baselines_and_peers(eval_run):
    scores = json.loads((eval_run / "scores.json").read_text())
    assert scores["bootstrap"] == {"resamples": 200, "seed": 0, "level": 0.95, "resampled": "images"}
    rows = dict(scores["methods"])
    if scores["peers"]:
        assert scores["peers"]["library"].startswith("captum ")
        assert set(scores["peers"]["methods"]) == {"captum_occlusion", "captum_saliency", "captum_integrated_gradients", "captum_gradcam"}
        rows.update(scores["peers"]["methods"])
        assert scores["peers"]["methods"]["captum_integrated_gradients"]["forward_equivalents"] == 12  # 4 steps x (forward + backward)
    for name, row in rows.items():
        for figure in FAIR:
            assert 0 <= row[figure] <= 1 and _inside(row[figure], row["intervals"][figure]), (name, figure)
        assert list(row["sufficiency"]) == ["0.05", "0.10", "0.20", "0.40"]
        for q, value in row["sufficiency"].items():
            assert _inside(value, row["intervals"]["sufficiency"][q]), (name, q)
        # the coin whose shield lies right of the centre: the centre point misses it on both sides
        assert row["difficult_images"] == 2 and row["images_with_ground_truth"] == 6
    for scope in ("all", "obverse", "reverse"):
        centre, random = scores["baselines"][scope]["centre"], scores["baselines"][scope]["random"]
        assert centre["pointing_game_difficult"] == 0.0  # by definition of the subset
        assert 0 < centre["pointing_game_torchray"] < 1 and 0 < random["pointing_game_torchray"] < 1
        assert _inside(random["pointing_game_torchray"], random["intervals"]["pointing_game_torchray"])
    for curve in scores["path"].values():  # the path and the parts tables carry intervals too
        assert len(curve["intervals"]) == len(curve["pointing_game"])
        assert all(_inside(v, ci) for v, ci in zip(curve["pointing_game"], curve["intervals"], strict=True))
    shield = scores["parts"]["reverse"]["shield"]
    assert _inside(shield["p_removed"], shield["intervals"]["p_removed"])
    assert all(_inside(shield["maximum_inside"][m], shield["intervals"]["maximum_inside"][m]) for m in scores["methods"])
    text = (eval_run / "scores.md").read_text()
    assert "| all | centre point (baseline) |" in text and "| reverse | random point (baseline) |" in text
    assert "Sufficiency: p(c) with only the top q" in text and " [" in text  # figures with intervals


def test_landmarks_eval_bad_input(grad_bundle, synth_dir, tmp_path, capsys):
    argv = ["landmarks-eval", "--bundle", str(grad_bundle), str(synth_dir), "--out", str(tmp_path)]
    assert main([*argv, "--methods", "optimized", "lime"]) == 2
    assert "unknown landmark methods ['lime']; valid methods: optimized," in capsys.readouterr().err
    assert main([*argv, "--resamples", "0"]) == 2
    assert "resamples and ig_steps must be >= 1" in capsys.readouterr().err
    # a missing input is a failed run (1), not a usage error (2)
    assert main(["landmarks-eval", "--bundle", str(grad_bundle), str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 1
    assert "manifest.csv not found" in capsys.readouterr().err


def test_a_registered_variant_is_scored_like_the_others(grad_bundle, synth_dir, tmp_path, monkeypatch):
    """The extension point of denarius.evaluation.methods: a variant registered by name is
    computed, scored at every figure and saved, with no other change."""
    from dataclasses import replace

    import numpy as np

    from denarius.engine.bundle import load_bundle
    from denarius.evaluation.eval import EvalConfig, evaluate
    from denarius.evaluation.methods import EVAL_METHODS, EvalMethod

    monkeypatch.setitem(EVAL_METHODS, "occlusion_black", EvalMethod(lambda base: replace(base, method="occlusion", reference="black"),
                                                                    "occlusion with a black occluder"))
    config = EvalConfig(methods=("occlusion", "occlusion_black"), windows=(21,), sides=("reverse",), limit=2,
                        path_checkpoints=(), guidebooks=0, resamples=50, figure_rows=1)
    scores = evaluate(load_bundle(grad_bundle), synth_dir, tmp_path, config=config, progress=False)
    assert set(scores["methods"]) == {"occlusion", "occlusion_black"}
    for row in scores["methods"].values():
        assert set(row) >= set(FAIR) and row["images"] == 2
    with np.load(tmp_path / "heatmaps_reverse.npz") as data:
        assert list(data["methods"]) == ["occlusion@21", "occlusion_black@21"]
        assert not np.allclose(data["heatmaps"][0], data["heatmaps"][1])  # another reference, another map
    assert "| reverse | occlusion_black |" in (tmp_path / "scores.md").read_text()


def test_peers_without_captum_say_how_to_install_it(grad_bundle, synth_dir, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "captum", None)  # as on a host without the train extra
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    argv = ["landmarks-eval", "--bundle", str(grad_bundle), str(synth_dir), "--out", str(tmp_path), "--peers", "captum", "--limit", "1"]
    assert main(argv) == 2
    assert "--peers captum needs torch and captum: pip install 'denarius[train]'" in capsys.readouterr().err


def test_images_shared_with_a_training_set_are_not_scored(grad_bundle, synth_dir, tmp_path, capsys):
    """--exclude-shared-with: an image byte-identical to one of a training manifest's is dropped
    (sha256), counted in scores.json and named in scores.md; the others are scored."""
    import shutil

    train = tmp_path / "train"
    (train / "images").mkdir(parents=True)
    shutil.copy(synth_dir / "images" / "c0_reverse.png", train / "images" / "a.png")  # the same bytes as c0's reverse
    shutil.copy(synth_dir / "images" / "c1_obverse.png", train / "images" / "b.png")
    cv2.imwrite(str(train / "images" / "b.png"), cv2.imread(str(train / "images" / "b.png"))[::-1])  # other bytes
    (train / "manifest.csv").write_text(
        "coin_id,obverse,reverse,emperor,ric,obverse_description,reverse_description\n"
        "t0,images/b.png,images/a.png,Probus,RIC V Probus 10,,\n")
    out = tmp_path / "out"
    args = ["landmarks-eval", "--bundle", str(grad_bundle), str(synth_dir), "--out", str(out), "--methods", "occlusion",
            "--windows", "21", "--sides", "reverse", "--guidebooks", "0", "--resamples", "20", "--no-heatmaps",
            "--exclude-shared-with", str(train / "manifest.csv")]
    assert main(args) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["images"] == 2  # c1 and c2 of the three reverses
    # c0's obverse has the same pixels as its reverse in this hand-made set, so both go
    assert scores["held_out"] == {"checked_against": [str(train / "manifest.csv")], "images_shared_dropped": 2}
    assert "2 images byte-identical (sha256)" in (out / "scores.md").read_text()

    (train / "manifest.csv").write_text("coin_id,obverse\n")
    capsys.readouterr()
    assert main(args) == 1  # a broken training manifest fails the run and is named
    assert "manifest.csv" in capsys.readouterr().err
