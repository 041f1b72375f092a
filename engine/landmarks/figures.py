"""Small figure layouts with captions (OpenCV only): the epsilon sweep strip (paper Fig. 6),
the method comparison grid (paper Fig. 7) and guidebook pages.

In the engine because the guidebook pages are drawn both by ``landmarks-eval``
(``denarius.evaluation``) and by ``denarius guidebook`` for a bundle; no matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = ["grid", "write_png"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_block(text: str, width: int, height: int, *, scale: float = 0.4) -> np.ndarray:
    block = np.full((height, width, 3), 255, np.uint8)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        # shrink long captions to fit the tile
        s = scale
        while s > 0.2 and cv2.getTextSize(line, _FONT, s, 1)[0][0] > width - 4:
            s -= 0.05
        cv2.putText(block, line, (2, 12 + 14 * i), _FONT, s, (0, 0, 0), 1, cv2.LINE_AA)
    return block


def grid(
    tiles: Sequence[Sequence[np.ndarray]],
    *,
    captions: Sequence[Sequence[str]] | None = None,
    column_titles: Sequence[str] | None = None,
    tile_size: int = 160,
    gap: int = 4,
) -> np.ndarray:
    """Lay out rows of (h, w, 3) uint8 RGB tiles, each resized to tile_size, with captions.

    Returns:
        (H, W, 3) uint8 RGB on white.
    """
    rows = [list(row) for row in tiles]
    ncols = max((len(r) for r in rows), default=0)
    caption_lines = max((c.count("\n") + 1 for row in (captions or []) for c in row), default=0)
    caption_h = 14 * caption_lines + 4 if caption_lines else 0
    title_h = 18 if column_titles else 0
    cell_w, cell_h = tile_size + gap, tile_size + caption_h + gap
    canvas = np.full((title_h + max(1, len(rows)) * cell_h + gap, max(1, ncols) * cell_w + gap, 3), 255, np.uint8)
    if column_titles:
        for c, title in enumerate(column_titles[:ncols]):
            canvas[gap : gap + title_h - 2, gap + c * cell_w : gap + c * cell_w + tile_size] = _text_block(title, tile_size, title_h - 2)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y = title_h + gap + r * cell_h
            x = gap + c * cell_w
            tile = np.asarray(tile, np.uint8)
            interpolation = cv2.INTER_NEAREST if tile.shape[0] < tile_size else cv2.INTER_AREA
            canvas[y : y + tile_size, x : x + tile_size] = cv2.resize(tile, (tile_size, tile_size), interpolation=interpolation)
            if captions and caption_h:
                text = captions[r][c] if c < len(captions[r]) else ""
                canvas[y + tile_size : y + tile_size + caption_h, x : x + tile_size] = _text_block(text, tile_size, caption_h)
    return canvas


def write_png(path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
