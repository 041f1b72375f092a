"""The reverse: a figure with its attributes, field symbols, legend and exergue.

Figures are drawn in a local frame whose +x is the direction the figure faces, so one
drawing serves "standing left" and "standing right". The die chooses the layout
(:func:`denarius.training.synth.layout.figure_layout`): the figure's size and place, and
where each field mark sits within its named position of
:data:`denarius.training.synth.vocabulary.FIELD_POSITIONS`. Attributes follow the hands.

Elements recorded (landmark regions): the figure (named after it), ``throne``, every
attribute, ``legend`` and ``exergue``; discriminative are the elements that differ from
the type's nearest sibling types (:attr:`denarius.training.synth.catalogue.RicType.discriminative`).
"""

from __future__ import annotations

import numpy as np

from denarius.training.synth.catalogue import RicType
from denarius.training.synth.layout import figure_layout
from denarius.training.synth.legend import arc_legend, exergue_text
from denarius.training.synth.relief import Die, smooth
from denarius.training.synth.vocabulary import FIGURES

__all__ = ["draw_reverse"]

# levels: background figure parts < body < attributes in front
BODY, LIMB, FRONT = 0.72, 0.85, 0.95


def _staff(die: Die, name: str, x: float, hand_y: float, disc: bool):
    die.begin(name if name != "cornucopia" else "cornucopiae", disc)
    if name == "spear":
        die.lines([[x, -0.62], [x, 0.50]], FRONT, 0.022)
        die.poly([[x - 0.035, -0.58], [x, -0.72], [x + 0.035, -0.58], [x, -0.55]], FRONT + 0.05)
    elif name == "sceptre":
        die.lines([[x, -0.52], [x, 0.46]], FRONT, 0.018)
        die.circle([x, -0.55], 0.03, FRONT + 0.05)
    elif name == "standard":
        die.lines([[x, -0.62], [x, 0.50]], FRONT, 0.02)
        die.lines([[x - 0.07, -0.52], [x + 0.07, -0.52]], FRONT, 0.018)
        for k in range(3):
            die.circle([x, -0.42 + 0.09 * k], 0.035, FRONT + 0.05)
        die.poly([[x - 0.04, -0.62], [x, -0.70], [x + 0.04, -0.62]], FRONT)
    elif name == "rudder":
        die.lines([[x, hand_y - 0.05], [x + 0.03, 0.32]], FRONT, 0.022)
        die.poly(smooth(np.array([[x - 0.02, 0.22], [x + 0.09, 0.26], [x + 0.11, 0.50], [x + 0.0, 0.52], [x - 0.04, 0.32]]), 1), FRONT)
    elif name == "cornucopia":
        horn = np.array([[x - 0.02, hand_y + 0.06], [x + 0.03, hand_y + 0.02], [x + 0.02, hand_y - 0.14],
                         [x - 0.04, hand_y - 0.30], [x - 0.14, hand_y - 0.34], [x - 0.10, hand_y - 0.24], [x - 0.06, hand_y - 0.12]])
        die.poly(smooth(horn, 2), FRONT)
        die.dots([[x - 0.13, hand_y - 0.36], [x - 0.08, hand_y - 0.38], [x - 0.03, hand_y - 0.33]], 0.03, FRONT + 0.08)
        for k in range(3):
            yy = hand_y - 0.05 - 0.08 * k
            die.lines([[x - 0.045 - 0.02 * k, yy], [x + 0.025, yy - 0.02]], FRONT - 0.15, 0.012, record=False)
    die.end()


def _hand_attr(die: Die, name: str, hx: float, hy: float, disc: bool):
    die.begin(name, disc)
    if name == "branch":
        die.lines([[hx, hy], [hx + 0.08, hy - 0.16], [hx + 0.12, hy - 0.28]], FRONT, 0.014)
        for k in range(5):
            t = 0.2 + 0.18 * k
            cx, cy = hx + 0.12 * t * 0.9, hy - 0.28 * t
            die.ellipse([cx - 0.035, cy], [0.035, 0.012], FRONT + 0.03, angle=-30)
            die.ellipse([cx + 0.035, cy - 0.01], [0.035, 0.012], FRONT + 0.03, angle=30)
    elif name == "patera":
        die.ellipse([hx + 0.04, hy - 0.01], [0.075, 0.022], FRONT + 0.05)
        die.lines([[hx - 0.01, hy - 0.01], [hx + 0.09, hy - 0.01]], FRONT - 0.1, 0.008, record=False)
    elif name == "globe":
        die.circle([hx + 0.02, hy - 0.05], 0.055, FRONT + 0.05)
        die.lines([[hx - 0.03, hy - 0.03], [hx + 0.07, hy - 0.07]], FRONT - 0.1, 0.01, record=False)
    elif name == "wreath":
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        pts = np.stack([hx + 0.04 + 0.055 * np.cos(t), hy - 0.06 + 0.055 * np.sin(t)], 1)
        die.dots(pts, 0.02, FRONT + 0.05)
        die.lines([[hx, hy], [hx + 0.02, hy + 0.08]], FRONT, 0.01, record=False)
    elif name == "apple":
        die.circle([hx + 0.01, hy - 0.035], 0.034, FRONT + 0.08)
    elif name == "scales":
        die.lines([[hx, hy], [hx, hy - 0.06]], FRONT, 0.012)
        die.lines([[hx - 0.09, hy - 0.06], [hx + 0.09, hy - 0.06]], FRONT, 0.014)
        for sx in (-0.09, 0.09):
            die.lines([[hx + sx, hy - 0.06], [hx + sx - 0.03, hy + 0.06]], FRONT - 0.05, 0.008)
            die.lines([[hx + sx, hy - 0.06], [hx + sx + 0.03, hy + 0.06]], FRONT - 0.05, 0.008)
            die.ellipse([hx + sx, hy + 0.065], [0.045, 0.015], FRONT)
    die.end()


def _field_attr(die: Die, name: str, x: float, y: float, disc: bool):
    die.begin(name, disc)
    if name == "star":
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        r = np.where(np.arange(16) % 2 == 0, 0.075, 0.025)
        die.poly(np.stack([x + r * np.cos(t), y + r * np.sin(t)], 1), FRONT)
    elif name == "crescent":
        die.circle([x, y], 0.07, FRONT, n=24)
        die.carve_disk([x + 0.035, y - 0.03], 0.058)
    elif name == "owl":
        die.ellipse([x, y + 0.02], [0.05, 0.075], FRONT)
        die.circle([x, y - 0.065], 0.042, FRONT + 0.05)
        die.poly([[x - 0.04, y - 0.09], [x - 0.03, y - 0.125], [x - 0.015, y - 0.095]], FRONT + 0.05)
        die.poly([[x + 0.04, y - 0.09], [x + 0.03, y - 0.125], [x + 0.015, y - 0.095]], FRONT + 0.05)
        die.ring([x - 0.017, y - 0.068], 0.012, FRONT - 0.1, 0.007, record=False)
        die.ring([x + 0.017, y - 0.068], 0.012, FRONT - 0.1, 0.007, record=False)
        die.lines([[x - 0.03, y + 0.0], [x, y + 0.05], [x + 0.03, y + 0.0]], FRONT - 0.12, 0.008, record=False)
    elif name == "shield":
        die.circle([x, y], 0.1, FRONT, n=28)
        die.ring([x, y], 0.082, FRONT - 0.12, 0.012, record=False)
        die.circle([x, y], 0.028, FRONT + 0.1)
    elif name == "column":
        die.poly([[x - 0.03, y - 0.12], [x + 0.03, y - 0.12], [x + 0.03, y + 0.12], [x - 0.03, y + 0.12]], FRONT)
        die.poly([[x - 0.06, y - 0.16], [x + 0.06, y - 0.16], [x + 0.05, y - 0.12], [x - 0.05, y - 0.12]], FRONT + 0.05)
        die.poly([[x - 0.055, y + 0.12], [x + 0.055, y + 0.12], [x + 0.055, y + 0.15], [x - 0.055, y + 0.15]], FRONT + 0.05)
        for dx in (-0.012, 0.012):
            die.lines([[x + dx, y - 0.11], [x + dx, y + 0.11]], FRONT - 0.12, 0.006, record=False)
    die.end()


def _headgear(die: Die, style: str):
    """Drawn in the figure frame, head centre (0.02, -0.43)."""
    if style == "helmet":
        die.poly(smooth(np.array([[-0.06, -0.44], [-0.05, -0.52], [0.03, -0.54], [0.08, -0.46], [0.02, -0.47]]), 1), LIMB + 0.1)
        die.poly(smooth(np.array([[-0.10, -0.50], [-0.02, -0.62], [0.07, -0.58], [0.0, -0.53]]), 1), LIMB + 0.05)
    elif style == "rays":
        for a in np.linspace(-150, -30, 6):
            d = np.array([np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))])
            c = np.array([0.02, -0.43])
            die.poly([c + d * 0.05 + [-d[1] * 0.02, d[0] * 0.02], c + d * 0.12, c + d * 0.05 - [-d[1] * 0.02, d[0] * 0.02]], LIMB + 0.05)
    elif style == "wreath":
        die.dots([[x, -0.49 + 0.02 * abs(x) * 10] for x in np.linspace(-0.05, 0.06, 5)], 0.015, LIMB + 0.1)
    elif style == "modius":
        die.poly([[-0.04, -0.48], [0.06, -0.48], [0.07, -0.56], [-0.05, -0.56]], LIMB + 0.05)
    else:  # hair bun
        die.circle([-0.05, -0.46], 0.03, LIMB + 0.05)


def _humanoid(die: Die, kind: str, headgear: str, pose: str, figure_disc: bool):
    """Figure frame: faces +x, feet at y=0.5. Returns (hand point, staff x, staff hand y)."""
    if pose == "seated":
        die.begin("throne", False)
        die.poly([[-0.24, -0.18], [-0.18, -0.18], [-0.16, 0.12], [0.12, 0.12], [0.14, 0.18], [-0.20, 0.18]], BODY - 0.1)
        die.lines([[-0.20, 0.18], [-0.22, 0.50]], BODY - 0.1, 0.025)
        die.lines([[0.10, 0.18], [0.12, 0.50]], BODY - 0.1, 0.025)
        die.end()
    die.begin("_figure", figure_disc)
    if headgear == "wings":  # behind the body
        for side in (-1, 1):
            wing = np.array([[-0.04, -0.30], [-0.20, -0.55], [-0.30, -0.62], [-0.26, -0.45],
                             [-0.30, -0.40], [-0.22, -0.30], [-0.24, -0.22], [-0.08, -0.20]])
            wing[:, 0] += 0.04 * side
            die.poly(smooth(wing, 1), BODY - 0.1 + 0.03 * side)
            for k in range(3):
                die.lines([[-0.06, -0.28 + 0.02 * k], [-0.22 + 0.02 * k, -0.48 + 0.08 * k]], BODY - 0.2, 0.008, record=False)
    # head and neck
    die.circle([0.02, -0.43], 0.065, LIMB + 0.05)
    die.poly([[0.06, -0.44], [0.10, -0.42], [0.065, -0.40]], LIMB + 0.05)  # nose
    die.lines([[0.0, -0.38], [0.0, -0.32]], LIMB, 0.04)
    _headgear(die, headgear)
    # torso
    die.poly(smooth(np.array([[-0.10, -0.33], [0.10, -0.33], [0.09, -0.15], [0.07, -0.02], [-0.08, -0.02], [-0.10, -0.15]]), 1), BODY)
    if pose == "seated":
        die.poly(smooth(np.array([[-0.10, -0.04], [0.08, -0.04], [0.20, 0.04], [0.22, 0.14], [-0.12, 0.14]]), 1), BODY)
        die.poly(smooth(np.array([[0.12, 0.10], [0.22, 0.10], [0.24, 0.46], [0.12, 0.46]]), 1), BODY)
        die.ellipse([0.22, 0.48], [0.05, 0.02], BODY)
        for k in range(3):
            die.lines([[-0.04 + 0.07 * k, 0.0], [0.14 + 0.02 * k, 0.14 + 0.1 * k]], BODY - 0.15, 0.01, record=False)
    elif kind == "goddess":
        lean = 0.06 if pose == "walking" else 0.0
        robe = np.array([[-0.10, -0.05], [0.09, -0.05], [0.17 + lean, 0.48], [-0.17 - 2 * lean, 0.48 - lean]])
        die.poly(smooth(robe, 1), BODY)
        for k in range(4):
            x = -0.07 + 0.045 * k
            die.lines([[x, 0.0], [x * 1.6 + lean * (k - 1.5) * 0.3, 0.46]], BODY - 0.16, 0.011, record=False)
        die.ellipse([0.14 + lean, 0.495], [0.05, 0.018], BODY)
    else:
        stride = 0.12 if pose == "walking" else 0.05
        die.poly(smooth(np.array([[-0.11, -0.05], [0.10, -0.05], [0.13, 0.18], [-0.14, 0.18]]), 1), BODY)
        die.lines([[0.02, 0.16], [stride + 0.04, 0.49]], LIMB, 0.05)
        die.lines([[-0.04, 0.16], [-stride - 0.04, 0.49]], LIMB - 0.05, 0.05)
        die.ellipse([stride + 0.07, 0.5], [0.045, 0.016], LIMB)
        die.ellipse([-stride - 0.01, 0.5], [0.045, 0.016], LIMB)
        # cloak hanging behind
        die.poly(smooth(np.array([[-0.10, -0.32], [-0.16, -0.05], [-0.20, 0.25], [-0.12, 0.20], [-0.09, -0.1]]), 1), BODY - 0.05)
        die.lines([[-0.06, -0.02], [0.08, -0.02]], BODY - 0.15, 0.012, record=False)  # belt
    # arms: forward arm to the hand, back arm to the staff
    hand = (0.30, -0.16) if pose != "seated" else (0.30, -0.12)
    die.lines([[0.07, -0.30], [0.16, -0.20], [hand[0], hand[1]]], LIMB + 0.03, 0.042)
    staff_x, staff_y = -0.17, -0.12
    die.lines([[-0.07, -0.30], [-0.14, -0.22], [staff_x, staff_y]], LIMB + 0.03, 0.042)
    die.end()
    return hand, staff_x, staff_y


def _eagle(die: Die):
    die.poly(smooth(np.array([[-0.06, -0.20], [0.06, -0.20], [0.10, 0.10], [0.0, 0.25], [-0.10, 0.10]]), 1), BODY)
    for side in (-1, 1):
        wing = np.array([[0.0, -0.15], [0.22, -0.42], [0.40, -0.38], [0.34, -0.22],
                         [0.40, -0.14], [0.30, -0.04], [0.32, 0.06], [0.06, 0.05]])
        wing[:, 0] *= side
        die.poly(smooth(wing, 1), BODY - 0.08)
        for k in range(4):
            die.lines([[0.06 * side, -0.1 + 0.04 * k], [(0.30 - 0.02 * k) * side, -0.32 + 0.1 * k]], BODY - 0.2, 0.01, record=False)
    die.circle([0.05, -0.26], 0.06, LIMB)
    die.poly([[0.09, -0.28], [0.17, -0.24], [0.09, -0.22]], LIMB)
    die.poly([[-0.06, 0.22], [0.06, 0.22], [0.12, 0.40], [-0.12, 0.40]], BODY)  # tail
    die.lines([[-0.04, 0.18], [-0.06, 0.46]], LIMB, 0.025)
    die.lines([[0.04, 0.18], [0.06, 0.46]], LIMB, 0.025)
    return (0.16, -0.22)


def _pegasus(die: Die):
    die.ellipse([0.0, 0.10], [0.26, 0.11], BODY, n=24)
    die.poly(smooth(np.array([[0.16, 0.02], [0.26, -0.22], [0.36, -0.26], [0.42, -0.18], [0.32, -0.14], [0.25, 0.10]]), 1), BODY + 0.05)
    for (x0, y0), (x1, y1) in (((0.18, 0.15), (0.34, 0.0)), ((0.12, 0.16), (0.22, 0.30)),
                               ((-0.16, 0.16), (-0.22, 0.45)), ((-0.22, 0.14), (-0.12, 0.45))):
        die.lines([[x0, y0], [x1, y1]], LIMB, 0.035)
    die.poly(smooth(np.array([[-0.06, 0.0], [-0.20, -0.30], [-0.05, -0.45], [0.0, -0.30], [0.08, -0.35], [0.06, 0.0]]), 1), LIMB + 0.05)
    die.lines([[-0.25, 0.06], [-0.36, 0.20], [-0.34, 0.34]], BODY, 0.03)
    return None


def _altar(die: Die):
    die.poly([[-0.18, -0.05], [0.18, -0.05], [0.16, 0.38], [-0.16, 0.38]], BODY)
    die.poly([[-0.24, 0.38], [0.24, 0.38], [0.24, 0.46], [-0.24, 0.46]], BODY + 0.05)
    die.poly([[-0.22, -0.12], [0.22, -0.12], [0.22, -0.05], [-0.22, -0.05]], BODY + 0.05)
    die.lines([[-0.16, 0.05], [0.0, 0.15], [0.16, 0.05]], LIMB, 0.025)  # garland
    for x, hgt in ((-0.1, 0.18), (0.0, 0.28), (0.1, 0.2)):
        die.poly(smooth(np.array([[x - 0.05, -0.12], [x + 0.05, -0.12], [x + 0.01, -0.12 - hgt], [x - 0.02, -0.12 - hgt * 0.6]]), 1), LIMB)
    return None


def draw_reverse(die: Die, ric: RicType, *, rng: np.random.Generator, noise: float) -> None:
    d = ric.design
    disc = {k[0] if k[0] in ("figure", "legend", "exergue") else (k[0], k[1]) for k in ric.discriminative}
    j = lambda s: float(rng.normal(0.0, s * noise))  # noqa: E731
    kind, headgear, _, _ = FIGURES[d.figure]
    layout = figure_layout(d.field, rng=rng)
    die.push(dx=layout.dx + j(0.02), dy=layout.dy + j(0.015), scale=layout.scale + j(0.025), angle=j(1.5))
    figure_disc = "figure" in disc
    hand_point = None
    flip = d.facing < 0
    die.push(flip=flip)
    if kind in ("goddess", "male"):
        hand_point, staff_x, staff_y = _humanoid(die, kind, headgear, d.pose, figure_disc)
    else:
        die.begin("_figure", figure_disc)
        if kind == "eagle":
            hand_point = _eagle(die)
        elif kind == "pegasus":
            _pegasus(die)
        else:
            _altar(die)
        die.end()
    for element in die.elements:
        if element.word == "_figure":
            element.word = d.figure
    if d.staff:
        _staff(die, d.staff, staff_x, staff_y, ("staff", d.staff) in disc)
    if d.hand and hand_point is not None:
        _hand_attr(die, d.hand, hand_point[0], hand_point[1], ("hand", d.hand) in disc)
    die.pop()
    die.pop()
    for attribute, position in d.field:
        x, y = layout.field[position]
        _field_attr(die, attribute, x + j(0.012), y + j(0.012), ("field", attribute) in disc)
    # exergue line and mark
    die.lines([[-0.62, 0.56], [0.62, 0.56]], 0.6, 0.02, record=False)
    if d.exergue:
        exergue_text(die, d.exergue, rng=rng, discriminative="exergue" in disc)
    arc_legend(die, d.legend, rng=rng, span_deg=290.0 + j(8.0), radius=0.86 + j(0.006), discriminative="legend" in disc)
