"""Safe image decoding: header checks before any pixel is decoded.

A crawler sends whatever an auction site serves, so every decode starts by reading the
dimensions from the file header and refusing absurd ones *before* OpenCV allocates the
pixel buffer (a 60-byte PNG can claim 50,000 x 50,000 pixels = 7.5 GB).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from denarius.engine.errors import InputError

__all__ = ["ImageHeader", "read_header", "decode_image", "read_bytes"]

SUPPORTED_FORMATS = "JPEG, PNG, WebP, TIFF or BMP"


class ImageHeader(tuple):
    """(format, width, height) as claimed by the file header."""

    __slots__ = ()

    def __new__(cls, fmt: str, width: int, height: int):
        return super().__new__(cls, (fmt, int(width), int(height)))

    format = property(lambda self: self[0])
    width = property(lambda self: self[1])
    height = property(lambda self: self[2])


def _jpeg_header(data: bytes) -> tuple[ImageHeader, int]:
    """Walk JPEG marker segments up to the first SOS; returns the header and SOS offset."""
    pos, size, header = 2, len(data), None
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            raise InputError("corrupt JPEG: marker segment expected at byte %d" % pos)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise InputError("corrupt JPEG: segment of length %d" % length)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > size:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            header = ImageHeader("JPEG", width, height)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if header is None:
                raise InputError("corrupt JPEG: no frame header before the image data")
            return header, pos
        pos += 2 + length
    raise InputError("truncated JPEG: the file ends before the image data starts")


def _tiff_header(data: bytes) -> ImageHeader:
    endian = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise InputError("truncated TIFF header")
    (ifd,) = struct.unpack(endian + "I", data[4:8])
    if ifd + 2 > len(data):
        raise InputError("truncated TIFF: directory lies past the end of the file")
    (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
    width = height = None
    for i in range(count):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            raise InputError("truncated TIFF directory")
        tag, kind = struct.unpack(endian + "HH", entry[:4])
        value = struct.unpack(endian + ("H" if kind == 3 else "I"), entry[8 : 10 if kind == 3 else 12])[0]
        if tag == 256:
            width = value
        elif tag == 257:
            height = value
    if width is None or height is None:
        raise InputError("TIFF without image width/length tags")
    return ImageHeader("TIFF", width, height)


def _webp_header(data: bytes) -> ImageHeader:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 " and len(data) >= 30:
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
    else:
        raise InputError("corrupt or truncated WebP header")
    return ImageHeader("WebP", width, height)


def read_header(data: bytes) -> ImageHeader:
    """Format and claimed dimensions from the first bytes of an encoded image.

    Raises:
        InputError: empty data, an unsupported format, or a header too short to read.
    """
    if not data:
        raise InputError("empty image data (0 bytes)")
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_header(data)[0]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InputError("truncated PNG header")
        width, height = struct.unpack(">II", data[16:24])
        return ImageHeader("PNG", width, height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_header(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_header(data)
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return ImageHeader("BMP", abs(width), abs(height))
    if data.lstrip()[:1] in (b"<", b"{", b"%") or all(32 <= b < 127 or b in (9, 10, 13) for b in data[:64]):
        raise InputError(f"not an image: the data looks like text; expected {SUPPORTED_FORMATS}")
    raise InputError(f"unsupported or unrecognised image format; expected {SUPPORTED_FORMATS}")


def read_bytes(source: bytes | bytearray | memoryview | str | os.PathLike) -> bytes:
    """Encoded bytes from bytes-like data or a file path."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"image file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"image path is a directory: {path}") from None
    except OSError as error:
        raise InputError(f"cannot read image file {path}: {error.strerror}") from None


def _to_rgb8(pixels: np.ndarray, *, has_alpha_possible: bool) -> np.ndarray:
    """Any decoded layout -> (H, W, 3) uint8 RGB; alpha composited on white."""
    if pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif pixels.dtype in (np.float32, np.float64):
        scale = 255.0 if float(np.nanmax(pixels)) <= 1.0 else 1.0
        pixels = np.clip(np.nan_to_num(pixels) * scale, 0, 255).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise InputError(f"unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    channels = pixels.shape[2]
    if channels == 1:
        return cv2.cvtColor(pixels[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 4 and has_alpha_possible:
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        bgr = pixels[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor((bgr + 0.5).astype(np.uint8), cv2.COLOR_BGR2RGB)
    if channels >= 3:
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, :3]), cv2.COLOR_BGR2RGB)
    raise InputError(f"unsupported channel count {channels}")


def decode_image(
    source: bytes | str | os.PathLike | np.ndarray,
    *,
    max_pixels: int = 40_000_000,
    min_side: int = 16,
    keep_side: int | None = None,
) -> np.ndarray:
    """Decode an image into (H, W, 3) uint8 RGB, honouring EXIF orientation.

    ``keep_side``: a large JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
    scaling, much cheaper than a full decode and a resize) as long as its shorter side
    stays at least ``keep_side`` pixels. None decodes at full size.

    Accepts encoded bytes, a file path, or an already decoded (H, W, 3) uint8 RGB array
    (returned as is after the size checks). Greyscale, RGBA (composited on white) and
    16-bit inputs are converted.

    Raises:
        InputError: empty or unreadable data, unsupported format, a header claiming more
            than ``max_pixels`` pixels (checked before decoding), a side shorter than
            ``min_side`` or zero area, truncated or undecodable data.
    """
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise InputError(f"a decoded image must be (H, W, 3) uint8 RGB, got {source.shape} {source.dtype}")
        _check_size(source.shape[1], source.shape[0], max_pixels=max_pixels, min_side=min_side)
        return source
    data = read_bytes(source)
    header = read_header(data)
    _check_size(header.width, header.height, max_pixels=max_pixels, min_side=min_side)
    if header.format == "JPEG":
        _, sos = _jpeg_header(data)
        if data.rfind(b"\xff\xd9") < sos:
            raise InputError("truncated JPEG: the end-of-image marker is missing")
        # IMREAD_COLOR applies the EXIF orientation; JPEG has no alpha to lose.
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
        if keep_side:
            for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
                if min(header.width, header.height) // factor >= keep_side:
                    flags = reduced
                    break
    else:
        flags = cv2.IMREAD_UNCHANGED
    buffer = np.frombuffer(data, dtype=np.uint8)
    pixels = cv2.imdecode(buffer, flags)
    if pixels is None or pixels.size == 0:
        raise InputError(f"could not decode the {header.format} data (corrupt or truncated file)")
    rgb = _to_rgb8(pixels, has_alpha_possible=header.format != "JPEG")
    _check_size(rgb.shape[1], rgb.shape[0], max_pixels=max_pixels, min_side=min_side)
    return rgb


def _check_size(width: int, height: int, *, max_pixels: int, min_side: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"image has zero area ({width} x {height} pixels)")
    if width * height > max_pixels:
        raise InputError(
            f"image is {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,}; downscale it before sending"
        )
    if min(width, height) < min_side:
        raise InputError(f"image is {width} x {height} pixels; each side must be at least {min_side}")
