"""Physical specimens for the watchlist: one coin photographed again, and its die-mates.

A *die* is fixed by (type, die index): both sides' height maps come from generators seeded
by the type's ``die_seed`` and the die index alone, so every coin struck from it carries the
identical design. A *specimen* is fixed by (seed, type, die, specimen index): its flan
outline, metal, patina, wear, scratches and pits, and where the die met the flan (die
rotation, off-centre strike). A *photo* of it is fixed by (..., photo index): light, the
coin's turn in the frame, scale and framing, background, white balance, defocus, noise and
JPEG quality. Photo 0 is the listing photo (upright); photos >= 1 are re-photographs at any
turn, with a wider scale and JPEG-quality range.

Specimens of one die are the watchlist's hard negatives: same type, same design, same die
marks; only the flan, the die position on it and the wear and patina differ.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from denarius.training.synth.catalogue import Catalogue
from denarius.training.synth.coin import _beads, _Mixed
from denarius.training.synth.portrait import draw_obverse
from denarius.training.synth.relief import Die
from denarius.training.synth.render import CoinLook, StruckSide, photograph_side, sample_look, strike_side
from denarius.training.synth.reverse import draw_reverse

__all__ = ["SpecimenKey", "SpecimenPhotographer"]

_SIDES = ("obverse", "reverse")
_SPECIMEN_STREAM = 0x5BEC  # keeps specimen generators apart from render_coin's (seed, coin) streams


@dataclass(frozen=True, order=True)
class SpecimenKey:
    """Which physical coin: RIC type index, die index within the type, specimen index within the die."""

    type_index: int
    die: int
    specimen: int

    @property
    def die_id(self) -> str:
        return f"t{self.type_index:03d}-d{self.die:02d}"

    @property
    def specimen_id(self) -> str:
        return f"{self.die_id}-s{self.specimen:04d}"


class SpecimenPhotographer:
    """Draws dies, strikes specimens and photographs them; reproducible from the seeds alone.

    Dies are cached (the last ``cache_dies`` (type, die) pairs), so photograph the
    specimens of one die together.

    Args:
        catalogue: the types (``build_catalogue(config, catalogue_seed)``).
        config: a :class:`~denarius.training.synth.presets.SynthConfig` (sizes, JPEG range, noise).
        seed: the specimen seed; another seed strikes other specimens from the same dies.
    """

    def __init__(self, catalogue: Catalogue, config, *, seed: int, cache_dies: int = 8):
        self.catalogue, self.config, self.seed = catalogue, config, int(seed)
        self._dies: OrderedDict[tuple[int, int], dict] = OrderedDict()
        self._cache_dies = cache_dies
        self._struck: tuple[SpecimenKey, dict, CoinLook] | None = None

    def die(self, type_index: int, die: int) -> dict:
        """Both sides' dies: {side: (relief (CANVAS, CANVAS) float32, elements)}."""
        key = (int(type_index), int(die))
        if key in self._dies:
            self._dies.move_to_end(key)
            return self._dies[key]
        ric = self.catalogue.types[type_index]
        emperor = self.catalogue.emperors[ric.emperor]
        sides = {}
        for side_index, side in enumerate(_SIDES, start=1):
            # both parts of the jitter come from the die: every strike shows the same design
            rng = _Mixed(
                np.random.default_rng([ric.die_seed, side_index, _SPECIMEN_STREAM, die, 0]),
                np.random.default_rng([ric.die_seed, side_index, _SPECIMEN_STREAM, die, 1]),
            )
            drawn = Die()
            if side == "obverse":
                draw_obverse(drawn, emperor, crown=ric.crown, bust=ric.bust, rng=rng, noise=self.config.noise)
            else:
                draw_reverse(drawn, ric, rng=rng, noise=self.config.noise)
            _beads(drawn, np.random.default_rng([ric.die_seed, side_index, _SPECIMEN_STREAM, die, 2]))
            sides[side] = (drawn.h, drawn.elements)
        self._dies[key] = sides
        while len(self._dies) > self._cache_dies:
            self._dies.popitem(last=False)
        return sides

    def strike(self, key: SpecimenKey) -> tuple[dict[str, StruckSide], CoinLook]:
        """The specimen's two struck sides and its physical look (flan, metal, patina, wear)."""
        if self._struck is not None and self._struck[0] == key:
            return self._struck[1], self._struck[2]
        dies = self.die(key.type_index, key.die)
        base = [self.seed, _SPECIMEN_STREAM, key.type_index, key.die, key.specimen]
        cfg = self.config
        look = sample_look(np.random.default_rng([*base, 0]), min_size=cfg.min_size, max_size=cfg.max_size, noise=cfg.noise)
        struck = {
            side: strike_side(dies[side][0], look=look, rng=np.random.default_rng([*base, i]), noise=cfg.noise)
            for i, side in enumerate(_SIDES, start=1)
        }
        self._struck = (key, struck, look)
        return struck, look

    def photograph(self, key: SpecimenKey, photo: int = 0) -> dict:
        """Photograph both sides of a specimen.

        Returns:
            {"obverse": (jpeg bytes, (W, H), regions), "reverse": (...)} as
            :func:`~denarius.training.synth.coin.render_coin` returns.
        """
        struck, physical = self.strike(key)
        dies = self.die(key.type_index, key.die)
        cfg = self.config
        base = [self.seed, _SPECIMEN_STREAM, key.type_index, key.die, key.specimen, 100 + int(photo)]
        session = np.random.default_rng([*base, 0])
        shot = sample_look(session, min_size=cfg.min_size, max_size=cfg.max_size, noise=cfg.noise)
        look = replace(
            physical,
            background=shot.background,
            bg_color=shot.bg_color,
            # another session lights the coin from about the same side (top left); light from
            # the opposite side inverts the relief's shading, which no local feature survives
            light_azimuth=physical.light_azimuth if photo == 0 else physical.light_azimuth + float(session.normal(0, 25)),
            light_elevation=shot.light_elevation,
            size=shot.size,
            # a re-photograph frames the coin anywhere from loose to a tight crop
            coin_fill=shot.coin_fill if photo == 0 else float(session.uniform(0.55, 0.97)),
            tint=shot.tint,
        )
        low_quality = cfg.min_quality if photo == 0 else max(30, cfg.min_quality - 25)
        out = {}
        for i, side in enumerate(_SIDES, start=1):
            rng = np.random.default_rng([*base, i])
            turn = 0.0 if photo == 0 else float(rng.uniform(-180.0, 180.0))
            quality = int(rng.integers(low_quality, cfg.max_quality + 1))
            out[side] = photograph_side(
                struck[side], dies[side][1], look=look, rng=rng, noise=cfg.noise, quality=quality, turn=turn
            )
        return out
