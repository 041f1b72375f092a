"""An independent scorer reproduces landmarks-eval's pointing-game figures from the saved
heatmaps (heatmaps_<side>.npz), with its own implementation of TorchRay's rule:
``torch.argmax`` of the flattened map, the acceptance disc ``(i - v)^2 + (j - u)^2 < tol^2``,
the mean over classes of per-class accuracies, the centre point ``(W / 2, H / 2)``."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _argmax_point(saliency: np.ndarray) -> tuple[int, int]:
    flat = int(saliency.reshape(-1).argmax())
    width = saliency.shape[1]
    return flat % width, flat // width  # (u, v), as TorchRay's _saliency_to_point


def _evaluate(mask: np.ndarray, point, tolerance: float) -> bool:
    """TorchRay's PointingGame.evaluate."""
    v, u = np.meshgrid((np.arange(mask.shape[0], dtype=np.float32) - point[1]) ** 2,
                       (np.arange(mask.shape[1], dtype=np.float32) - point[0]) ** 2, indexing="ij")
    accept = (v + u) < tolerance**2
    return bool((mask & accept).any())


def _accuracy(hits, labels) -> float:
    classes = sorted(set(labels))
    per_class = [np.mean([h for h, label in zip(hits, labels, strict=True) if label == c]) for c in classes]
    return float(np.mean(per_class))


def _score_side(data) -> dict:
    tol = float(data["tolerance_px"])
    masks, truth, labels = data["ground_truth"], data["has_ground_truth"], list(data["labels"])
    rows = [i for i in range(len(labels)) if truth[i]]
    size = masks.shape[1:]
    centre = {i: _evaluate(masks[i], (size[1] / 2, size[0] / 2), tol) for i in rows}
    difficult = [i for i in rows if not centre[i]]
    out = {"centre": _accuracy([centre[i] for i in rows], [labels[i] for i in rows])}
    random = []
    for i in rows:  # every coin pixel as the point, by brute force
        ys, xs = np.nonzero(data["coin"][i])
        random.append(np.mean([_evaluate(masks[i], (x, y), tol) for y, x in zip(ys, xs, strict=True)]))
    out["random"] = _accuracy(random, [labels[i] for i in rows])
    for m, method in enumerate(data["methods"]):
        maps = data["heatmaps"][m]
        hits = {i: _evaluate(masks[i], _argmax_point(maps[i]), tol) for i in rows}
        ties = {}
        for i in rows:
            top = maps[i].max()
            ys, xs = np.nonzero(maps[i] >= top - 1e-6 * max(top - maps[i].min(), 1e-30))
            ties[i] = np.mean([_evaluate(masks[i], (x, y), tol) for y, x in zip(ys, xs, strict=True)])
        qs = data["sufficiency_qs"]
        curves = data["sufficiency"][m]
        auc = [np.trapezoid(c, qs) / (qs[-1] - qs[0]) for c in curves]
        out[str(method)] = {
            "pointing_game_torchray": _accuracy([hits[i] for i in rows], [labels[i] for i in rows]),
            "pointing_game_tie_robust": _accuracy([ties[i] for i in rows], [labels[i] for i in rows]),
            "pointing_game_difficult": _accuracy([hits[i] for i in difficult], [labels[i] for i in difficult]) if difficult else None,
            "sufficiency_auc": float(np.mean(auc)),
            "deletion_auc": float(np.mean(data["deletion_auc"][m])),
        }
    return out


def test_saved_heatmaps_reproduce_the_figures(eval_run):
    scores = json.loads((eval_run / "scores.json").read_text())
    assert sorted(scores["heatmaps"]) == [str(eval_run / "heatmaps_obverse.npz"), str(eval_run / "heatmaps_reverse.npz")]
    checked = 0
    for side in ("obverse", "reverse"):
        with np.load(eval_run / f"heatmaps_{side}.npz") as data:
            assert data["heatmaps"].shape[1:] == data["ground_truth"].shape == data["coin"].shape
            assert data["crop_matrices"].shape == (len(data["labels"]), 2, 3)
            mine = _score_side(data)
            methods = list(data["methods"])
        base = scores["baselines"][side]
        assert mine["centre"] == pytest.approx(base["centre"]["pointing_game_torchray"], abs=1e-12)
        assert mine["random"] == pytest.approx(base["random"]["pointing_game_torchray"], abs=1e-9)
        for key in methods:
            name, _, window = key.partition("@")
            theirs = scores["by_side"][side][window][name] if window else scores["peers"]["by_side"][side][name]
            for figure, value in mine[key].items():
                assert value == pytest.approx(theirs[figure], abs=1e-9), (side, key, figure)
                checked += 1
    assert checked >= 2 * 6 * 5  # both sides, 3 methods x 2 windows (+ peers), 5 figures
