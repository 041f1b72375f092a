"""`denarius landmarks` and `denarius landmarks-eval` end to end on the tiny bundle."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.landmarks.metrics import deletion_curve, energy, pointing_hit, polygon_mask
from denarius.engine.landmarks.path_scores import PATH_CHECKPOINTS
from denarius.serving.cli import main


@pytest.fixture(scope="module")
def grad_bundle(tiny_bundle):
    if not load_bundle(tiny_bundle).has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph (denarius.export.gradgraph missing)")
    return tiny_bundle


def _photo(seed: int, size=(180, 200)) -> tuple[np.ndarray, list]:
    """A coin on a light background with a bright 'symbol' square; returns photo + regions."""
    rng = np.random.default_rng(seed)
    photo = np.full((*size, 3), 225, np.uint8)
    cx, cy, r = size[1] // 2, size[0] // 2, 70
    cv2.circle(photo, (cx, cy), r, (150, 120, 80), -1)
    noise = rng.integers(-20, 20, photo.shape)
    inside = np.zeros(size, bool)
    cv2.circle(inside.view(np.uint8), (cx, cy), r, 1, -1)
    photo[inside] = np.clip(photo[inside].astype(int) + noise[inside], 0, 255)
    x0, y0 = cx - 25 + 10 * seed, cy - 20
    cv2.rectangle(photo, (x0, y0), (x0 + 22, y0 + 22), (250, 240, 120), -1)
    regions = [
        {"word": "shield", "discriminative": True, "polygon": [[x0, y0], [x0 + 22, y0], [x0 + 22, y0 + 22], [x0, y0 + 22]]},
        {"word": "legend", "discriminative": False, "polygon": [[cx - 60, cy + 40], [cx + 60, cy + 40], [cx, cy + 60]]},
    ]
    return photo, regions


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    """A hand-made synthetic set in `denarius synth`'s format (2 coins)."""
    root = tmp_path_factory.mktemp("synth")
    (root / "images").mkdir()
    rows, lines = [], []
    for i, (emperor, ric) in enumerate([("Probus", "RIC V Probus 10"), ("Tacitus", "RIC V Tacitus 30")]):
        for side in ("obverse", "reverse"):
            photo, regions = _photo(i)
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
def photo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "coin.png"
    cv2.imwrite(str(path), cv2.cvtColor(_photo(0)[0], cv2.COLOR_RGB2BGR))
    return path


def test_landmarks_command_writes_png_and_json(grad_bundle, photo_path, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["landmarks", "--bundle", str(grad_bundle), str(photo_path), "--side", "reverse", "--epsilon", "0.05", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "coin_optimized.json").read_text())
    assert data["method"] == "optimized" and data["side"] == "reverse" and data["epsilon"] == 0.05
    assert data["p_masked"] > data["p_full"] - 0.05
    png = cv2.imread(str(out / "coin_optimized.png"))
    assert png is not None and png.shape[0] >= 64
    assert data["reference"] == "blur" and len(data["persistence"]) == len(data["mask"])
    masked = cv2.imread(str(out / "coin_optimized_masked.png"))  # what the network saw
    assert masked is not None and masked.shape[:2] == tuple(data["size"])
    assert "forward-pass equivalents" in capsys.readouterr().out


def test_landmarks_sweep_strip(grad_bundle, photo_path, tmp_path):
    out = tmp_path / "sweep"
    assert main(["landmarks", "--bundle", str(grad_bundle), str(photo_path), "--side", "obverse", "--sweep", "--out", str(out)]) == 0
    data = json.loads((out / "coin_sweep.json").read_text())
    assert [m["epsilon"] for m in data["maps"]] == [0.1, 0.3, 0.5, 0.7, 1.0]
    strip = cv2.imread(str(out / "coin_sweep.png"))
    assert 2 * strip.shape[0] < strip.shape[1] < 3 * strip.shape[0]  # two rows of six tiles: masked images, heatmaps


@pytest.mark.parametrize("argv,message", [
    (["--epsilon", "1.5"], "epsilon must be in (0, 1]"),
    (["--window", "500"], "larger than the image"),
    (["--target", "RIC X Nobody"], "valid labels"),
    (["--max-iterations", "0"], "max_iterations must be >= 1"),
    (["--method", "occlusion", "--sweep"], "--sweep needs --method optimized"),
])
def test_landmarks_command_bad_input(grad_bundle, photo_path, tmp_path, capsys, argv, message):
    code = main(["landmarks", "--bundle", str(grad_bundle), str(photo_path), "--side", "reverse", "--out", str(tmp_path), *argv])
    assert code == 2
    assert message in capsys.readouterr().err


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


def test_metrics_on_known_maps():
    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], np.float32)
    heat = np.zeros((64, 64), np.float32)
    heat[15, 15] = 1.0
    assert pointing_hit(heat, [square], tolerance_px=0)
    heat = np.zeros((64, 64), np.float32)
    heat[15, 40] = 1.0  # 20 px right of the square
    assert not pointing_hit(heat, [square], tolerance_px=15)
    assert pointing_hit(heat, [square], tolerance_px=21)
    inside = polygon_mask([square], (64, 64))
    assert 100 <= inside.sum() <= 121  # 10 x 10 pixel centres, boundary pixels may be included
    heat = inside.astype(np.float32) + 0.0
    assert energy(heat, inside) == 1.0 and energy(np.zeros_like(heat), inside) == 0.0


def test_part_reliance_removes_each_part_and_finds_the_maximum(grad_bundle):
    from denarius.engine.landmarks import GradientModel
    from denarius.engine.landmarks.metrics import NO_PART, part_reliance, parts_at_maximum
    from denarius.engine.preprocess import normalize

    model = GradientModel.from_bundle(load_bundle(grad_bundle), "ric")
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], np.float32)
    everything = np.array([[0, 0], [64, 0], [64, 64], [0, 64]], np.float32)
    parts = {"square": [square], "everything": [everything]}
    got = part_reliance(model, crop, parts, target=3)
    p = model.probabilities(normalize(np.stack([np.zeros_like(crop)]), model.spec))[0, 3]
    assert got["everything"] == (pytest.approx(p, rel=1e-5), 1.0)  # black reference, all gone
    assert 0 < got["square"][1] < 0.05
    heat = np.zeros((64, 64), np.float32)
    heat[15, 15] = 1.0
    assert sorted(parts_at_maximum(heat, parts)) == ["everything", "square"]
    assert parts_at_maximum(heat, {"square": [square + 30]}) == [NO_PART]


def test_deletion_curve_ends_at_blank_image(grad_bundle):
    from denarius.engine.landmarks import GradientModel
    from denarius.engine.preprocess import normalize

    model = GradientModel.from_bundle(load_bundle(grad_bundle), "ric")
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    heat = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    curve = deletion_curve(model, crop, heat, 2, steps=4)
    p = model.probabilities(normalize(np.stack([crop, np.zeros_like(crop)]), model.spec))[:, 2]
    assert curve.shape == (5,)
    assert curve[0] == pytest.approx(p[0], rel=1e-5) and curve[-1] == pytest.approx(p[1], rel=1e-5)
