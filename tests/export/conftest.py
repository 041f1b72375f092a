"""Fixtures for export tests: a real tiny training run directory and a bundle exported from it.

``tiny_run`` is what ``denarius train`` leaves behind (emperor.pt, ric.pt, run.json per the
contract), made here directly so the export tests do not depend on the trainer's speed:
a manifest of real photographs (scikit-image's Pompeii coin plate, tinted per emperor and
brightened per RIC type so that the classes are learnable), and two width-0.125, 64-px
AlexNets trained for a few dozen full-batch steps on them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

EMPERORS = ("Aurelianus", "Probus", "Tacitus")
# Per-emperor RGB tint of every photograph (obverse and reverse).
TINTS = {"Aurelianus": (1.0, 0.55, 0.45), "Probus": (0.5, 1.0, 0.55), "Tacitus": (0.5, 0.6, 1.0)}
# Two RIC types per emperor, told apart by the reverse photograph's brightness.
RIC_GAIN = (0.55, 1.0)
INPUT_SIZE = 64
WIDTH = 0.125


def _ric_label(emperor: str, k: int) -> str:
    return f"RIC V {emperor} {10 + k}"


def _ric_description(emperor: str, k: int) -> str:
    designs = ("CONCORDIA MILITVM, emperor and Jupiter facing each other", "PAX AVGVSTI, Pax standing left holding branch and sceptre")
    return f"{designs[k]} ({emperor})"


def write_coin_set(root: Path, *, repeats: int = 1) -> Path:
    """Write photographs + manifest.csv of 24 * 3 * repeats coins; returns the manifest path."""
    import cv2

    from denarius.export.onnx_export import coin_plate_crops

    crops = coin_plate_crops()
    if not crops:
        pytest.skip("scikit-image (its coin plate photograph) is needed for the export fixtures")
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    n = 0
    for rep in range(repeats):
        for e, emperor in enumerate(EMPERORS):
            for i, crop in enumerate(crops):
                k = (i + e + rep) % 2
                obverse = np.clip(crop * np.array(TINTS[emperor]), 0, 255).astype(np.uint8)
                reverse_src = crops[(i + 7 + rep) % len(crops)]
                reverse = np.clip(reverse_src * np.array(TINTS[emperor]) * RIC_GAIN[k], 0, 255).astype(np.uint8)
                if rep % 2:
                    obverse, reverse = obverse[:, ::-1], reverse[::-1]
                coin_id = f"c{n:04d}"
                n += 1
                cv2.imwrite(str(images / f"{coin_id}_o.png"), np.ascontiguousarray(obverse[:, :, ::-1]))
                cv2.imwrite(str(images / f"{coin_id}_r.png"), np.ascontiguousarray(reverse[:, :, ::-1]))
                rows.append({
                    "coin_id": coin_id, "obverse": f"images/{coin_id}_o.png", "reverse": f"images/{coin_id}_r.png",
                    "emperor": emperor, "ric": _ric_label(emperor, k),
                    "obverse_description": f"Radiate bust of {emperor} right",
                    "reverse_description": _ric_description(emperor, k),
                })
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _train(images: np.ndarray, targets: np.ndarray, classes: int, *, steps: int, seed: int):
    import torch

    from denarius.training.model import ModelConfig, build_model

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    # Tiny models on a shared 2-core machine: one thread is ~10x faster than two contending.
    torch.set_num_threads(1)
    config = ModelConfig(num_classes=classes, width=WIDTH, input_size=INPUT_SIZE, dropout=0.0)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(targets)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    torch.set_num_threads(threads)
    return model, config, loss.item(), accuracy


def make_run(root: Path, *, steps: int = 40) -> Path:
    """A run directory per the `denarius train` contract, trained on ``write_coin_set``."""
    from denarius.engine.preprocess import PreprocessSpec, preprocess_batch
    from denarius.training.checkpoint import Checkpoint, save_checkpoint
    from denarius.training.data import load_dataset

    manifest = write_coin_set(root / "data")
    dataset = load_dataset(manifest)
    spec = PreprocessSpec.for_input_size(INPUT_SIZE)
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    training = {}
    for task, side, classes, targets in (
        ("emperor", "obverse", dataset.hierarchy.emperors, dataset.emperor_targets()),
        ("ric", "reverse", dataset.hierarchy.rics, dataset.ric_targets()),
    ):
        images = preprocess_batch([getattr(r, side) for r in dataset.records], spec)
        model, config, loss, accuracy = _train(images, targets, len(classes), steps=steps, seed=1)
        save_checkpoint(run_dir / f"{task}.pt", Checkpoint(
            task=task, side=side, model_config=config, classes=tuple(classes), preprocess=spec.to_dict(),
            state_dict=model.state_dict(), epoch=1, history=[{"train_loss": loss, "train_accuracy": accuracy}],
        ))
        training[task] = {"train_loss": loss, "train_accuracy": accuracy}
    run = {
        "hierarchy": dataset.hierarchy.to_dict(),
        "descriptions": dataset.descriptions,
        "merged": dataset.merged,
        "preprocess": spec.to_dict(),
        "manifest": str(manifest.resolve()),
        "metrics": {"emperor_cv_accuracy": 0.91, "ric_cv_accuracy": 0.83},
        "training": training,
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    return make_run(tmp_path_factory.mktemp("export_run"))
