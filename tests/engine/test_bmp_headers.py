"""BMP headers: OS/2 1.x (16-bit sizes) and Windows info headers (32-bit signed, top-down rows)
are read right and decode to the right pixels; the variants OpenCV cannot read are refused.

Every file is built byte by byte here, so the bytes are exactly the variant named.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from denarius.engine.errors import InputError
from denarius.engine.imageio import decode_image, read_header
from denarius.engine.preprocess import PreprocessSpec, preprocess


def _rows(pixels: np.ndarray, *, top_down: bool) -> bytes:
    """(H, W, C) uint8 samples as BMP rows (padded to 4 bytes), bottom-up unless ``top_down``."""
    height, width, channels = pixels.shape
    pad = b"\0" * ((-width * channels) % 4)
    order = range(height) if top_down else range(height - 1, -1, -1)
    return b"".join(pixels[y].tobytes() + pad for y in order)


def _file(dib: bytes, palette: bytes, rows: bytes) -> bytes:
    offset = 14 + len(dib) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + dib + palette + rows


def os2_bmp(rgb: np.ndarray) -> bytes:
    """OS/2 1.x BMP: 12-byte BITMAPCOREHEADER (WORD width, height, planes, bit count), 24 bits."""
    height, width = rgb.shape[:2]
    return _file(struct.pack("<IHHHH", 12, width, height, 1, 24), b"", _rows(rgb[:, :, ::-1], top_down=False))


def os2_palette_bmp(indices: np.ndarray, palette_rgb: np.ndarray) -> bytes:
    """OS/2 1.x 8-bit BMP: a 256-entry palette of 3-byte (B, G, R) triples."""
    height, width = indices.shape
    palette = palette_rgb[:, ::-1].astype(np.uint8).tobytes()
    return _file(struct.pack("<IHHHH", 12, width, height, 1, 8), palette, _rows(indices[:, :, None], top_down=False))


def info_bmp(rgb: np.ndarray, *, top_down: bool = False, size: int = 40, bits: int = 24, compression: int = 0,
             width: int | None = None) -> bytes:
    """Windows BMP with a ``size``-byte info header (LONG width, height; negative height = top-down)."""
    height, real_width = rgb.shape[:2]
    header = struct.pack("<IiiHHIIiiII", size, real_width if width is None else width, -height if top_down else height,
                         1, bits, compression, 0, 2835, 2835, 0, 0)
    header += b"\0" * (size - len(header))
    return _file(header, b"", _rows(rgb[:, :, ::-1], top_down=top_down))


@pytest.fixture
def picture() -> np.ndarray:
    """A 64 x 48 (H x W) RGB image, different in every row and column (orientation shows)."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)


def test_os2_bmp_of_the_sweep_reads_64_x_64_not_4194368_x_1572865():
    data = os2_bmp(np.zeros((64, 64, 3), np.uint8))
    assert read_header(data)[:3] == ("BMP", 64, 64)


def test_os2_bmp_decodes_to_its_pixels(picture):
    header = read_header(os2_bmp(picture))
    assert (header.width, header.height, header.channels) == (48, 64, 3)
    assert np.array_equal(decode_image(os2_bmp(picture)), picture)


def test_os2_palette_bmp_decodes_through_its_palette(picture):
    indices = picture[:, :, 0]
    palette = np.stack([np.arange(256), (np.arange(256) * 7) % 256, 255 - np.arange(256)], axis=1).astype(np.uint8)
    assert np.array_equal(decode_image(os2_palette_bmp(indices, palette)), palette[indices])


@pytest.mark.parametrize("size", [40, 52, 56, 108, 124])
@pytest.mark.parametrize("top_down", [False, True])
def test_windows_info_headers_bottom_up_and_top_down(picture, size, top_down):
    data = info_bmp(picture, top_down=top_down, size=size)
    assert read_header(data)[:3] == ("BMP", 48, 64)  # a negative height is a top-down image, not a size
    assert np.array_equal(decode_image(data), picture)


def test_an_os2_bmp_goes_through_the_pipeline_like_its_png(picture):
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    assert ok
    spec = PreprocessSpec.for_input_size(64, remove_background=False)
    assert np.array_equal(preprocess(os2_bmp(picture), spec), preprocess(png.tobytes(), spec))


@pytest.mark.parametrize(("data", "words"), [
    (_file(struct.pack("<IiiHH", 64, 48, 64, 1, 24) + b"\0" * 48, b"", b"\0" * 9216), ["OS/2 2.x", "64-byte"]),
    (_file(struct.pack("<IiiHH", 16, 48, 64, 1, 24) + b"\0" * 4, b"", b"\0" * 9216), ["OS/2 2.x", "16-byte"]),
    (_file(struct.pack("<IiiHH", 77, 48, 64, 1, 24) + b"\0" * 61, b"", b"\0" * 9216), ["unknown 77-byte header"]),
    (None, ["compression 4"]),  # a JPEG inside a BMP
    (None, ["negative width"]),
    (None, ["2 bits per pixel"]),
    (_file(struct.pack("<IHHHH", 12, 48, 64, 1, 32), b"", b"\0" * 12288), ["32 bits per pixel", "OS/2"]),
    (b"BM" + b"\0" * 10, ["truncated BMP header"]),
    (b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<I", 40) + b"\0" * 6, ["truncated BMP header"]),
])
def test_unsupported_variants_are_refused_by_name(picture, data, words):
    if data is None:
        data = {"compression 4": info_bmp(picture, compression=4), "negative width": info_bmp(picture, width=-48),
                "2 bits per pixel": info_bmp(picture, bits=2)}[words[0]]
    with pytest.raises(InputError) as caught:
        decode_image(data)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))
