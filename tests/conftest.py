"""Shared fixtures: real files on disk, real models, real onnxruntime sessions.

``tiny_bundle`` is a real Denarius bundle made from tiny AlexNets (width 0.125, 64 px
input). Tests that need a trained model use ``trained_bundle`` (built by the real
synth -> train -> export pipeline once those land).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "real"

TINY_EMPERORS = ("Aurelianus", "Probus", "Tacitus")
TINY_RICS = {
    "RIC V Aurelianus 1": "Aurelianus",
    "RIC V Aurelianus 2": "Aurelianus",
    "RIC V Probus 10": "Probus",
    "RIC V Probus 11": "Probus",
    "RIC V Probus 12": "Probus",
    "RIC V Tacitus 30": "Tacitus",
}


def real_photo(name: str) -> Path:
    """Path of a real fixture photograph; skips the test when ../shared is absent."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"real fixture photo {path} not available (../shared is absent)")
    return path


@pytest.fixture(scope="session")
def fixture_photos() -> dict[str, Path]:
    return {side: real_photo(f"maximianus_{side}.jpg") for side in ("obverse", "reverse")}


def _export_classifier(model, path: Path, input_size: int) -> None:
    import torch

    example = torch.zeros(2, 3, input_size, input_size)
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, opset_version=17,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
    )


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real bundle of random-init tiny AlexNets: fp32 ONNX + gradient graphs."""
    torch = pytest.importorskip("torch")
    from denarius.engine.bundle import ModelInfo, write_bundle_manifest
    from denarius.engine.hierarchy import Hierarchy
    from denarius.engine.preprocess import PreprocessSpec
    from denarius.training.model import ModelConfig, build_model

    root = tmp_path_factory.mktemp("tiny_bundle")
    spec = PreprocessSpec.for_input_size(64)
    hierarchy = Hierarchy.from_mapping(TINY_RICS)
    torch.manual_seed(0)
    models = {}
    for name, side, classes in (("emperor", "obverse", hierarchy.emperors), ("ric", "reverse", hierarchy.rics)):
        model = build_model(ModelConfig(num_classes=len(classes), width=0.125, input_size=spec.crop)).eval()
        files = {"fp32": f"{name}.onnx"}
        _export_classifier(model, root / files["fp32"], spec.crop)
        try:
            from denarius.export.gradgraph import write_gradient_graph
        except ImportError:
            pass
        else:
            files["grad"] = f"{name}.grad.onnx"
            write_gradient_graph(root / files["fp32"], root / files["grad"])
        models[name] = ModelInfo(name=name, side=side, classes=tuple(classes), input_size=spec.crop, files=files)
    descriptions = {ric: {"obverse": f"Radiate bust of {emp}", "reverse": f"Type {ric}"} for ric, emp in TINY_RICS.items()}
    write_bundle_manifest(root, version="tiny-test", preprocess=spec, hierarchy=hierarchy, models=models, descriptions=descriptions)
    return root


@pytest.fixture(scope="session")
def grad_bundle(tiny_bundle) -> Path:
    """The tiny bundle, skipping the test when it has no gradient graphs."""
    from denarius.engine.bundle import load_bundle

    if not load_bundle(tiny_bundle).has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph (denarius.export.gradgraph missing)")
    return tiny_bundle


def _symbol_coin(seed: int, size: tuple[int, int] = (180, 200)) -> tuple[np.ndarray, list]:
    """A coin on a light background with a bright 'symbol' square.

    Returns:
        (H, W, 3) uint8 RGB photo and its regions in ``denarius synth``'s landmarks.jsonl
        format (a discriminative "shield" square, moved 10 px right per seed, and a
        non-discriminative "legend" triangle).
    """
    import cv2

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


@pytest.fixture(scope="session")
def symbol_coin():
    """``symbol_coin(seed) -> (photo, regions)``: a drawn coin with one known landmark."""
    return _symbol_coin


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> Path:
    """The synthetic `tiny` preset (4 emperors, 8 RIC types, 64 coins, seed 0), generated once
    per session; the manifest's path."""
    from denarius.training.synth import generate

    root = tmp_path_factory.getbasetemp() / "denarius_synth_tiny_seed0"
    generate(root, preset="tiny", seed=0, progress=False)
    return root / "manifest.csv"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def small_disk(tmp_path):
    """``make(kib, leave=None) -> folder``: a real tmpfs of ``kib`` KiB mounted in ``tmp_path``
    for full-disk tests (writes there fail with ENOSPC, as on a full disk); with ``leave``
    it is filled up to ``leave`` free bytes (``make.fill(folder, leave)`` does it later, to a
    disk already in use). Skips where mounting is not allowed (not root, no tmpfs); unmounted
    afterwards."""
    mounts: list[Path] = []

    def make(kib: int = 64, *, leave: int | None = None) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            pytest.skip(f"cannot mount a {kib} KiB tmpfs here ({done.stderr.strip() or done.returncode}): full-disk tests need root")
        mounts.append(folder)
        if leave is not None:
            _fill(folder / ".filler", leave=leave)
        return folder

    make.fill = lambda folder, leave: _fill(folder / ".filler", leave=leave)  # type: ignore[attr-defined]
    yield make
    for folder in reversed(mounts):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def _fill(filler: Path, *, leave: int) -> None:
    """Write ``filler`` until its file system is full, then give back ``leave`` bytes."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
