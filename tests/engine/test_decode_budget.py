"""The decode memory budget: header estimates, the per-image cap, admission, reduced decodes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from denarius.engine import decode_budget
from denarius.engine.decode_budget import DecodeBudget
from denarius.engine.errors import ConfigError, InputError, Overloaded
from denarius.engine.imageio import decode_image, plan_decode, read_header
from denarius.engine.preprocess import PreprocessSpec, canonical_image, crop_image, normalize, preprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from hostile import coin_bgr

MIB = 1024 * 1024


def encode(ext: str, image: np.ndarray, params=()) -> bytes:
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    return data.tobytes()


@pytest.fixture
def budget():
    """A budget installed for the test only (the previous one is put back)."""
    installed = DecodeBudget(64 * MIB, image_bytes=32 * MIB, wait_s=0.2)
    previous = decode_budget.install(installed)
    yield installed
    decode_budget.uninstall(installed, previous)


def test_header_layout_and_plans():
    rgba16 = read_header(encode(".png", coin_bgr(64, dtype=np.uint16, channels=4)))
    assert (rgba16.channels, rgba16.sample_bytes, rgba16.alpha) == (4, 2, True)
    grey16 = plan_decode(read_header(encode(".png", coin_bgr(64, dtype=np.uint16, channels=1))))
    assert grey16.flags & cv2.IMREAD_COLOR and grey16.decoded_bytes == 64 * 64 * 3  # straight to 8-bit BGR
    progressive = read_header(encode(".jpg", coin_bgr(64), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)))
    assert progressive.internal_bytes == 2 * 3 * 64 * 64  # libjpeg's coefficient buffer
    assert read_header(encode(".jpg", coin_bgr(64))).internal_bytes == 0
    big = plan_decode(read_header(encode(".jpg", coin_bgr(1600))), keep_side=200)
    assert big.scale == 8 and big.decoded_bytes == 200 * 200 * 3


@pytest.mark.parametrize("name, ext, image, params", [
    ("rgba16.png", ".png", lambda: coin_bgr(2000, dtype=np.uint16, channels=4), ()),
    ("rgb16.png", ".png", lambda: coin_bgr(2000, dtype=np.uint16), ()),
    ("progressive.jpg", ".jpg", lambda: coin_bgr(2000), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    ("float.tiff", ".tiff", lambda: coin_bgr(1500, dtype=np.float32), ()),
])
def test_estimate_bounds_the_measured_peak(tmp_path, name, ext, image, params):
    """Decoded in a fresh process, the peak RSS growth stays within the header's estimate."""
    path = tmp_path / name
    path.write_bytes(encode(ext, image(), params))
    script = (
        "import re, sys; from pathlib import Path\n"
        "from denarius.engine.imageio import decode_image, plan_decode, read_header\n"
        "kib = lambda f: int(re.search(rf'^{f}:\\s+(\\d+) kB', Path('/proc/self/status').read_text(), re.M).group(1))\n"
        f"data = Path({str(path)!r}).read_bytes(); plan = plan_decode(read_header(data))\n"
        "Path('/proc/self/clear_refs').write_text('5'); before = kib('VmRSS')\n"
        "rgb = decode_image(data)\n"
        "print(kib('VmHWM') - before, plan.peak_bytes // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    grown_kib, planned_kib = map(int, out.stdout.split())
    assert grown_kib <= planned_kib + 1024, f"{name}: grew {grown_kib} KiB, planned {planned_kib} KiB"
    assert grown_kib >= 0.4 * planned_kib  # the estimate is not a vacuous over-estimate


def test_per_image_cap_refuses_before_decoding(budget):
    data = encode(".png", coin_bgr(1500, dtype=np.uint16, channels=4))  # about 40 MiB at its peak
    with pytest.raises(InputError) as caught:
        canonical_image(data, PreprocessSpec(), side="reverse")
    message = str(caught.value)
    assert message.startswith("reverse: 1500 x 1500 PNG (4 x 16-bit) needs about")
    assert "per-image cap of 32 MiB" in message
    assert budget.held_bytes == 0 and budget.peak_bytes == 0  # nothing was reserved


def test_result_holds_its_bytes_until_freed(budget):
    rgb = decode_image(encode(".png", coin_bgr(600, channels=4)))
    assert budget.held_bytes == rgb.nbytes  # the decoder's buffers were given back
    assert budget.peak_bytes >= 2 * 600 * 600 * 4
    del rgb
    assert budget.held_bytes == 0


def test_full_budget_answers_overloaded(budget):
    holds = [budget.reserve(30 * MIB, what="a test hold") for _ in range(2)]
    started = time.monotonic()
    with pytest.raises(Overloaded, match="decode memory budget is in use"):
        decode_image(encode(".png", coin_bgr(600)))
    assert 0.15 <= time.monotonic() - started < 2.0  # it queued for wait_s first
    for hold in holds:
        hold.release()
    assert decode_image(encode(".png", coin_bgr(600))).shape == (600, 600, 3)


def test_concurrent_decodes_stay_within_the_budget():
    budget = DecodeBudget(40 * MIB, wait_s=30.0)
    previous = decode_budget.install(budget)
    data = encode(".png", coin_bgr(1000, channels=4))  # about 27 MiB at its peak: one at a time
    errors, shapes = [], []

    def work():
        try:
            shapes.append(canonical_image(data, PreprocessSpec()).shape)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    try:
        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        decode_budget.uninstall(budget, previous)
    assert not errors and shapes == [(256, 256, 3)] * 6
    assert plan_decode(read_header(data)).peak_bytes <= budget.peak_bytes <= budget.total_bytes
    assert budget.held_bytes == 0


def test_budget_settings_are_checked():
    with pytest.raises(ConfigError):
        DecodeBudget(10 * MIB, image_bytes=20 * MIB)
    with pytest.raises(ConfigError):
        DecodeBudget(10 * MIB, wait_s=-1)


@pytest.mark.parametrize("resize", [256, 110])
def test_reduced_jpeg_stays_within_tolerance_of_the_full_decode(resize):
    spec = PreprocessSpec(resize=resize, crop=resize * 7 // 8)
    big = cv2.resize(coin_bgr(800), (3000, 2600), interpolation=cv2.INTER_CUBIC)
    data = encode(".jpg", big, (cv2.IMWRITE_JPEG_QUALITY, 92))
    assert plan_decode(read_header(data), keep_side=2 * resize).scale >= 2
    full = normalize(crop_image(canonical_image(decode_image(data), spec), spec), spec)  # (3, S, S)
    reduced = preprocess(data, spec)
    difference = np.abs(full - reduced)
    assert difference.mean() <= 0.05, difference.mean()
    assert np.percentile(difference, 99) <= 1.0


def test_16bit_png_straight_to_8bit_is_within_one_level():
    deep = np.random.default_rng(0).integers(0, 65536, (64, 80, 3), dtype=np.uint16)
    decoded = decode_image(encode(".png", deep))[..., ::-1]  # RGB -> BGR, as encoded
    rounded = (deep.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert np.abs(decoded.astype(int) - rounded).max() <= 1

