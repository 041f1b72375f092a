"""The obverse: an emperor's profile portrait, crown, bust and legend on a die.

The portrait is drawn facing right in a local frame and mirrored for left-facing
emperors. The identity comes from :class:`denarius.training.synth.catalogue.Portrait`; the type
chooses the crown and bust variant; the die chooses the layout
(:func:`denarius.training.synth.layout.portrait_layout`: head size and place, a legend
broken by a raised head); ``rng`` adds the small differences between dies.

Elements recorded (landmark regions): ``bust`` (shoulders, drapery, cuirass and the neck;
not discriminative), ``head`` (skull, face, hair, ear; for a bare "head" type also the
truncated neck), ``beard``, the crown (``laureate`` / ``radiate`` / ``diademed``) and
``legend`` (one region per part of a broken legend). Head, beard, crown and legend are
discriminative for the emperor classifier: the legend spells the emperor's name.
"""

from __future__ import annotations

import numpy as np

from denarius.training.synth.catalogue import Emperor
from denarius.training.synth.layout import portrait_layout
from denarius.training.synth.legend import arc_legend
from denarius.training.synth.relief import Die, smooth

__all__ = ["draw_obverse"]


def _clip_to_die(pts: np.ndarray, radius: float = 0.93) -> np.ndarray:
    """Pull points outside the die's circle onto it (the bust runs into the border)."""
    pts = np.asarray(pts, np.float64)
    r = np.maximum(np.hypot(pts[:, 0], pts[:, 1]), 1e-9)
    return pts * np.minimum(1.0, radius / r)[:, None]


def draw_obverse(die: Die, emperor: Emperor, *, crown: str, bust: str, rng: np.random.Generator, noise: float) -> None:
    """Draw the portrait (head right in its frame; mirrored when the emperor faces left)."""
    p = emperor.portrait
    j = lambda s: float(rng.normal(0.0, s * noise))  # die-to-die jitter  # noqa: E731
    layout = portrait_layout(p, crown=crown, bust=bust, rng=rng)
    H = p.head * 1.42 * (1.0 + j(0.02))  # head radius in the head frame's units
    die.push(dx=j(0.015), dy=j(0.015), angle=j(2.0), flip=p.facing < 0)
    hx, hy = layout.hx, layout.hy  # head centre
    head_frame = {"dx": hx, "dy": hy, "scale": layout.scale}  # head, neck, beard, crown
    neck_bottom = 1.35 * H if bust != "head" else 1.25 * H
    neck = np.array([
        [0.40 * H, 0.60 * H], [0.48 * H, 0.95 * H], [0.52 * H, neck_bottom],
        [-p.neck * 1.4, neck_bottom + 0.03], [-p.neck * 1.4 - 0.03, 0.55 * H], [-0.60 * H, 0.20 * H],
    ])

    # ---------------------------------------------------------------- bust (drawn first, lowest)
    has_bust = bust != "head"
    if has_bust:
        die.begin("bust", False)
        top = hy + 1.05 * H * layout.scale
        shoulders = np.array([
            [-0.95, 1.0], [-0.80, top + 0.22], [-0.55, top + 0.02], [-0.20, top - 0.04],
            [0.18, top], [0.45, top + 0.12], [0.62, top + 0.40], [0.75, 1.0],
        ])
        die.poly(_clip_to_die(smooth(shoulders, 2)), 0.60)
        if "cuirassed" in bust:
            # breastplate edge, shoulder strap and the flaps (pteryges) of the cuirass
            die.lines([[0.0, top + 0.02], [0.30, top + 0.18], [0.46, 0.95]], 0.45, 0.02, record=False)
            die.lines([[-0.30, top + 0.02], [-0.12, top + 0.28], [0.08, top + 0.50]], 0.45, 0.018, record=False)
            for k in range(5):
                x = -0.10 + 0.11 * k
                flap = np.array([[x, top + 0.33], [x + 0.09, top + 0.33], [x + 0.10, top + 0.55], [x + 0.01, top + 0.55]])
                die.poly(_clip_to_die(flap), 0.72, record=False)
                die.lines(_clip_to_die(flap), 0.5, 0.012, closed=True, record=False)
        if "draped" in bust:
            # a cloak over the far shoulder, its folds, and a brooch (fibula)
            cloak = np.array(
                [[-0.95, 1.0], [-0.82, top + 0.20], [-0.56, top + 0.0], [-0.22, top + 0.05], [-0.15, top + 0.35], [-0.35, 1.0]])
            die.poly(_clip_to_die(smooth(cloak, 2)), 0.70, record=False)
            for k in range(6):
                x = -0.78 + 0.1 * k
                die.lines(_clip_to_die(np.array([[x, top + 0.12], [x + 0.07, top + 0.32], [x + 0.04, 0.98]])), 0.5, 0.014, record=False)
            die.circle([-0.30, top + 0.10], 0.045, 0.95, record=False)
            die.ring([-0.30, top + 0.10], 0.03, 0.75, 0.01, record=False)
        die.push(**head_frame)  # the neck rises from the bust: part of it, not of the head
        die.poly(smooth(neck, 1), 0.82)
        die.pop()
        die.end()

    # ------------------------------------------------------------------------- head (and neck)
    die.begin("head", True)
    die.push(**head_frame)
    if not has_bust:  # a bare head: the neck and its truncation line belong to the head
        die.poly(smooth(neck, 1), 0.82)
        die.lines([[0.52 * H, neck_bottom], [-p.neck * 1.4, neck_bottom + 0.03]], 0.6, 0.02, record=False)
    # skull, then the face profile (forward = +x, in head radii)
    sl = p.skull_long
    die.ellipse([-0.28 * H, -0.08 * H], [H * sl * 0.78, H * 0.90], 0.95, n=32)
    face = np.array([
        [0.25, -0.92], [0.60, -0.68], [0.80 + p.brow / H, -0.32], [0.74, -0.20],
        [0.90 + 0.9 * p.nose / H, 0.06 + p.nose_hook / H], [0.78, 0.16], [0.84 + p.lips / H, 0.26],
        [0.74, 0.33], [0.82 + p.lips / H, 0.41], [0.74 + 1.2 * p.chin / H, 0.62], [0.50, 0.78 * p.jaw],
        [0.05, 0.68 * p.jaw], [-0.25, 0.45], [-0.20, -0.40],
    ]) * H
    die.poly(smooth(face, 2), 1.0)
    die.ellipse([0.35 * H, 0.20 * H], [0.22 * H, 0.20 * H], 1.06, record=False)  # cheek
    # eye, brow, ear, mouth, nostril (engraved)
    die.ellipse([0.48 * H, -0.13 * H], [0.09 * H, 0.045 * H], 0.86, record=False)
    die.circle([0.52 * H, -0.13 * H], 0.025 * H, 0.98, record=False)
    die.lines([[0.30 * H, -0.28 * H], [0.52 * H, -0.30 * H], [0.66 * H, -0.26 * H]], 0.86, 0.016, record=False)
    die.ellipse([-0.12 * H, 0.05 * H], [0.11 * H, 0.17 * H], 1.04, record=False)
    die.ring([-0.12 * H, 0.05 * H], 0.07 * H, 0.86, 0.014, record=False)
    die.lines([[0.70 * H, 0.33 * H], [0.55 * H, 0.36 * H]], 0.84, 0.012, record=False)
    die.lines([[0.76 * H, 0.10 * H], [0.64 * H, 0.13 * H]], 0.88, 0.012, record=False)
    die.lines([[0.58 * H, 0.02 * H], [0.50 * H, 0.30 * H]], 0.94, 0.01, record=False)  # nasolabial fold
    # hair: a raised mass over the skull with its texture
    # (angles: 0 = forward, pi/2 = down, pi = back, 3pi/2 = up)
    t = np.linspace(np.pi * 0.80, np.pi * 1.78, 24)
    cap = np.concatenate([
        np.stack([np.cos(t) * H * sl * 0.84 - 0.26 * H, np.sin(t) * H * 0.95 - 0.08 * H], 1),
        np.stack([np.cos(t[::-1]) * H * sl * 0.42 - 0.40 * H, np.sin(t[::-1]) * H * 0.40 - 0.18 * H], 1),
    ])
    die.poly(smooth(cap, 1), 1.07, record=False)
    if p.hair == "curls":
        for ring, step in ((0.80, 1), (0.64, 1), (0.50, 2)):
            pts = np.stack([np.cos(t) * ring * H * sl - 0.26 * H, np.sin(t) * ring * H - 0.10 * H], 1)
            die.dots(pts[::step], p.curl * 0.75, 1.15, record=False)
            die.dots(pts[::step], p.curl * 0.3, 1.0, record=False)
    elif p.hair == "combed":
        for k in range(11):
            a0 = np.pi * (0.85 + 0.085 * k)
            pts = [[np.cos(a0 + d) * r * H * sl - 0.26 * H, np.sin(a0 + d) * r * H - 0.08 * H]
                   for d, r in ((0, 0.88), (0.1, 0.68), (0.2, 0.48))]
            die.lines(pts, 0.92, 0.014, record=False)
    else:
        a = rng.uniform(np.pi * 0.8, np.pi * 1.78, 60)
        r = rng.uniform(0.45, 0.85, 60)
        g = np.stack([np.cos(a) * r * H * sl - 0.26 * H, np.sin(a) * r * H - 0.08 * H], 1)
        die.dots(g, 0.01, 0.96, record=False)
    die.end()
    # beard
    if p.beard != "none":
        die.begin("beard", True)
        t = np.linspace(-0.1, 1.0, 14)
        jaw = np.stack([-0.05 + 0.72 * t, 0.30 + 0.40 * np.sin(t * 1.4)], 1) * H
        if p.beard == "full":
            die.poly(smooth(np.concatenate([jaw, [[0.72 * H, 0.68 * H], [0.40 * H, 0.88 * H], [-0.05 * H, 0.62 * H]]]), 1), 1.05)
            die.dots(jaw + np.array([0.0, 0.08 * H]), p.curl * 0.6, 1.14)  # numpy: shifts every point down
        die.dots(jaw, p.curl * 0.42, 1.12)
        die.end()

    # crown
    if crown != "bare":
        die.begin(crown, True)
        t = np.linspace(np.pi * 1.0, np.pi * 1.80, 13)
        band = np.stack([np.cos(t) * 0.86 * H * sl - 0.22 * H, np.sin(t) * 0.86 * H - 0.02 * H], 1)
        if crown == "laureate":
            for k, (x, y) in enumerate(band):
                ang = np.rad2deg(t[k]) + 90
                die.ellipse([x, y], [0.13 * H, 0.045 * H], 1.22, angle=ang + 38)
                die.ellipse([x, y], [0.13 * H, 0.045 * H], 1.20, angle=ang - 38)
        else:
            die.lines(band, 1.18, 0.03)
        if crown == "radiate":
            for k in range(1, len(band) - 1, 2):
                x, y = band[k]
                d = np.array([np.cos(t[k]), np.sin(t[k])])
                nrm = np.array([-d[1], d[0]])
                die.poly([[x, y] + nrm * 0.07 * H, np.array([x, y]) + d * 0.40 * H, [x, y] - nrm * 0.07 * H], 1.2)
        if crown == "diademed":
            die.dots(band[1:-1:2], 0.018, 1.25)
        if crown in ("laureate", "diademed"):  # ties behind the head
            x0, y0 = band[0]
            die.lines([[x0, y0], [x0 - 0.14 * H, y0 + 0.45 * H], [x0 - 0.06 * H, y0 + 0.85 * H]], 1.0, 0.028)
            die.lines([[x0, y0], [x0 - 0.25 * H, y0 + 0.32 * H], [x0 - 0.32 * H, y0 + 0.70 * H]], 1.0, 0.024)
        die.end()
    die.pop()
    die.pop()

    arc_legend(die, emperor.legend, rng=rng, span_deg=295.0 + j(8.0), radius=0.88 + j(0.006),
               discriminative=True, gap_deg=layout.gap_deg, gap_at_deg=layout.gap_at_deg)
