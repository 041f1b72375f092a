"""Figure layouts of the landmark evaluation: :mod:`denarius.engine.landmarks.figures`
(the one implementation; the class guidebooks of a bundle are drawn with it too)."""

from __future__ import annotations

from denarius.engine.landmarks.figures import grid, write_png

__all__ = ["grid", "write_png"]
