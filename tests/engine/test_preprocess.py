"""The one image pipeline: decoding, bad input, background removal, batch == single."""

from __future__ import annotations

import resource
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from denarius.engine.errors import ConfigError, InputError
from denarius.engine.imageio import decode_image, read_header
from denarius.engine.preprocess import (
    PreprocessSpec,
    canonical_image,
    coin_mask,
    crop_image,
    denormalize,
    normalize,
    preprocess,
    preprocess_batch,
)


def encode(rgb: np.ndarray, ext: str = ".png", params=()) -> bytes:
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb, list(params))
    assert ok
    return data.tobytes()


def synthetic_coin(size: int = 200, background=(250, 250, 250), radius_frac=0.38, center=None) -> np.ndarray:
    """A bronze-ish disc with relief-like texture on a plain background, (size, size, 3) uint8."""
    rng = np.random.default_rng(1)
    image = np.full((size, size, 3), background, np.uint8)
    cx, cy = center or (size // 2, size // 2)
    yy, xx = np.mgrid[:size, :size]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= (radius_frac * size) ** 2
    texture = rng.integers(90, 170, size=(size, size, 1)).astype(np.uint8)
    coin = np.concatenate([texture, (texture * 0.8).astype(np.uint8), (texture * 0.55).astype(np.uint8)], axis=2)
    image[disc] = coin[disc]
    return image


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header whose IHDR claims width x height."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------ decoding


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tiff", ".bmp"])
def test_decodes_every_supported_format_to_rgb8(ext):
    rgb = synthetic_coin(64)
    decoded = decode_image(encode(rgb, ext))
    assert decoded.shape == (64, 64, 3) and decoded.dtype == np.uint8
    tolerance = 40 if ext in (".jpg", ".webp") else 0
    assert np.abs(decoded.astype(int) - rgb.astype(int)).mean() <= tolerance


def test_colour_order_is_rgb():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    assert tuple(decode_image(encode(red))[0, 0]) == (255, 0, 0)


def test_greyscale_rgba_and_16bit_are_converted():
    grey = np.full((32, 32), 100, np.uint8)
    assert tuple(decode_image(encode(grey))[5, 5]) == (100, 100, 100)

    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent -> composited on white
    assert tuple(decode_image(encode(rgba))[5, 5]) == (255, 255, 255)

    deep = np.full((32, 32, 3), 65535 // 2, np.uint16)
    decoded = decode_image(encode(deep))
    assert decoded.dtype == np.uint8 and abs(int(decoded[0, 0, 0]) - 128) <= 1


def test_exif_orientation_is_honoured():
    # A 40x20 JPEG tagged "rotate 90 CW" (orientation 6) must come out 20 wide, 40 high.
    base = encode(np.zeros((20, 40, 3), np.uint8), ".jpg")
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\x00\x00\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    rotated = base[:2] + app1 + base[2:]
    assert decode_image(rotated).shape[:2] == (40, 20)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, this is a text file and not a photograph\n", "text"),
        (b"\x00\x01\x02\x03" * 10, "unsupported"),
    ],
)
def test_garbage_is_refused_with_a_reason(data, message):
    with pytest.raises(InputError, match=message):
        decode_image(data)


def test_truncated_jpeg_is_refused():
    data = encode(synthetic_coin(128), ".jpg")
    with pytest.raises(InputError, match="truncated"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated|corrupt"):
        decode_image(data[:40])


def test_truncated_png_is_refused():
    data = encode(synthetic_coin(128), ".png")
    with pytest.raises(InputError):
        decode_image(data[: len(data) // 2])


def test_malicious_header_is_refused_before_decoding():
    bomb = png_with_claimed_size(50_000, 50_000)
    assert read_header(bomb)[1:] == (50_000, 50_000)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(InputError, match="2,500,000,000 pixels"):
        decode_image(bomb)
    assert time.perf_counter() - started < 1.0
    # No multi-GB allocation happened (ru_maxrss is in KiB on Linux).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000


def test_zero_area_and_tiny_images_are_refused():
    with pytest.raises(InputError, match="zero area"):
        decode_image(png_with_claimed_size(0, 10))
    with pytest.raises(InputError, match="at least 16"):
        decode_image(encode(np.zeros((1, 1, 3), np.uint8)))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(InputError, match=r"not found.*nope.jpg"):
        decode_image(tmp_path / "nope.jpg")


def test_side_is_named_in_errors():
    with pytest.raises(InputError, match=r"^reverse: empty") as info:
        canonical_image(b"", side="reverse")
    assert info.value.side == "reverse"


# ------------------------------------------------------------------ background removal


@pytest.mark.parametrize("background", [(250, 250, 250), (10, 10, 10), (128, 128, 128)])
def test_coin_mask_finds_disc_on_plain_backgrounds(background):
    image = synthetic_coin(200, background=background, center=(90, 110))
    disc = coin_mask(image)
    mask, cx, cy, radius = disc.full_mask(image.shape[:2]), disc.cx, disc.cy, disc.radius
    yy, xx = np.mgrid[:200, :200]
    truth = (xx - 90) ** 2 + (yy - 110) ** 2 <= (0.38 * 200) ** 2
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9
    assert abs(cx - 90) < 4 and abs(cy - 110) < 4 and abs(radius - 76) < 6


def test_coin_mask_on_cloth_texture():
    rng = np.random.default_rng(3)
    cloth = (rng.normal(60, 6, (200, 200, 1)) + np.array([0, 10, 40])).clip(0, 255).astype(np.uint8)
    cloth = cv2.GaussianBlur(cloth, (3, 3), 0)
    coin = synthetic_coin(200)
    yy, xx = np.mgrid[:200, :200]
    truth = (xx - 100) ** 2 + (yy - 100) ** 2 <= 76**2
    image = np.where(truth[..., None], coin, cloth)
    mask = coin_mask(image).full_mask(image.shape[:2])
    assert (mask & truth).sum() / (mask | truth).sum() > 0.85


def test_real_photos_mask_covers_coin_and_excludes_white_corners(fixture_photos):
    for side, path in fixture_photos.items():
        rgb = decode_image(path)
        disc = coin_mask(rgb)
        mask, radius = disc.full_mask(rgb.shape[:2]), disc.radius
        h, w = mask.shape
        corners = [mask[:8, :8], mask[:8, -8:], mask[-8:, :8], mask[-8:, -8:]]
        assert not any(c.any() for c in corners), f"{side}: mask leaks into the white corners"
        assert mask[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20].all(), f"{side}: coin centre not covered"
        assert 0.55 < mask.mean() < 0.85
        assert radius > 0.4 * min(h, w)
        canonical = canonical_image(path, PreprocessSpec(), side=side)
        assert canonical.shape == (256, 256, 3)
        assert canonical[:6, :6].max() == 0  # background blanked to black


def test_background_removal_can_be_switched_off(fixture_photos):
    spec = PreprocessSpec(remove_background=False)
    canonical = canonical_image(fixture_photos["obverse"], spec)
    assert canonical[:4, :4].min() > 200  # white photo background kept


def test_non_square_input_keeps_aspect_and_centres_the_coin():
    wide = np.full((200, 320, 3), 250, np.uint8)  # 200 high, 320 wide, coin off-centre
    wide[:, 100:300] = synthetic_coin(200)
    canonical = canonical_image(wide, PreprocessSpec())
    mask = canonical.max(axis=2) > 0
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 128) < 6 and abs(ys.mean() - 128) < 6
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) < 8  # still round


# ------------------------------------------------------------------ crop, normalise, batch


def test_normalize_matches_imagenet_formula_and_inverts():
    spec = PreprocessSpec()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    tensor = normalize(pixels, spec)
    assert tensor.shape == (2, 3, 8, 8) and tensor.dtype == np.float32
    expected = (pixels[1, 3, 4, 2] / 255.0 - 0.406) / 0.225
    assert tensor[1, 2, 3, 4] == pytest.approx(expected, abs=1e-6)
    assert np.array_equal(denormalize(tensor, spec), pixels)


def test_centre_and_random_crops():
    spec = PreprocessSpec()
    canonical = np.arange(256 * 256 * 3, dtype=np.uint32).reshape(256, 256, 3).astype(np.uint8)
    assert crop_image(canonical, spec).shape == (224, 224, 3)
    assert np.array_equal(crop_image(canonical, spec), canonical[16:240, 16:240])
    a = crop_image(canonical, spec, rng=np.random.default_rng(5))
    b = crop_image(canonical, spec, rng=np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_batch_path_equals_single_path(fixture_photos):
    spec = PreprocessSpec()
    sources = [fixture_photos["obverse"], fixture_photos["reverse"].read_bytes(), encode(synthetic_coin(300), ".jpg")]
    batch = preprocess_batch(sources, spec)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    for i, source in enumerate(sources):
        assert np.array_equal(batch[i], preprocess(source, spec))


def test_batch_names_the_bad_image():
    with pytest.raises(InputError, match="image 1: empty"):
        preprocess_batch([encode(synthetic_coin(64)), b""])


def test_spec_round_trips_and_validates():
    spec = PreprocessSpec.for_input_size(64)
    assert (spec.resize, spec.crop) == (73, 64)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="crop"):
        PreprocessSpec(resize=100, crop=128)
    with pytest.raises(ConfigError, match="unknown preprocessing keys"):
        PreprocessSpec.from_dict({"resize": 256, "colour": "yes"})


def test_skimage_coins_plate_preprocesses():
    skimage_data = pytest.importorskip("skimage.data")
    plate = skimage_data.coins()  # (303, 384) greyscale, many coins on one plate
    out = preprocess(encode(plate), PreprocessSpec())
    assert out.shape == (3, 224, 224) and np.isfinite(out).all()


def test_large_jpeg_decodes_reduced_but_keeps_enough_pixels():
    big = cv2.resize(synthetic_coin(200), (1600, 1200))
    data = encode(big, ".jpg")
    assert decode_image(data).shape[:2] == (1200, 1600)
    assert decode_image(data, keep_side=512).shape[:2] == (600, 800)  # 1/2: 1200/4 = 300 < 512
    assert decode_image(data, keep_side=100).shape[:2] == (150, 200)  # 1/8
    canonical = canonical_image(data, PreprocessSpec())
    assert canonical.shape == (256, 256, 3) and canonical[128, 128].max() > 0
