"""Hostile image files, made on demand (nothing binary is committed).

``seed_files()`` gives the fuzzer's seed corpus: small files that reach every branch of the
header parsers and decoders (truncations, lying headers, pixel bombs, 16-bit, alpha, float
TIFF, progressive JPEG, EXIF rotation). ``big_rgba16_png()`` makes the issue's memory bomb:
a 6,324 x 6,324 RGBA 16-bit PNG, a few hundred KB that inflate to 320 MB of samples.

Run as a script to write the corpus: ``python tests/fuzz/hostile.py OUT_DIR``.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

__all__ = ["seed_files", "big_rgba16_png", "coin_bgr", "png_chunk", "png_claiming", "png_with_long_chunk", "tiff_claiming_tiles"]


def coin_bgr(side: int, *, dtype=np.uint8, channels: int = 3) -> np.ndarray:
    """A textured bronze disc on a light background, (side, side, channels) of ``dtype``."""
    top = np.iinfo(dtype).max if dtype != np.float32 else 1.0
    image = np.full((side, side, channels), 0.95 * top, dtype)
    colour = tuple(float(v) * top for v in (0.25, 0.45, 0.6, 1.0)[:channels])
    cv2.circle(image, (side // 2, side // 2), int(side * 0.4), colour, thickness=-1)
    step = max(2, side // 24)
    for y in range(side // 4, 3 * side // 4, step):  # some relief: lines across the disc
        cv2.line(image, (side // 4, y), (3 * side // 4, y + step // 2), tuple(0.5 * c for c in colour), max(1, step // 4))
    if channels == 4:
        mask = np.zeros((side, side), np.uint8)
        cv2.circle(mask, (side // 2, side // 2), int(side * 0.42), 255, thickness=-1)
        image[..., 3] = (mask.astype(np.float64) / 255.0 * top).astype(dtype)
    return image


def _encode(ext: str, image: np.ndarray, params=()) -> bytes:
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return data.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, *, depth: int = 8, colour: int = 2, idat: bytes = b"\x00" * 64) -> bytes:
    """A well-formed PNG whose IHDR claims width x height (the pixel data does not match)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(idat)) + png_chunk(b"IEND", b"")


def png_with_long_chunk(kind: bytes, length: int) -> bytes:
    """A 20 x 20 PNG whose ``kind`` chunk after IHDR claims ``length`` bytes and holds none: the
    decoder allocated the claim before reading (a fuzz finding: a 45-byte file took 3 GB)."""
    ihdr = struct.pack(">IIBBBBB", 20, 20, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + struct.pack(">I", length) + kind + struct.pack(">I", zlib.crc32(kind))


def tiff_claiming_tiles(width: int, height: int, tile: int, *, samples: int = 3, bits: int = 8) -> bytes:
    """A little-endian uncompressed TIFF of width x height whose tiles claim tile x tile pixels
    (one 64-byte tile of data): the decoder sizes its tile buffer from the claim (a fuzz finding)."""
    entries = [(256, 3, width), (257, 3, height), (258, 3, bits), (259, 3, 1), (262, 3, 2 if samples >= 3 else 1),
               (277, 3, samples), (284, 3, 1), (322, 4, tile), (323, 4, tile), (324, 4, 0), (325, 4, 64)]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(entries)))
    for tag, kind, value in entries:
        value = data_offset if tag == 324 else value
        out += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    return bytes(out + b"\x00" * 4 + bytes(64))


def big_rgba16_png(side: int = 6324) -> bytes:
    """The issue's bomb: side x side RGBA, 16 bits a sample (6324 -> 40.0 Mpx, 320 MB decoded)."""
    return _encode(".png", coin_bgr(side, dtype=np.uint16, channels=4), (cv2.IMWRITE_PNG_COMPRESSION, 9))


def _jpeg_with_exif(image: np.ndarray, orientation: int) -> bytes:
    data = _encode(".jpg", image)
    tiff = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00" * 4
    app1 = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def seed_files() -> dict[str, bytes]:
    """{name: bytes} of small hostile and valid images, each at most a few tens of KB."""
    coin = coin_bgr(96)
    jpeg = _encode(".jpg", coin)
    png = _encode(".png", coin)
    files = {
        "coin.jpg": jpeg,
        "coin_progressive.jpg": _encode(".jpg", coin, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        "coin_exif6.jpg": _jpeg_with_exif(coin, 6),
        "coin_big_reduced.jpg": _encode(".jpg", cv2.resize(coin, (1200, 900)), (cv2.IMWRITE_JPEG_QUALITY, 30)),
        "coin.png": png,
        "coin_rgba16.png": _encode(".png", coin_bgr(64, dtype=np.uint16, channels=4)),
        "coin_grey16.png": _encode(".png", coin_bgr(64, dtype=np.uint16, channels=1)),
        "coin_rgba.png": _encode(".png", coin_bgr(64, channels=4)),
        "coin.webp": _encode(".webp", coin),
        "coin_lossless.webp": _encode(".webp", coin_bgr(64, channels=4), (cv2.IMWRITE_WEBP_QUALITY, 101)),
        "coin.tiff": _encode(".tiff", coin),
        "coin_float.tiff": _encode(".tiff", coin_bgr(48, dtype=np.float32)),
        "coin.bmp": _encode(".bmp", coin_bgr(32)),
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "header_only.png": png[:33],
        "bomb_50k.png": png_claiming(50_000, 50_000),
        "bomb_16bit_rgba.png": png_claiming(6324, 6324, depth=16, colour=6),
        "zero_area.png": png_claiming(0, 10),
        "lying_small.png": png_claiming(20, 20, idat=b"\x00" * 5),
        "text.txt": b"<html><body>not an image</body></html>",
        "empty.bin": b"",
        "jpeg_no_frame.jpg": b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00\xff\xd9",
        "tiff_huge_tiles.tiff": tiff_claiming_tiles(64, 64, 16000),
        "png_huge_iend.png": png_with_long_chunk(b"IEND", 0xBF000000),
    }
    return files


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "fuzz-corpus")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seed_files().items():
        (out / name).write_bytes(data)
    print(f"wrote {len(seed_files())} seed files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
