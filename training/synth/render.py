"""From a die's height map to a photograph of a struck coin, and landmark polygons.

Pipeline (all float32, height-map canvas ``CANVAS`` px, then the stored image):

1. relief: the die's sharp levels are rounded (two blur scales), rotated by the die
   rotation and shifted by the off-centre strike;
2. flan: an irregular disc; the design is cut off where it leaves the flan;
3. wear softens and lowers high relief (more on one side), scratches and pits are cut;
4. shading: normals from Sobel gradients, one directional light (diffuse + specular);
5. metal: silver / bronze / gold / billon albedo with low-frequency patina, dirt in the
   recesses and polished high points;
6. photo: scaled and placed in a frame of 256-512 px on white / black / grey / cloth /
   gradient backgrounds with a soft shadow, slight defocus and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from denarius.training.synth.relief import CANVAS, DIE_RADIUS, Element

__all__ = ["CoinLook", "StruckSide", "sample_look", "render_side", "strike_side", "photograph_side", "clip_polygon"]

METALS = {  # BGR albedo, specular tint, patina colours (BGR)
    "silver": ((0.66, 0.67, 0.68), (1.0, 1.0, 1.0), ((0.22, 0.24, 0.26), (0.22, 0.34, 0.45), (0.35, 0.33, 0.30))),
    "billon": ((0.42, 0.50, 0.56), (0.9, 0.92, 0.95), ((0.12, 0.20, 0.30), (0.22, 0.28, 0.26), (0.10, 0.16, 0.26))),
    "bronze": ((0.22, 0.38, 0.58), (0.70, 0.85, 1.0), ((0.20, 0.32, 0.22), (0.10, 0.18, 0.30), (0.32, 0.45, 0.30))),
    "gold": ((0.28, 0.56, 0.76), (0.60, 0.85, 1.0), ((0.18, 0.40, 0.56), (0.16, 0.34, 0.50), (0.22, 0.46, 0.64))),
}
CLOTHS = ((0.35, 0.15, 0.10), (0.12, 0.30, 0.12), (0.12, 0.10, 0.35), (0.55, 0.68, 0.75), (0.08, 0.08, 0.08), (0.45, 0.45, 0.45))


@dataclass(frozen=True)
class CoinLook:
    """What both photos of one coin share (one physical coin, one photo session)."""

    metal: str
    patina: float  # 0 clean .. 1 heavy
    patina_seed: int
    wear: float  # 0 fresh .. 1 worn flat
    flan_radius: float  # in die radii
    flan_harmonics: tuple  # ((k, amplitude, phase), ...)
    background: str  # white / black / grey / cloth / gradient
    bg_color: tuple
    light_azimuth: float  # degrees, image coordinates (0 = from the right, -90 = from the top)
    light_elevation: float
    size: tuple  # (width, height) of the stored image
    coin_fill: float  # coin diameter / image side
    tint: tuple  # white balance gains (B, G, R)


def sample_look(rng: np.random.Generator, *, min_size: int, max_size: int, noise: float) -> CoinLook:
    metal = str(rng.choice(list(METALS), p=(0.3, 0.3, 0.3, 0.1)))
    side = int(rng.integers(min_size, max_size + 1))
    aspect = 1.0 + float(rng.uniform(-0.05, 0.05)) * min(noise, 1.0)
    background = str(rng.choice(["white", "black", "grey", "cloth", "gradient"], p=(0.35, 0.2, 0.15, 0.2, 0.1)))
    if background == "white":
        bg = tuple(float(v) for v in rng.uniform(0.88, 1.0) * np.ones(3))
    elif background == "black":
        bg = tuple(float(v) for v in rng.uniform(0.0, 0.1) * np.ones(3))
    elif background == "grey":
        bg = tuple(float(v) for v in rng.uniform(0.35, 0.7) * np.ones(3))
    else:
        bg = tuple(float(v) for v in CLOTHS[int(rng.integers(len(CLOTHS)))])
    harmonics = tuple((k, float(rng.uniform(0.0, 0.018)) * min(noise, 1.5), float(rng.uniform(0, 2 * np.pi))) for k in range(2, 7))
    return CoinLook(
        metal=metal,
        patina=float(np.clip(rng.beta(2, 2) * (0.4 + 0.6 * min(noise, 1.0)), 0, 1)),
        patina_seed=int(rng.integers(2**31)),
        wear=float(np.clip(rng.beta(2, 3) * min(noise, 1.5), 0, 1)),
        flan_radius=float(rng.uniform(0.97, 1.10)),
        flan_harmonics=harmonics,
        background=background,
        bg_color=bg,
        light_azimuth=float(-135 + rng.normal(0, 30) * noise),
        light_elevation=float(np.clip(rng.normal(45, 10 * noise), 20, 75)),
        size=(side, int(np.clip(round(side * aspect), min_size, max_size))),
        coin_fill=float(rng.uniform(0.80, 0.95)),
        tint=_white_balance(float(rng.normal(0, 0.04 * noise))),
    )


def _white_balance(temperature: float) -> tuple:
    """BGR gains of a photo's colour temperature: warm (> 0) or cool (< 0), no magenta cast."""
    return (1.0 - temperature, 1.0 - 0.1 * abs(temperature), 1.0 + temperature)


def _lowfreq(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise in about [0, 1], (H, W) float32."""
    small = rng.random((cells, cells), dtype=np.float32)
    small = (small - small.min()) / max(float(small.max() - small.min()), 1e-6)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run at a quarter of the resolution (same look, 10x faster)."""
    if sigma < 3.0:
        return cv2.GaussianBlur(x, (0, 0), sigma)
    h, w = x.shape[:2]
    small = cv2.resize(x, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _flan_polygon(look: CoinLook) -> np.ndarray:
    """Flan outline (64, 2) float32 in canvas pixels around the canvas centre."""
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = np.ones_like(t)
    for k, amp, phase in look.flan_harmonics:
        r += amp * np.cos(k * t + phase)
    r *= look.flan_radius * DIE_RADIUS
    c = (CANVAS - 1) / 2.0
    return np.stack([c + r * np.cos(t), c + r * np.sin(t)], 1).astype(np.float32)


def clip_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: ``subject`` (K, 2) clipped by the convex polygon ``clip`` (M, 2).

    Works for concave subjects (their clipped outline may contain zero-width bridges)."""
    # orient the clip polygon counter-clockwise in the usual y-up sense of the cross product
    area = np.sum(clip[:, 0] * np.roll(clip[:, 1], -1) - np.roll(clip[:, 0], -1) * clip[:, 1])
    if area < 0:
        clip = clip[::-1]
    out = [tuple(p) for p in subject]
    for i in range(len(clip)):
        if not out:
            break
        a, b = clip[i], clip[(i + 1) % len(clip)]
        ex, ey = b[0] - a[0], b[1] - a[1]

        # the edge (a, ex, ey) is bound explicitly (B023): both helpers are used in this iteration only
        def inside(p, a=a, ex=ex, ey=ey):
            return ex * (p[1] - a[1]) - ey * (p[0] - a[0]) >= 0

        def cross(p, q, a=a, ex=ex, ey=ey):
            dx, dy = q[0] - p[0], q[1] - p[1]
            den = ex * dy - ey * dx
            if abs(den) < 1e-12:
                return p
            s = (ey * (p[0] - a[0]) - ex * (p[1] - a[1])) / den
            return (p[0] + s * dx, p[1] + s * dy)

        src, out = out, []
        for k in range(len(src)):
            p, q = src[k], src[(k + 1) % len(src)]
            if inside(q):
                if not inside(p):
                    out.append(cross(p, q))
                out.append(q)
            elif inside(p):
                out.append(cross(p, q))
    return np.array(out, np.float64).reshape(-1, 2)


def _background(look: CoinLook, rng: np.random.Generator, shape: tuple[int, int], noise: float) -> np.ndarray:
    h, w = shape
    base = np.array(look.bg_color, np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    if look.background == "cloth":
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        period = float(rng.uniform(2.5, 5.0))
        angle = float(rng.uniform(0, np.pi))
        u = x * np.cos(angle) + y * np.sin(angle)
        v = -x * np.sin(angle) + y * np.cos(angle)
        weave = 0.5 + 0.25 * np.sin(u * 2 * np.pi / period) * np.sin(v * 2 * np.pi / period)
        fibres = _noise(rng, (h, w)) * 0.6
        tex = 0.8 + 0.25 * weave + 0.12 * fibres + 0.2 * (_lowfreq(rng, (h, w), 4) - 0.5)
        img *= tex[:, :, None]
    elif look.background == "gradient":
        g = _lowfreq(rng, (h, w), 2)
        img = np.repeat((0.25 + 0.7 * g)[:, :, None], 3, axis=2) * (0.6 + 0.4 * base)
    else:
        vignette = 1.0 - 0.12 * (_lowfreq(rng, (h, w), 3) - 0.5)
        img *= vignette[:, :, None]
    return img


def _noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Blurred-ish unit noise (H, W) float32, drawn at half resolution (4x fewer draws)."""
    h, w = shape
    small = rng.standard_normal(((h + 1) // 2, (w + 1) // 2), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def render_side(
    relief: np.ndarray, elements: list[Element], *, look: CoinLook, rng: np.random.Generator, noise: float, quality: int
) -> tuple[bytes, tuple[int, int], list[dict]]:
    """Photograph one side.

    Args:
        relief: (CANVAS, CANVAS) float32 die height map (0 field .. ~1.2 highest relief).
        elements: described elements with outlines in canvas pixels.
    Returns:
        (JPEG bytes, (width, height), regions) with ``regions`` =
        [{"word", "discriminative", "polygon": [[x, y], ...]}] in stored-image pixels.
    """
    struck = strike_side(relief, look=look, rng=rng, noise=noise)
    return photograph_side(struck, elements, look=look, rng=rng, noise=noise, quality=quality)


@dataclass(frozen=True)
class StruckSide:
    """One side of one physical coin: the die struck on its flan, worn and marked.

    Attributes:
        height: (CANVAS, CANVAS) float32 height map of the coin (0 field .. ~1.2).
        mask: (CANVAS, CANVAS) float32 flan mask in [0, 1].
        m1: (2, 3) float64 die -> coin map (die rotation and off-centre strike).
        flan_px: (64, 2) int32 flan outline in canvas pixels, 4 fractional bits.
    """

    height: np.ndarray
    mask: np.ndarray
    m1: np.ndarray
    flan_px: np.ndarray


def strike_side(relief: np.ndarray, *, look: CoinLook, rng: np.random.Generator, noise: float) -> StruckSide:
    """Strike a die on the look's flan: what every photograph of this specimen shares.

    The die position on the flan (rotation, off-centre strike), the wear map, scratches
    and pits are drawn from ``rng``; the flan outline, wear and patina amounts from ``look``.
    """
    N = CANVAS
    c = (N - 1) / 2.0
    # 1. relief is modelled, not flat: rounded edges plus a dome that rises with the
    #    distance from the design's outline; then die rotation and off-centre strike
    inside = (relief > 0.3).astype(np.uint8)
    dome = np.sqrt(np.minimum(cv2.distanceTransform(inside, cv2.DIST_L2, 3) * (1.0 / 14.0), 1.0))
    h = 0.45 * cv2.GaussianBlur(relief, (0, 0), 1.0) + 0.3 * cv2.GaussianBlur(relief, (0, 0), 2.5) + 0.35 * dome
    rotation = float(rng.normal(0, 3.0 * noise))
    off = rng.normal(0, 0.035 * noise, 2) * DIE_RADIUS
    m1 = cv2.getRotationMatrix2D((c, c), rotation, 1.0)
    m1[:, 2] += off
    h = cv2.warpAffine(h, m1, (N, N), flags=cv2.INTER_LINEAR, borderValue=0)

    # 2. flan: the design exists only where the die met metal
    flan = _flan_polygon(look)
    flan_px = np.round(flan * 16).astype(np.int32)
    mask = np.zeros((N, N), np.float32)
    cv2.fillPoly(mask, [flan_px], 1.0, cv2.LINE_AA, 4)
    edge = _blur(mask, 3.0)
    inner = cv2.GaussianBlur(cv2.erode(mask, np.ones((7, 7), np.uint8)), (0, 0), 2.0)
    height = 0.35 * edge + h * inner

    # 3. wear (stronger on one side), scratches, pits, porosity
    wear_map = _lowfreq(rng, (N, N), 3) * np.float32(look.wear)
    soft = cv2.GaussianBlur(height, (0, 0), 2.5)
    height = height + 0.6 * wear_map * (soft - height)
    height -= 0.5 * wear_map * np.maximum(height - 0.75, 0)
    marks = np.zeros((N, N), np.float32)
    for _ in range(int(rng.poisson(1.5 * noise))):
        p0 = rng.uniform(0.2, 0.8, 2) * N
        p1 = p0 + rng.normal(0, 0.25, 2) * N
        cv2.line(marks, tuple(int(v) for v in p0), tuple(int(v) for v in p1), float(rng.uniform(0.05, 0.15)), 1)
    for _ in range(int(rng.poisson(25 * noise * (0.3 + look.patina)))):
        p = rng.uniform(0.15, 0.85, 2) * N
        cv2.circle(marks, (int(p[0]), int(p[1])), int(rng.integers(1, 4)), float(rng.uniform(0.03, 0.12)), -1)
    height -= cv2.GaussianBlur(marks, (0, 0), 0.6) * inner
    height += np.float32(0.012 * (0.5 + look.patina)) * _noise(rng, (N, N)) * mask
    return StruckSide(height=height, mask=mask, m1=m1, flan_px=flan_px)


def photograph_side(
    struck: StruckSide,
    elements: list[Element],
    *,
    look: CoinLook,
    rng: np.random.Generator,
    noise: float,
    quality: int,
    turn: float = 0.0,
) -> tuple[bytes, tuple[int, int], list[dict]]:
    """Photograph a struck side: light, patina colours, framing, background, JPEG.

    Args:
        turn: the coin's rotation in the photo, degrees counter-clockwise on screen; the
            light turns with it (``look.light_azimuth`` is measured on the coin), as when
            a coin lit the usual way is photographed or scanned at another angle.
    Returns:
        as :func:`render_side`.
    """
    N = CANVAS
    c = (N - 1) / 2.0
    height, mask, m1, flan_px = struck.height, struck.mask, struck.m1, struck.flan_px
    # 4. shading: normals from the gradient, one directional light
    k = np.float32(13.0 / 8.0)
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=k)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=k)
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    # the light as the coin sees it; the photo (and the shadow it casts) is turned with the coin
    az = float(np.deg2rad(look.light_azimuth + rng.normal(0, 5 * noise)))
    az_photo = az - float(np.deg2rad(turn))
    el = float(np.deg2rad(look.light_elevation))
    L = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], np.float32)
    Hv = L + np.array([0, 0, 1], np.float32)
    Hv /= np.linalg.norm(Hv)
    diffuse = np.maximum((L[2] - gx * L[0] - gy * L[1]) * inv, 0)
    spec = np.maximum((Hv[2] - gx * Hv[0] - gy * Hv[1]) * inv, 0)
    spec *= spec  # ^2
    spec *= spec  # ^4
    spec = spec * spec * spec * spec * spec * spec  # ^24

    # 5. metal: albedo, patina patches, dirt in recesses, polished high points
    albedo, spec_tint, patinas = METALS[look.metal]
    prng = np.random.default_rng(look.patina_seed)
    pat = _lowfreq(prng, (N, N), 6) * 0.7 + _lowfreq(prng, (N, N), 14) * 0.3
    pat_amount = np.clip((pat - (1 - look.patina)) * 2.5, 0, 1) * np.float32(look.patina)
    patina_color = patinas[int(prng.integers(len(patinas)))]
    local = _blur(height, 6.0)
    recess = np.clip((local - height) * 3.0, 0, 1)
    high = np.clip((height - local) * 3.0, 0, 1)
    dirt = np.clip(pat_amount + recess * np.float32(0.3 + look.patina), 0, 1)
    shade = (0.12 + 1.05 * diffuse) * (1 - 0.45 * recess) * (0.85 + 0.3 * _lowfreq(prng, (N, N), 24))
    gloss = spec * (np.float32(0.35 + 0.8 * (1 - look.patina)) * (1 - 0.7 * pat_amount) * (0.5 + 0.8 * high))
    tint = look.tint
    coin = np.empty((N, N, 4), np.float32)
    for ch in range(3):
        a = albedo[ch] + (patina_color[ch] - albedo[ch]) * dirt
        coin[:, :, ch] = (a * shade + gloss * spec_tint[ch]) * tint[ch]
    coin[:, :, 3] = cv2.GaussianBlur(mask, (0, 0), 0.7)

    # 6. photo: scale into the frame (pre-blur against aliasing plus defocus), background,
    #    soft shadow away from the light, sensor noise, JPEG
    W, Hh = look.size
    fill = look.coin_fill * (1 + rng.normal(0, 0.02 * noise))
    scale = fill * min(W, Hh) / (2.0 * look.flan_radius * DIE_RADIUS * 1.03)
    cx = W / 2.0 + rng.normal(0, 0.02 * noise) * W
    cy = Hh / 2.0 + rng.normal(0, 0.02 * noise) * Hh
    if turn:
        # OpenCV's positive angle turns counter-clockwise on screen (about the canvas centre)
        m2 = cv2.getRotationMatrix2D((c, c), float(turn), scale)
        m2[:, 2] += (cx - c, cy - c)
    else:
        m2 = np.array([[scale, 0, cx - scale * c], [0, scale, cy - scale * c]], np.float64)
    defocus = float(rng.uniform(0.2, 0.9)) * noise  # in output pixels
    sigma = np.sqrt((0.45 / scale) ** 2 * (scale < 1.0) + (defocus / scale) ** 2)
    if sigma > 0.3:
        coin = cv2.GaussianBlur(coin, (0, 0), sigma)
    coin = cv2.warpAffine(coin, m2, (W, Hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = coin[:, :, 3:4]
    bg = _background(look, rng, (Hh, W), noise)
    shift = np.array([-np.cos(az_photo), -np.sin(az_photo)]) * min(W, Hh) * rng.uniform(0.01, 0.035)
    shadow = _blur(cv2.warpAffine(coin[:, :, 3], np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (W, Hh)), min(W, Hh) * 0.02)
    darkness = float(rng.uniform(0.25, 0.55)) if look.background != "black" else 0.1
    bg *= (1 - darkness * shadow)[:, :, None]
    img = bg + (coin[:, :, :3] - bg) * alpha
    img += (_noise(rng, (Hh, W)) * np.float32(0.008 * noise))[:, :, None]
    img8 = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", img8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes(), (W, Hh), _regions(elements, m1=m1, m2=m2, flan_px=flan_px, size=(W, Hh))


def _regions(elements: list[Element], *, m1: np.ndarray, m2: np.ndarray, flan_px: np.ndarray, size: tuple[int, int]) -> list[dict]:
    """Landmark polygons: element outline -> struck die (m1) -> visible part on the flan
    (rasterised, largest connected piece) -> stored image (m2), clipped to the frame."""
    N = CANVAS
    W, Hh = size
    flan_mask = np.zeros((N, N), np.uint8)
    cv2.fillPoly(flan_mask, [flan_px], 255, cv2.LINE_8, 4)
    scratch = np.zeros((N, N), np.uint8)
    regions = []
    for element in elements:
        if element.polygon is not None:
            outline = element.polygon.astype(np.float64)
        elif element.points:
            outline = cv2.convexHull(np.concatenate(element.points).astype(np.float32)).reshape(-1, 2).astype(np.float64)
        else:
            continue
        outline = outline @ m1[:, :2].T + m1[:, 2]
        scratch[:] = 0
        cv2.fillPoly(scratch, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
        cv2.bitwise_and(scratch, flan_mask, dst=scratch)
        contours, _ = cv2.findContours(scratch, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        contour = max(contours, key=cv2.contourArea)
        contour = cv2.approxPolyDP(contour, 0.8, True).reshape(-1, 2).astype(np.float64)
        if len(contour) < 3:
            continue
        pts = contour @ m2[:, :2].T + m2[:, 2]
        if pts.min() < 0 or pts[:, 0].max() > W - 1 or pts[:, 1].max() > Hh - 1:
            pts = clip_polygon(pts, np.array([[0, 0], [W - 1, 0], [W - 1, Hh - 1], [0, Hh - 1]], np.float64))
        if len(pts) < 3 or abs(cv2.contourArea(pts.astype(np.float32))) < 4.0:
            continue
        pts = np.clip(np.round(pts, 1), 0, [W - 1, Hh - 1])
        regions.append({"word": element.word, "discriminative": bool(element.discriminative), "polygon": pts.tolist()})
    return regions
