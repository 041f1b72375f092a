"""INT8 calibration plumbing: the calibration/evaluation split, the reader, config validation."""

from __future__ import annotations

import numpy as np
import pytest

from denarius.engine.errors import ConfigError
from denarius.engine.preprocess import PreprocessSpec
from denarius.export.quantize import ImageCalibrationReader, ImageSet, QuantizeConfig, split_calibration


def _images(n: int) -> ImageSet:
    return ImageSet(sources=tuple(f"coin{i}.png" for i in range(n)), labels=np.arange(n, dtype=np.int64) % 3)


@pytest.mark.parametrize("count, cal, ev, want_cal, want_ev", [
    (1000, 300, 200, 300, 200),  # large manifest: the configured sizes
    (24, 300, 200, 16, 8),  # small manifest: a third held out
    (2, 300, 200, 1, 1),
])
def test_split_is_disjoint_and_sized(count, cal, ev, want_cal, want_ev):
    calibration, evaluation = split_calibration(_images(count), calibration_size=cal, evaluation_size=ev, seed=3)
    assert (len(calibration), len(evaluation)) == (want_cal, want_ev)
    assert not set(calibration.sources) & set(evaluation.sources)
    # labels travel with their photographs
    for source, label in zip(evaluation.sources, evaluation.labels, strict=True):
        assert label == int(source[4:-4]) % 3


def test_split_is_deterministic_per_seed():
    a = split_calibration(_images(50), calibration_size=20, evaluation_size=10, seed=1)
    b = split_calibration(_images(50), calibration_size=20, evaluation_size=10, seed=1)
    c = split_calibration(_images(50), calibration_size=20, evaluation_size=10, seed=2)
    assert a[0].sources == b[0].sources and a[0].sources != c[0].sources


def test_split_needs_two_images():
    with pytest.raises(ConfigError, match="at least 2 images"):
        split_calibration(_images(1), calibration_size=10, evaluation_size=10)


@pytest.mark.parametrize("kwargs, message", [
    ({"calibration_size": 0}, "calibration_size"),
    ({"batch_size": -1}, "batch_size"),
    ({"method": "kl"}, "not one of"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        QuantizeConfig(**kwargs)


def test_reader_batches_real_photos_and_skips_unreadable_ones(tmp_path):
    from denarius.export.onnx_export import coin_plate_crops

    crops = coin_plate_crops()
    if not crops:
        pytest.skip("scikit-image is not installed")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    spec = PreprocessSpec.for_input_size(64)
    reader = ImageCalibrationReader([*crops[:5], str(bad)], spec, batch_size=4)
    batches = []
    while (batch := reader.get_next()) is not None:
        batches.append(batch["image"])
    assert [b.shape for b in batches] == [(4, 3, 64, 64), (1, 3, 64, 64)]
    assert all(b.dtype == np.float32 for b in batches)
    assert reader.used == 5
    reader.rewind()
    assert reader.get_next()["image"].shape == (4, 3, 64, 64)
