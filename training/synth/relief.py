"""A die: a height map drawn with OpenCV primitives in die units, plus element outlines.

Die units: the die's radius is 1, origin at the die centre, x right, y down. Each drawn
element (head, crown, shield, legend, ...) records its outline points so a landmark
polygon can be made for it later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["Die", "Element", "CANVAS", "DIE_RADIUS", "smooth"]

CANVAS = 384  # height-map side in pixels
DIE_RADIUS = 148.0  # die radius in height-map pixels


@dataclass
class Element:
    """A described element. ``points``: (K, 2) float32 outline points in height-map pixels;
    ``polygon``: an explicit outline (e.g. the legend band) used instead of the hull."""

    word: str
    discriminative: bool
    points: list = field(default_factory=list)
    polygon: np.ndarray | None = None


class Die:
    """Height map (CANVAS, CANVAS) float32 in [0, ~1.2]; 0 = field of the coin.

    Drawing is painter's-order overwrite: later shapes cover earlier ones with their own
    relief level, which is how a die cutter builds overlapping figures.
    """

    def __init__(self):
        self.h = np.zeros((CANVAS, CANVAS), np.float32)
        self.elements: list[Element] = []
        self._current: Element | None = None
        # unit -> pixel affine (2x3); a stack lets figures be drawn in local frames
        c = CANVAS / 2.0
        self._stack = [np.array([[DIE_RADIUS, 0, c], [0, DIE_RADIUS, c]], np.float64)]

    # ------------------------------------------------------------------ frames and elements
    def push(self, *, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0, angle: float = 0.0, flip: bool = False):
        """Enter a local frame: translate (units of the current frame), rotate (degrees), scale, mirror x."""
        a = np.deg2rad(angle)
        ca, sa = np.cos(a) * scale, np.sin(a) * scale
        fx = -1.0 if flip else 1.0
        local = np.array([[ca * fx, -sa, dx], [sa * fx, ca, dy], [0, 0, 1]], np.float64)
        top = np.vstack([self._stack[-1], [0, 0, 1]])
        self._stack.append((top @ local)[:2])
        return self

    def pop(self):
        self._stack.pop()

    def begin(self, word: str, discriminative: bool = False) -> Element:
        element = Element(word, bool(discriminative))
        self.elements.append(element)
        self._current = element
        return element

    def end(self):
        self._current = None

    def px(self, pts) -> np.ndarray:
        """(K, 2) units of the current frame -> (K, 2) float64 pixels."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        m = self._stack[-1]
        return pts @ m[:, :2].T + m[:, 2]

    @property
    def unit(self) -> float:
        """Pixels per unit of the current frame."""
        m = self._stack[-1]
        return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))

    def _record(self, p: np.ndarray):
        if self._current is not None:
            self._current.points.append(p.astype(np.float32))

    # --------------------------------------------------------------------------- primitives
    def poly(self, pts, level: float, *, record: bool = True):
        p = self.px(pts)
        cv2.fillPoly(self.h, [np.round(p * 16).astype(np.int32)], float(level), cv2.LINE_8, 4)
        if record:
            self._record(p)

    def lines(self, pts, level: float, width: float, *, closed: bool = False, record: bool = True):
        """Polyline of ``width`` units (engraving when ``level`` is below the surface)."""
        p = self.px(pts)
        t = max(1, int(round(width * self.unit)))
        cv2.polylines(self.h, [np.round(p * 16).astype(np.int32)], closed, float(level), t, cv2.LINE_8, 4)
        if record:
            self._record(p)

    def ellipse(self, center, axes, level: float, *, angle: float = 0.0, record: bool = True, n: int = 20):
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        a = np.deg2rad(angle)
        x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
        pts = np.stack([center[0] + x * np.cos(a) - y * np.sin(a), center[1] + x * np.sin(a) + y * np.cos(a)], 1)
        self.poly(pts, level, record=record)

    def circle(self, center, radius: float, level: float, *, record: bool = True, n: int = 16):
        self.ellipse(center, (radius, radius), level, record=record, n=n)

    def ring(self, center, radius: float, level: float, width: float, *, record: bool = True):
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], 1)
        self.lines(pts, level, width, closed=True, record=record)

    def dots(self, pts, radius: float, level: float, *, record: bool = True):
        """Many small raised dots (beads, curls, pearls)."""
        p = self.px(pts)
        r = max(1, int(round(radius * self.unit)))
        for x, y in np.round(p).astype(np.int32):
            cv2.circle(self.h, (int(x), int(y)), r, float(level), -1, cv2.LINE_8)
        if record and len(p):
            self._record(np.concatenate([p - r, p + r]))

    def paste(self, patch: np.ndarray, *, record_polygon: np.ndarray | None = None):
        """Raise the height map to at least ``patch`` (same shape), e.g. a legend."""
        np.maximum(self.h, patch, out=self.h)
        if record_polygon is not None and self._current is not None:
            self._current.polygon = record_polygon.astype(np.float32)

    def carve_disk(self, center, radius: float, level: float = 0.0):
        """Cut back to ``level`` (crescent inner bite)."""
        p = self.px([center])[0]
        cv2.circle(self.h, (int(round(p[0])), int(round(p[1]))), max(1, int(round(radius * self.unit))), float(level), -1)


def smooth(pts: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Chaikin corner cutting of a closed polygon (K, 2) -> (K * 2**iterations, 2)."""
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.concatenate([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], 1).reshape(-1, 2)
    return pts
