"""The guidebook's averaging (engine/landmarks/guidebook.py) and its place in the bundle format
(engine/bundle.py: set_bundle_guidebook, the manifest's guidebook.index)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from denarius.engine.bundle import load_bundle, set_bundle_guidebook
from denarius.engine.errors import BundleError, ConfigError, InputError
from denarius.engine.landmarks.guidebook import BundleGuidebook, guidebook_file_name, guidebook_from_maps
from denarius.engine.landmarks.result import LandmarkMap


def _map(heatmap: np.ndarray) -> LandmarkMap:
    size = heatmap.shape[0]
    return LandmarkMap(method="optimized", target=0, label="RIC V Probus 10", mask=np.zeros(1, np.float32),
                       heatmap=heatmap.astype(np.float32), image=np.zeros((size, size, 3), np.uint8), p_full=0.5)


def test_the_mean_map_and_the_representative_coin():
    hot = np.zeros((8, 8))
    hot[2:4, 2:4] = 1.0  # where most coins of the class have their landmark
    elsewhere = np.zeros((8, 8))
    elsewhere[6, 6] = 1.0
    maps = [_map(hot * 0.5), _map(elsewhere), _map(hot + 0.1 * elsewhere)]
    book = guidebook_from_maps(maps, label="RIC V Probus 10")
    mean = np.mean([m.heatmap for m in maps], axis=0)
    expected = (mean - mean.min()) / (mean.max() - mean.min())
    np.testing.assert_allclose(book.heatmap, expected, atol=1e-6)
    assert book.heatmap.dtype == np.float32 and book.heatmap.shape == (8, 8)
    assert book.representative == 2  # the map closest to the mean, not the outlier
    picture = book.on_coin(np.full((64, 64, 3), 128, np.uint8), resize=8)
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8 and (picture != 128).any()


def test_maps_that_cannot_be_averaged_are_refused():
    with pytest.raises(InputError, match="no landmark maps"):
        guidebook_from_maps([], label="x")
    with pytest.raises(InputError, match="different sizes"):
        guidebook_from_maps([_map(np.zeros((8, 8))), _map(np.zeros((4, 4)))], label="x")


def test_file_names_are_readable_and_unique():
    a, b = guidebook_file_name("ric", "RIC V Probus 10"), guidebook_file_name("ric", "RIC V Probus-10")
    assert a.startswith("guidebook/ric/RIC_V_Probus_10-") and a.endswith(".png") and a != b
    assert guidebook_file_name("emperor", "Probus") != guidebook_file_name("ric", "Probus")
    assert guidebook_file_name("ric", "../../etc").startswith("guidebook/ric/etc-")  # no path leaves the folder


def test_set_bundle_guidebook_lists_only_files_under_the_folder(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    assert load_bundle(bundle).guidebook is None and BundleGuidebook.of(load_bundle(bundle)) is None
    (bundle / "guidebook").mkdir()
    (bundle / "guidebook" / "index.json").write_text(json.dumps({"format": 1, "entries": []}))
    (bundle / "stray.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="must lie under 'guidebook/'"):
        set_bundle_guidebook(bundle, index="guidebook/index.json", files=["guidebook/index.json", "stray.png"])
    set_bundle_guidebook(bundle, index="guidebook/index.json", files=["guidebook/index.json"])
    loaded = load_bundle(bundle)
    assert loaded.guidebook == "guidebook/index.json" and "stray.png" not in loaded.files
    assert BundleGuidebook.of(loaded).entries == []
    # A manifest naming an index it does not hash is refused.
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["guidebook/index.json"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"guidebook\.index 'guidebook/index\.json' is not a file with a sha256 entry"):
        load_bundle(bundle)
