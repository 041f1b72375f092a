"""One coin: both dies drawn, both sides photographed, from (seed, coin index) alone."""

from __future__ import annotations

import numpy as np

from denarius.training.synth.catalogue import Catalogue
from denarius.training.synth.portrait import draw_obverse
from denarius.training.synth.relief import Die
from denarius.training.synth.render import render_side, sample_look
from denarius.training.synth.reverse import draw_reverse

__all__ = ["render_coin"]


def render_coin(catalogue: Catalogue, type_index: int, *, seed: int, coin_index: int, config) -> dict:
    """Render coin ``coin_index`` of RIC type ``type_index``.

    Everything random comes from generators seeded with (seed, coin_index[, side]), so the
    result does not depend on which worker renders it or in which order.

    Returns:
        {"obverse": (jpeg bytes, (W, H), regions), "reverse": (...)}.
    """
    ric = catalogue.types[type_index]
    emperor = catalogue.emperors[ric.emperor]
    noise = config.noise
    coin_rng = np.random.default_rng([seed, coin_index, 0])
    look = sample_look(coin_rng, min_size=config.min_size, max_size=config.max_size, noise=noise)
    out = {}
    for side_index, side in enumerate(("obverse", "reverse"), start=1):
        # die geometry: mostly the type's die, plus the coin's own die-to-die jitter
        die_rng = np.random.default_rng([ric.die_seed, side_index, int(coin_rng.integers(3))])
        rng = np.random.default_rng([seed, coin_index, side_index])
        die = Die()
        if side == "obverse":
            draw_obverse(die, emperor, crown=ric.crown, bust=ric.bust, rng=_Mixed(die_rng, rng), noise=noise)
        else:
            draw_reverse(die, ric, rng=_Mixed(die_rng, rng), noise=noise)
        _beads(die, rng)
        quality = int(rng.integers(config.min_quality, config.max_quality + 1))
        out[side] = render_side(die.h, die.elements, look=look, rng=rng, noise=noise, quality=quality)
    return out


def _beads(die: Die, rng: np.random.Generator):
    """Beaded border just inside the die's edge (not a described element)."""
    n = int(rng.integers(70, 95))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    die.dots(np.stack([0.955 * np.cos(t), 0.955 * np.sin(t)], 1), 0.016, 0.55, record=False)


class _Mixed:
    """A generator view whose ``normal`` (die jitter) mixes a per-die and a per-coin part
    while every other draw (fonts, hair texture) comes from the die, so coins struck from
    one die look alike and dies of one type differ slightly."""

    def __init__(self, die_rng: np.random.Generator, coin_rng: np.random.Generator):
        self._die, self._coin = die_rng, coin_rng

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._die.normal(loc, scale * 0.8, size) + self._coin.normal(0.0, scale * 0.6, size)

    def __getattr__(self, name):
        return getattr(self._die, name)
