"""Contact sheets: a grid of labelled image tiles in one PNG, for people to look at."""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from denarius.engine.atomic_write import write_atomic

__all__ = ["contact_sheet", "letterbox", "wrap_text", "write_png"]


def letterbox(image: np.ndarray, tile: int) -> np.ndarray:
    """Fit (H, W, 3) uint8 into a white (tile, tile, 3) square, aspect kept, centred."""
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    out = np.full((tile, tile, 3), 255, np.uint8)
    top, left = (tile - resized.shape[0]) // 2, (tile - resized.shape[1]) // 2
    out[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return out


def wrap_text(text: str, width_px: int, scale: float) -> list[str]:
    """Split ``text`` into lines at most ``width_px`` wide in cv2.FONT_HERSHEY_SIMPLEX at ``scale``."""
    lines, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width_px and current:
            lines.append(current)
            current = word
        else:
            current = candidate
    return lines + ([current] if current else [])


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray]],
    captions: Sequence[str] = (),
    *,
    tile: int = 160,
    caption_lines: int = 3,
) -> np.ndarray:
    """Lay out rows of images with one caption under each row.

    Args:
        rows: each row a sequence of (H, W, 3) uint8 RGB images (e.g. obverse, reverse).
        captions: one text per row (wrapped, at most ``caption_lines`` lines).
    Returns:
        (H, W, 3) uint8 RGB sheet; rows are packed side by side in a roughly square grid.
    """
    if not rows:
        return np.full((tile, tile, 3), 255, np.uint8)
    per_row = max(len(r) for r in rows)
    scale, line_px = 0.38, 14
    cell_w, cell_h = per_row * tile + 8, tile + caption_lines * line_px + 10
    columns = max(1, int(np.ceil(np.sqrt(len(rows) * cell_h / cell_w))))
    grid_rows = int(np.ceil(len(rows) / columns))
    sheet = np.full((grid_rows * cell_h, columns * cell_w, 3), 255, np.uint8)
    for index, images in enumerate(rows):
        top, left = (index // columns) * cell_h, (index % columns) * cell_w
        for j, image in enumerate(images):
            sheet[top + 4 : top + 4 + tile, left + 4 + j * tile : left + 4 + (j + 1) * tile] = letterbox(image, tile)
        text = captions[index] if index < len(captions) else ""
        for k, line in enumerate(wrap_text(text, cell_w - 8, scale)[:caption_lines]):
            origin = (left + 4, top + tile + 16 + k * line_px)
            cv2.putText(sheet, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return sheet


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB as PNG (deterministic bytes for identical pixels)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    write_atomic(path, data.tobytes())
