"""Where a die puts its design: portrait scale and position, figure position, field marks.

Real dies of one type were cut by hand and differ in layout: a small head high on a
large bust with the legend broken by the crown, a figure standing off-centre, a star
nearer the rim. Every draw here comes from the die's generator (through the coin's
``_Mixed`` view: ``uniform`` is a die draw), so the coins struck from one die share their
layout and the dies of one type differ. The spread is wide enough that the crop centre
is no good answer to "where are the discriminative elements" (measured by the share of
images whose discriminative polygons, dilated by the pointing-game tolerance, contain
the crop centre; ``tests/training/test_synth.py`` bounds it).

All lengths in die units (die radius 1, origin at the die centre, x right, y down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from denarius.training.synth.catalogue import Portrait
from denarius.training.synth.vocabulary import FIELD_POSITIONS, GROUND_POSITIONS

__all__ = ["LEGEND_INNER", "FigureLayout", "PortraitLayout", "figure_layout", "portrait_layout"]

LEGEND_INNER = 0.76  # inner edge of the obverse legend's letters (radius 0.88, letters 0.12)
LEGEND_MID = 0.82  # the radius along which the legend's gap is measured
CROWN_TOP = {"radiate": 1.28, "laureate": 1.02, "diademed": 1.0, "bare": 0.98}  # top above head centre, head radii
TOP_LIMIT = -0.89  # the crown's top may reach the beaded border (it breaks the legend)
HOME = (0.04, -0.16)  # head centre of the classic centred portrait
FEET = 0.50  # lowest y of the reverse figure's feet (the exergue line is at 0.56)
FIELD_RIM = 0.66  # field marks stay inside this radius (the legend starts beyond it)


@dataclass(frozen=True)
class PortraitLayout:
    """Obverse layout of one die.

    Attributes:
        scale: the head frame's scale in [0.58, 0.82] (1 = the classic centred portrait of generator version 1).
        head: head radius in die units (the emperor's ``Portrait.head`` x 1.42 x ``scale``).
        hx, hy: head centre in the portrait's frame (x mirrored when the emperor faces left).
        gap_deg, gap_at_deg: where the head breaks the legend (0, 0 when it does not):
            width and centre of the break in degrees clockwise from 12 o'clock.
    """

    scale: float
    head: float
    hx: float
    hy: float
    gap_deg: float
    gap_at_deg: float


@dataclass(frozen=True)
class FigureLayout:
    """Reverse layout of one die.

    Attributes:
        dx, dy, scale: the figure frame (feet at y <= ``FEET``, scale in [0.95, 1.15]).
        field: position name -> (x, y) of a field mark in die units.
    """

    dx: float
    dy: float
    scale: float
    field: dict


def portrait_layout(portrait: Portrait, *, crown: str, bust: str, rng) -> PortraitLayout:
    """Draw the portrait's scale and place: mostly raised towards the rim on a bust, so
    the die centre falls on the neck or the bust; a bare head ("head" bust) stays near
    the middle (its neck truncation needs the field below it)."""
    scale = float(rng.uniform(0.58, 0.82))
    head = portrait.head * 1.42 * scale
    lift = float(rng.uniform(0.0, 1.0)) ** 0.25 if bust != "head" else float(rng.uniform(0.0, 0.35))
    top_factor = CROWN_TOP[crown]
    highest = min(TOP_LIMIT + top_factor * head, HOME[1])
    hy = HOME[1] + (highest - HOME[1]) * lift
    hx = HOME[0] + float(rng.uniform(-0.08, 0.08))
    top = hy - top_factor * head
    depth = -top - (LEGEND_INNER - 0.02)  # how far the crown reaches into the legend's band
    if depth <= 0:
        return PortraitLayout(scale, head, hx, hy, 0.0, 0.0)
    # chord of the head's top (radius top_factor * head) at the legend's inner edge, plus a margin
    radius = top_factor * head
    half = np.sqrt(max(radius**2 - (radius - depth) ** 2, 0.0)) + 0.07
    top_x = portrait.facing * (hx - 0.24 * head)  # the crown's top, in die coordinates
    gap = float(np.rad2deg(2.0 * np.arctan2(half, LEGEND_MID)))
    at = float(np.rad2deg(np.arctan2(top_x, LEGEND_MID)))
    return PortraitLayout(scale, head, hx, hy, gap, at)


def figure_layout(field: tuple, *, rng) -> FigureLayout:
    """Draw the figure's size and place, and where each field mark sits within its named
    position (left field, right field above, at the feet, on the ground). A mark on the
    side the figure moves to moves out with it, clamped inside ``FIELD_RIM``."""
    scale = float(rng.uniform(0.95, 1.15))
    dx = float(rng.uniform(-0.14, 0.14))
    dy = FEET - 0.5 * scale - float(rng.uniform(0.0, 0.03))
    places = {}
    for _, position in field:
        x, y = FIELD_POSITIONS[position][1]
        x += float(rng.uniform(-0.05, 0.05))
        # marks on the ground only rise (the exergue line is below them)
        y += float(rng.uniform(-0.06, 0.0)) if position in GROUND_POSITIONS else float(rng.uniform(-0.08, 0.08))
        if np.sign(x) == np.sign(dx):
            x += dx
        r = float(np.hypot(x, y))
        if r > FIELD_RIM:
            x, y = x * FIELD_RIM / r, y * FIELD_RIM / r
        places[position] = (x, y)
    return FigureLayout(dx, dy, scale, places)
