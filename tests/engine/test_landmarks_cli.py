"""`denarius landmarks` end to end on the tiny bundle (landmarks-eval: tests/evaluation)."""

from __future__ import annotations

import json

import cv2
import pytest

from denarius.apps.cli import main


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory, symbol_coin):
    path = tmp_path_factory.mktemp("photo") / "coin.png"
    cv2.imwrite(str(path), cv2.cvtColor(symbol_coin(0)[0], cv2.COLOR_RGB2BGR))
    return path


def test_landmarks_command_writes_png_and_json(grad_bundle, photo_path, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["landmarks", "--bundle", str(grad_bundle), str(photo_path), "--side", "reverse", "--epsilon", "0.05",
                 "--backend", "ort-cpu", "--out", str(out)])
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


@pytest.mark.parametrize("argv,message,status", [
    (["--epsilon", "1.5"], "epsilon must be in (0, 1]", 2),
    (["--window", "500"], "larger than the image", 2),
    (["--target", "RIC X Nobody"], "valid labels", 1),  # the bundle does not know it: a failed run
    (["--max-iterations", "0"], "max_iterations must be >= 1", 2),
    (["--method", "occlusion", "--sweep"], "--sweep needs --method optimized", 2),
])
def test_landmarks_command_bad_input(grad_bundle, photo_path, tmp_path, capsys, argv, message, status):
    code = main(["landmarks", "--bundle", str(grad_bundle), str(photo_path), "--side", "reverse", "--out", str(tmp_path), *argv])
    assert code == status
    assert message in capsys.readouterr().err
