"""Write preprocess_reference.npz: photos and the network inputs the pipeline made of them.

The reference is the pipeline as it was before the preprocessing speed-up of issue 17
(first made at commit 9f39452); that pipeline lives on, bit for bit, as
``PreprocessSpec(pipeline_version=1)``, which this script uses, so rerunning it reproduces
the archive. tests/engine/test_preprocess_reference.py checks that version 1 still makes
exactly these tensors and that version 2 stays within its stated tolerance of them.

The archive holds the encoded photos themselves (synthetic coins of several sizes and
backgrounds, and a crop of ``skimage.data.coins()``), so a later change of the generator does
not move the reference; the two real fixture photos live in ../shared/fixtures/real and
their reference crops are stored under their names.

    python tests/engine/data/make_preprocess_reference.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.manifest import read_manifest
from denarius.engine.preprocess import PreprocessSpec, canonical_image, crop_image
from denarius.training.synth import generate

HERE = Path(__file__).parent
REAL = HERE.parents[2].parent / "shared" / "fixtures" / "real"
SPECS = {"112": PreprocessSpec.for_input_size(112, pipeline_version=1),
         "224": PreprocessSpec.for_input_size(224, pipeline_version=1)}


def photos() -> dict[str, bytes]:
    """name -> encoded photo: generated coins at 320, 500 and 900 px, PNG and JPEG, and real photos."""
    found: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in (320, 500, 900):
            folder = Path(scratch) / str(size)
            generate(folder, preset="tiny", seed=11, force=True, progress=False, workers=1, n_coins=48,
                     min_size=size, max_size=size)
            for record in read_manifest(folder / "manifest.csv")[:: 17][:1]:
                for side in ("obverse", "reverse"):
                    found[f"synth{size}_{record.coin_id}_{side}.jpg"] = getattr(record, side).read_bytes()
    rgb = cv2.imdecode(np.frombuffer(found[next(iter(found))], np.uint8), cv2.IMREAD_COLOR)
    found["synth_png.png"] = cv2.imencode(".png", rgb)[1].tobytes()
    from skimage.data import coins

    plate = coins()[10:130, 180:300]  # one coin of the Pompeii plate, greyscale
    found["skimage_coin.png"] = cv2.imencode(".png", plate)[1].tobytes()
    for path in sorted(REAL.glob("*.jpg")):
        found[f"real_{path.name}"] = path.read_bytes()
        if "obverse" in path.name:  # the real photo at a crawler's size (it ships at 124 px)
            large = cv2.resize(cv2.imread(str(path)), (500, 500), interpolation=cv2.INTER_CUBIC)
            found[f"real500_{path.name}"] = cv2.imencode(".jpg", large, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return found


def main() -> int:
    arrays: dict[str, np.ndarray] = {}
    for name, data in photos().items():
        if not name.startswith("real_"):  # the 124-px originals are read from ../shared
            arrays[f"photo/{name}"] = np.frombuffer(data, np.uint8)
        for key, spec in SPECS.items():
            if key == "224" and not ("500" in name or name.startswith("real")):
                continue  # the 224-px crops of one size and the real photos keep the archive small
            arrays[f"crop{key}/{name}"] = np.ascontiguousarray(crop_image(canonical_image(data, spec), spec))
    np.savez_compressed(HERE / "preprocess_reference.npz", **arrays)
    print(f"{len(arrays)} arrays -> {HERE / 'preprocess_reference.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
