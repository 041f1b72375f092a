"""Safe image decoding: header checks before any pixel is decoded.

A crawler sends whatever an auction site serves, so every decode starts by reading the
dimensions from the file header and refusing absurd ones *before* OpenCV allocates the
pixel buffer (a 60-byte PNG can claim 50,000 x 50,000 pixels = 7.5 GB).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from denarius.engine import decode_budget
from denarius.engine.errors import InputError

__all__ = ["ImageHeader", "DecodePlan", "read_header", "plan_decode", "decode_image", "read_bytes"]

SUPPORTED_FORMATS = "JPEG, PNG, WebP, TIFF or BMP"


class ImageHeader(tuple):
    """(format, width, height) as claimed by the file header, plus its sample layout.

    Attributes (besides the tuple's three):
        channels: samples per pixel the file stores (alpha included; a palette counts 3).
        sample_bytes: bytes per sample (1 for up to 8 bits, 2 for 16-bit, 4/8 for float TIFF).
        alpha: the file may carry transparency (alpha channel or a tRNS chunk).
        internal_bytes: extra bytes the decoder itself allocates for the whole image (a
            progressive JPEG's coefficients, a lossless WebP's ARGB plane, a TIFF strip).
    """

    channels: int
    sample_bytes: int
    alpha: bool
    internal_bytes: int

    def __new__(cls, fmt: str, width: int, height: int, *, channels: int = 3, sample_bytes: int = 1,
                alpha: bool = False, internal_bytes: int = 0):
        self = super().__new__(cls, (fmt, int(width), int(height)))
        self.channels, self.sample_bytes, self.alpha = int(channels), int(sample_bytes), bool(alpha)
        self.internal_bytes = int(internal_bytes)
        return self

    format = property(lambda self: self[0])
    width = property(lambda self: self[1])
    height = property(lambda self: self[2])

    def describe(self) -> str:
        """E.g. "6324 x 6324 PNG (4 x 16-bit)"."""
        return f"{self.width} x {self.height} {self.format} ({self.channels} x {8 * self.sample_bytes}-bit)"


def _jpeg_header(data: bytes) -> tuple[ImageHeader, int]:
    """Walk JPEG marker segments up to the first SOS; returns the header and SOS offset."""
    pos, size, header = 2, len(data), None
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            raise InputError(f"corrupt JPEG: marker segment expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise InputError(f"corrupt JPEG: segment of length {length}")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > size:
                break
            precision, height, width, components = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            header = (marker, precision, width, height, max(1, components))
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if header is None:
                raise InputError("corrupt JPEG: no frame header before the image data")
            return _jpeg_layout(header, scan_components=data[pos + 4] if pos + 4 < size else 0), pos
        pos += 2 + length
    raise InputError("truncated JPEG: the file ends before the image data starts")


def _jpeg_layout(frame: tuple, *, scan_components: int) -> ImageHeader:
    marker, precision, width, height, components = frame
    # libjpeg keeps every DCT coefficient (int16, full resolution whatever the output scale)
    # when the image has several scans: progressive, or a first scan without all components.
    progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
    multi_scan = progressive or scan_components < components
    blocks = -(-width // 8) * 8 * (-(-height // 8) * 8)
    return ImageHeader("JPEG", width, height, channels=components, sample_bytes=2 if precision > 8 else 1,
                       internal_bytes=2 * components * blocks if multi_scan else 0)


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise InputError("truncated PNG header")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    # A tRNS chunk (before the image data) gives a palette, grey or RGB image an alpha channel.
    # Every chunk up to IEND must fit in the file: OpenCV's PNG reader allocates a chunk's
    # claimed length before reading it, so a 45-byte file whose IEND claimed 3 GB took 3 GB
    # (found by tests/fuzz/fuzz_decode.py; so did tEXt, PLTE, tRNS and fdAT chunks).
    pos, transparent, image_data = 8, False, False
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        if length > len(data) - pos - 12:
            name = kind.decode("ascii", "replace") if kind.isalpha() else kind.hex()
            raise InputError(f"corrupt or truncated PNG: its {name} chunk at byte {pos} claims {length:,} bytes, "
                             f"{max(0, len(data) - pos - 12):,} remain in the file")
        if kind == b"IEND":
            break
        image_data |= kind == b"IDAT"
        transparent |= kind == b"tRNS" and not image_data
        pos += 12 + length
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 4)
    alpha = colour in (4, 6) or transparent
    return ImageHeader("PNG", width, height, channels=channels + (alpha and channels in (1, 3)),
                       sample_bytes=2 if depth == 16 else 1, alpha=alpha)


def _tiff_header(data: bytes) -> ImageHeader:
    endian = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise InputError("truncated TIFF header")
    (ifd,) = struct.unpack(endian + "I", data[4:8])
    if ifd + 2 > len(data):
        raise InputError("truncated TIFF: directory lies past the end of the file")
    (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
    width = height = None
    samples, bits, floating = 1, 8, False
    tile_width = tile_length = 0
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
        elif tag == 277:
            samples = max(1, value)
        elif tag == 258:
            (n,) = struct.unpack(endian + "I", entry[4:8])
            if n * (2 if kind == 3 else 4) > 4:  # one value per sample, stored elsewhere: read the first
                where = value if kind != 3 else struct.unpack(endian + "I", entry[8:12])[0]
                first = data[where : where + 2]
                value = struct.unpack(endian + "H", first)[0] if len(first) == 2 else 8
            bits = max(1, value)
        elif tag == 339:
            floating = value == 3
        elif tag == 322:
            tile_width = value
        elif tag == 323:
            tile_length = value
    if width is None or height is None:
        raise InputError("TIFF without image width/length tags")
    sample_bytes = 8 if bits > 32 else 4 if bits > 16 or floating else 2 if bits > 8 else 1
    # A single strip may hold the whole image: libtiff's strip buffer is a second copy.
    channels = 3 if samples in (1, 3) else 4  # a one-sample TIFF may be a palette
    internal = width * height * channels * sample_bytes
    # A tiled file's tile buffer is as big as its tiles claim, whatever the image's size: a
    # 64 x 64 TIFF with 16,000 x 16,000 tiles made OpenCV allocate 976 MiB before failing
    # (found by tests/fuzz/fuzz_decode.py; OpenCV refuses only tiles of 1 GB or more).
    # 8-bit tiles are read as RGBA, 4 bytes a pixel.
    internal = max(internal, tile_width * tile_length * max(4, channels * sample_bytes))
    return ImageHeader("TIFF", width, height, channels=channels, sample_bytes=sample_bytes, alpha=channels == 4,
                       internal_bytes=internal)


def _webp_header(data: bytes) -> ImageHeader:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        alpha = bool(data[20] & 0x10)
    elif chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        width, height, alpha = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), bool((bits >> 28) & 1)
    elif chunk == b"VP8 " and len(data) >= 30:
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
        alpha = False
    else:
        raise InputError("corrupt or truncated WebP header")
    # Lossless WebP decodes through a whole-image ARGB plane (4 bytes a pixel); lossy does not.
    internal = 4 * width * height if chunk != b"VP8 " else 0
    return ImageHeader("WebP", width, height, channels=4 if alpha else 3, alpha=alpha, internal_bytes=internal)


# BMP info-header sizes (after the 14-byte file header) by variant; width and height are
# 32-bit signed in all of them, a negative height meaning rows stored top-down.
_BMP_INFO_SIZES = {40: "BITMAPINFOHEADER", 52: "BITMAPV2INFOHEADER", 56: "BITMAPV3INFOHEADER",
                   108: "BITMAPV4HEADER", 124: "BITMAPV5HEADER"}
_BMP_CORE_SIZE = 12  # OS/2 1.x BITMAPCOREHEADER: 16-bit unsigned width and height
_BMP_OS2V2_SIZES = (16, 64)  # OS/2 2.x BITMAPCOREHEADER2: its compression codes clash with Windows'
_BMP_COMPRESSIONS = {0: "BI_RGB", 1: "BI_RLE8", 2: "BI_RLE4", 3: "BI_BITFIELDS"}  # what OpenCV decodes


def _bmp_header(data: bytes) -> ImageHeader:
    """BMP dimensions from its DIB header, whose size tells the variant.

    OS/2 1.x (12 bytes: WORD width, height, planes, bit count) and the Windows info headers
    (40 to 124 bytes: LONG width, height, a negative height for top-down rows) are read;
    OS/2 2.x headers, unknown sizes, JPEG/PNG-compressed BMPs and bit counts OpenCV cannot
    decode are refused as unsupported.
    """
    if len(data) < 18:
        raise InputError("truncated BMP header")
    (size,) = struct.unpack("<I", data[14:18])
    if size == _BMP_CORE_SIZE:
        if len(data) < 26:
            raise InputError("truncated BMP header (OS/2 BITMAPCOREHEADER)")
        width, height, _planes, bits = struct.unpack("<HHHH", data[18:26])
        return _bmp_layout(width, height, bits, allowed=(1, 4, 8, 24), variant="OS/2 BITMAPCOREHEADER")
    if size in _BMP_OS2V2_SIZES:
        raise InputError(f"unsupported BMP variant: OS/2 2.x (BITMAPCOREHEADER2, {size}-byte header); convert it to PNG or JPEG")
    if size not in _BMP_INFO_SIZES:
        raise InputError(f"unsupported or corrupt BMP: unknown {size}-byte header; expected {SUPPORTED_FORMATS}")
    if len(data) < 34:
        raise InputError(f"truncated BMP header ({_BMP_INFO_SIZES[size]})")
    width, height, _planes, bits, compression = struct.unpack("<iiHHI", data[18:34])
    if compression not in _BMP_COMPRESSIONS:
        raise InputError(f"unsupported BMP compression {compression} (JPEG/PNG inside a BMP, or unknown); convert it to PNG or JPEG")
    if width < 0:
        raise InputError(f"corrupt BMP: negative width {width}")
    return _bmp_layout(width, abs(height), bits, allowed=(1, 4, 8, 16, 24, 32), variant=_BMP_INFO_SIZES[size])


def _bmp_layout(width: int, height: int, bits: int, *, allowed: tuple[int, ...], variant: str) -> ImageHeader:
    if bits not in allowed:
        raise InputError(f"unsupported BMP: {bits} bits per pixel in a {variant}; expected one of {list(allowed)}")
    channels = 4 if bits == 32 else 3
    return ImageHeader("BMP", width, height, channels=channels, alpha=channels == 4)


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
        return _png_header(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_header(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_header(data)
    if data[:2] == b"BM":
        return _bmp_header(data)
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


@dataclass(frozen=True)
class DecodePlan:
    """How one image will be decoded and the memory that takes, from its header alone.

    Attributes:
        header: the file's :class:`ImageHeader`.
        flags: the ``cv2.imdecode`` flags.
        scale: JPEG DCT scale (1, 2, 4 or 8): the decoder's output is 1/scale per side.
        decoded_bytes: the decoder's output buffer.
        rgb_bytes: the (H, W, 3) uint8 result (the decoder's buffer itself when in place).
        peak_bytes: the most bytes alive at once: decoder internals, its output twice
            (cv2's copy), or its output + the result + conversion temporaries (row bands).
    """

    header: ImageHeader
    flags: int
    scale: int
    decoded_bytes: int
    rgb_bytes: int
    peak_bytes: int


_BAND_BYTES = 4 * 1024 * 1024  # float32 working set of one row band of a conversion
_DECODER_SLACK = 4 * 1024 * 1024  # the decoders' row buffers and tables
_JPEG_SCALES = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def plan_decode(header: ImageHeader, *, keep_side: int | None = None) -> DecodePlan:
    """Choose the decoder flags for ``header`` and estimate the bytes the decode needs.

    JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps the shorter side
    at least ``keep_side`` pixels. PNGs and BMPs without transparency are decoded straight
    to 8-bit BGR (libpng drops the low byte of 16-bit samples: at most 1 level in 255 from
    rounding). Transparent PNGs, WebP, TIFF and 32-bit BMPs keep their layout and are
    converted in row bands.
    """
    width, height = header.width, header.height
    scale = 1
    if header.format == "JPEG":
        # IMREAD_COLOR applies the EXIF orientation; JPEG has no alpha to lose.
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
        for factor, reduced in _JPEG_SCALES if keep_side else ():
            if min(width, height) // factor >= keep_side:
                flags, scale = reduced, factor
                break
        channels, sample_bytes = 3, 1 if scale > 1 else header.sample_bytes
    elif header.format in ("PNG", "BMP") and not header.alpha:
        # As IMREAD_UNCHANGED did: no EXIF rotation for PNG. OpenCV reads an OS/2 BMP's
        # colours only through IMREAD_COLOR (IMREAD_UNCHANGED turns it grey).
        flags, channels, sample_bytes = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION, 3, 1
    else:
        flags, channels, sample_bytes = cv2.IMREAD_UNCHANGED, max(1, header.channels), header.sample_bytes
    out_width, out_height = -(-width // scale), -(-height // scale)
    decoded = out_width * out_height * channels * sample_bytes
    rgb = out_width * out_height * 3
    in_place = channels == 3 and sample_bytes == 1
    converted = 0 if in_place else rgb + min(_BAND_BYTES * 4, out_width * out_height * channels * 4 * 4)
    # cv2.imdecode returns a copy of the decoder's own buffer (its Python binding copies the
    # Mat into a NumPy array), so the output briefly exists twice; measured, see
    # docs/hostile_inputs.md. The conversion to RGB runs after that copy is freed.
    peak = header.internal_bytes + max(2 * decoded, decoded + converted) + _DECODER_SLACK
    return DecodePlan(header=header, flags=flags, scale=scale, decoded_bytes=decoded,
                      rgb_bytes=decoded if in_place else rgb, peak_bytes=peak)


def _band_to_rgb8(band: np.ndarray, out: np.ndarray, *, alpha: bool, float_scale: float) -> None:
    """One row band of any decoded layout -> ``out`` (rows, W, 3) uint8 RGB, alpha on white."""
    if band.dtype == np.uint16:
        band = (band.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif band.dtype in (np.float32, np.float64):
        band = np.clip(np.nan_to_num(band) * float_scale, 0, 255).astype(np.uint8)
    if band.ndim == 2 or band.shape[2] == 1:
        cv2.cvtColor(np.ascontiguousarray(band.reshape(band.shape[:2])), cv2.COLOR_GRAY2RGB, dst=out)
    elif band.shape[2] == 4 and alpha:
        weight = band[:, :, 3:4].astype(np.float32) / 255.0
        bgr = band[:, :, :3].astype(np.float32) * weight + 255.0 * (1.0 - weight)
        cv2.cvtColor((bgr + 0.5).astype(np.uint8), cv2.COLOR_BGR2RGB, dst=out)
    elif band.shape[2] >= 3:
        cv2.cvtColor(np.ascontiguousarray(band[:, :, :3]), cv2.COLOR_BGR2RGB, dst=out)
    else:
        raise InputError(f"unsupported channel count {band.shape[2]}")


def _to_rgb8(pixels: np.ndarray, *, alpha: bool) -> np.ndarray:
    """Any decoded layout -> (H, W, 3) uint8 RGB; alpha composited on white.

    8-bit BGR is swapped in place (no copy); anything else is converted in row bands, so
    the temporaries stay near ``_BAND_BYTES`` whatever the image size.
    """
    if pixels.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8 and pixels.flags.c_contiguous:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 2:
        raise InputError(f"unsupported channel count {pixels.shape[2]}")
    float_scale = 1.0
    if pixels.dtype.kind == "f":
        float_scale = 255.0 if float(np.nanmax(pixels)) <= 1.0 else 1.0
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = max(1, _BAND_BYTES // (width * channels * 4))
    out = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, rows):
        _band_to_rgb8(pixels[top : top + rows], out[top : top + rows], alpha=alpha, float_scale=float_scale)
    return out


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

    Memory: the decode's peak bytes are estimated from the header (:func:`plan_decode`)
    and admitted against the process' decode budget (``denarius.engine.decode_budget``)
    when one is installed; the result holds its share of the budget until it is freed.

    Accepts encoded bytes, a file path, or an already decoded (H, W, 3) uint8 RGB array
    (returned as is after the size checks). Greyscale, RGBA (composited on white) and
    16-bit inputs are converted.

    Raises:
        InputError: empty or unreadable data, unsupported format, a header claiming more
            than ``max_pixels`` pixels (checked before decoding), more decode memory than
            the budget's per-image cap, a side shorter than ``min_side`` or zero area,
            truncated or undecodable data.
        Overloaded: the budget stayed full of other decodes for its whole wait.
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
    plan = plan_decode(header, keep_side=keep_side)
    budget = decode_budget.current()
    reservation = None if budget is None else budget.reserve(plan.peak_bytes, what=header.describe())
    try:
        rgb = _decode(data, plan)
        _check_size(rgb.shape[1], rgb.shape[0], max_pixels=max_pixels, min_side=min_side)
    except BaseException:
        if reservation is not None:
            reservation.release()
        raise
    if reservation is not None:
        reservation.shrink(rgb.nbytes)  # the decoder's buffers are freed; the result lives on
        reservation.release_with(rgb)
    return rgb


def _decode(data: bytes, plan: DecodePlan) -> np.ndarray:
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), plan.flags)
    except cv2.error as error:  # OpenCV refusing the data is still this image's fault
        raise InputError(f"could not decode the {plan.header.format} data ({getattr(error, 'err', None) or 'decoder error'})") from None
    if pixels is None or pixels.size == 0:
        raise InputError(f"could not decode the {plan.header.format} data (corrupt or truncated file)")
    return _to_rgb8(pixels, alpha=plan.header.format != "JPEG")


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
