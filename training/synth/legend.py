"""Legends: Latin capitals around the rim (obverse and reverse) and in the exergue."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from denarius.training.synth.relief import CANVAS, DIE_RADIUS, Die

__all__ = ["arc_legend", "exergue_text"]

_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)


@functools.lru_cache(maxsize=1)
def _polar():
    """Radius (px) and clockwise-from-top angle (rad) of every height-map pixel."""
    c = (CANVAS - 1) / 2.0
    y, x = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    x -= c
    y -= c
    r = np.sqrt(x * x + y * y)
    a = np.arctan2(x, -y)  # 0 at 12 o'clock, +pi/2 at 3 o'clock
    return r, a


@functools.lru_cache(maxsize=4096)
def _char_width(ch: str, font: int, scale: float, thickness: int) -> int:
    return cv2.getTextSize(ch, font, scale, thickness)[0][0]


@functools.lru_cache(maxsize=16)
def _cap_height(font: int, thickness: int) -> int:
    return cv2.getTextSize("M", font, 1.0, thickness)[0][1]


def _strip(text: str, *, height: int, font: int, thickness: int, spacing: float) -> np.ndarray:
    """Text rendered on one line: (height, width) float32 in [0, 1], letters filling the height."""
    scale = (height * 0.92) / _cap_height(font, thickness)
    pad = int(height * spacing)
    widths = [_char_width(ch, font, scale, thickness) if ch != " " else int(height * 0.45) for ch in text]
    width = sum(widths) + pad * (len(text) + 1)
    canvas = np.zeros((height + 4, width), np.uint8)
    x = pad
    for ch, w in zip(text, widths, strict=True):
        if ch != " ":
            cv2.putText(canvas, ch, (x, height + 1), font, scale, 255, thickness, cv2.LINE_AA)
        x += w + pad
    return canvas.astype(np.float32) / 255.0


def arc_legend(die: Die, text: str, *, rng: np.random.Generator, level: float = 0.75,
               span_deg: float = 300.0, radius: float = 0.84, letter: float = 0.12,
               discriminative: bool = False, word: str = "legend",
               gap_deg: float = 0.0, gap_at_deg: float = 0.0):
    """Draw ``text`` clockwise around the rim, centred on 12 o'clock, letter bases inward.

    radius: outer edge of the letters in die radii; letter: letter height in die radii;
    span_deg: the most the legend may cover, centred on 12 o'clock (the rest is the gap
    at the bottom). ``gap_deg`` > 0 divides the legend where the portrait breaks through
    it, as on many late Roman coins: the text is split at the space nearest its middle,
    the first part ends ``gap_deg / 2`` before ``gap_at_deg`` (degrees clockwise from
    12 o'clock), the second starts as far after it. Each part records an arc-band
    polygon covering its letters (one region named ``word`` per part).
    """
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    height = int(round(letter * DIE_RADIUS))
    thickness = max(2, int(round(height / 7)))
    r_out = radius * DIE_RADIUS
    r_mid = r_out - height / 2.0
    limit = np.deg2rad(span_deg) / 2.0
    parts = _split(text) if gap_deg > 0 else None
    if parts is None:
        strip = _strip(text, height=height, font=font, thickness=thickness, spacing=0.12)
        span = min(2.0 * limit, strip.shape[1] / r_mid * 1.15)
        pieces = [(strip, -span / 2.0, span)]
    else:
        gap_at, half_gap = np.deg2rad(gap_at_deg), np.deg2rad(gap_deg) / 2.0
        first, second = (_strip(t, height=height, font=font, thickness=thickness, spacing=0.12) for t in parts)
        room_first = max(gap_at - half_gap + limit, 1e-3)
        room_second = max(limit - gap_at - half_gap, 1e-3)
        span_first = min(room_first, first.shape[1] / r_mid * 1.15)
        span_second = min(room_second, second.shape[1] / r_mid * 1.15)
        pieces = [(first, gap_at - half_gap - span_first, span_first), (second, gap_at + half_gap, span_second)]
    for strip, start, span in pieces:
        _arc_piece(die, strip, start=start, span=span, r_out=r_out, height=height, level=level,
                   word=word, discriminative=discriminative)


def _split(text: str) -> tuple[str, str] | None:
    """``text`` cut at the space nearest its middle, or None when it is one word."""
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if not spaces:
        return None
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2.0))
    return text[:cut], text[cut + 1 :]


def _arc_piece(die: Die, strip: np.ndarray, *, start: float, span: float, r_out: float, height: int,
               level: float, word: str, discriminative: bool):
    """Bend ``strip`` onto the arc [start, start + span] (radians clockwise from 12 o'clock)."""
    r, a = _polar()
    # strip x runs along the arc, strip y from the outer edge inwards
    map_x = ((a - start) * (strip.shape[1] / span)).astype(np.float32)
    map_y = (r_out - r + 2.0).astype(np.float32)
    patch = cv2.remap(strip, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    die.begin(word, discriminative)
    t = np.linspace(start, start + span, 32)
    c = (CANVAS - 1) / 2.0
    outer = np.stack([c + (r_out + 2) * np.sin(t), c - (r_out + 2) * np.cos(t)], 1)
    r_in = r_out - height - 2
    inner = np.stack([c + r_in * np.sin(t[::-1]), c - r_in * np.cos(t[::-1])], 1)
    die.paste(patch * level, record_polygon=np.concatenate([outer, inner]))
    die.end()


def exergue_text(die: Die, text: str, *, rng: np.random.Generator, level: float = 0.7,
                 y: float = 0.73, letter: float = 0.11, discriminative: bool = False):
    """A mint mark below the exergue line, centred; records its bounding box."""
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    height = int(round(letter * DIE_RADIUS))
    thickness = max(2, int(round(height / 7)))
    strip = _strip(text, height=height, font=font, thickness=thickness, spacing=0.1)
    c = (CANVAS - 1) / 2.0
    x0 = int(round(c - strip.shape[1] / 2.0))
    y0 = int(round(c + y * DIE_RADIUS - strip.shape[0] / 2.0))
    patch = np.zeros_like(die.h)
    h, w = strip.shape
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(CANVAS, x0 + w), min(CANVAS, y0 + h)
    patch[ys:ye, xs:xe] = strip[ys - y0 : ye - y0, xs - x0 : xe - x0] * level
    die.begin("exergue", discriminative)
    box = np.array([[xs, ys], [xe, ys], [xe, ye], [xs, ye]], np.float32)
    die.paste(patch, record_polygon=box)
    die.end()
