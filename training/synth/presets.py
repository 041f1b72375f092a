"""The generator's configuration: one frozen dataclass and its named presets."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from denarius.engine.errors import ConfigError

__all__ = ["SynthConfig", "PRESETS", "make_config"]


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a synthetic dataset (the seed is passed separately).

    Attributes:
        n_emperors: number of emperors (emperor classes), >= 1.
        n_types: number of RIC types (RIC classes), >= n_emperors; each emperor owns >= 1.
        n_coins: number of coins (obverse/reverse pairs), >= n_types * min_coins_per_type.
        min_coins_per_type: every RIC type gets at least this many coins (k-fold needs k).
        min_size, max_size: stored image side in pixels, drawn per coin in [min_size, max_size].
        min_quality, max_quality: JPEG quality, drawn per image in that range.
        shared_reverse_fraction: fraction of RIC types that reuse (nearly) the reverse design
            of another emperor's type, so the reverse alone is ambiguous.
        variant_fraction: fraction of an emperor's types struck with another obverse variant
            (e.g. laureate instead of radiate).
        n_near_duplicates: pairs of types of one emperor whose reverse descriptions differ
            in exactly one word (the class-merging rule merges them); None = about 1 in 50 types.
        noise: multiplier of the per-coin nuisance variation (pose, lighting, wear, die
            differences); 0 gives clean renders, 1 the default difficulty.
    """

    n_emperors: int = 4
    n_types: int = 8
    n_coins: int = 64
    min_coins_per_type: int = 5
    min_size: int = 256
    max_size: int = 512
    min_quality: int = 70
    max_quality: int = 95
    shared_reverse_fraction: float = 0.25
    variant_fraction: float = 0.3
    n_near_duplicates: int | None = None
    noise: float = 1.0

    def __post_init__(self):
        problems = []
        for name in ("n_emperors", "n_types", "n_coins", "min_coins_per_type", "min_size", "max_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be an integer, got {value!r}")
        if problems:
            raise ConfigError("; ".join(problems))
        if self.n_emperors < 1:
            raise ConfigError(f"n_emperors must be at least 1, got {self.n_emperors}")
        if self.n_types < self.n_emperors:
            raise ConfigError(
                f"n_types ({self.n_types}) must be at least n_emperors ({self.n_emperors}): "
                "every emperor owns at least one RIC type"
            )
        if self.min_coins_per_type < 1:
            raise ConfigError(f"min_coins_per_type must be at least 1, got {self.min_coins_per_type}")
        if self.n_coins < self.n_types * self.min_coins_per_type:
            raise ConfigError(
                f"n_coins ({self.n_coins}) is fewer than n_types x min_coins_per_type "
                f"({self.n_types} x {self.min_coins_per_type} = {self.n_types * self.min_coins_per_type}); "
                "raise n_coins or lower n_types / min_coins_per_type"
            )
        if not 64 <= self.min_size <= self.max_size <= 2048:
            raise ConfigError(
                f"image size range must satisfy 64 <= min_size <= max_size <= 2048, "
                f"got {self.min_size}..{self.max_size}"
            )
        if not 1 <= self.min_quality <= self.max_quality <= 100:
            raise ConfigError(
                f"JPEG quality range must satisfy 1 <= min_quality <= max_quality <= 100, "
                f"got {self.min_quality}..{self.max_quality}"
            )
        for name in ("shared_reverse_fraction", "variant_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.noise <= 3.0:
            raise ConfigError(f"noise must be in [0, 3], got {self.noise}")
        if self.n_near_duplicates is not None:
            limit = max(0, self.n_types - self.n_emperors)
            if not 0 <= self.n_near_duplicates <= limit:
                raise ConfigError(
                    f"n_near_duplicates must be in [0, n_types - n_emperors = {limit}], "
                    f"got {self.n_near_duplicates}"
                )

    @property
    def near_duplicates(self) -> int:
        """Number of near-duplicate type pairs actually requested."""
        if self.n_near_duplicates is not None:
            return self.n_near_duplicates
        return min(max(1, round(self.n_types / 50)), max(0, self.n_types - self.n_emperors))


PRESETS: dict[str, SynthConfig] = {
    "tiny": SynthConfig(n_emperors=4, n_types=8, n_coins=64, min_coins_per_type=6, max_size=320),
    "small": SynthConfig(n_emperors=8, n_types=20, n_coins=240, min_coins_per_type=8),
    "bench": SynthConfig(n_emperors=24, n_types=80, n_coins=1600, min_coins_per_type=8),
    # The paper's collection: 96 emperors, 314 RIC labels, 4,526 coins.
    "paper": SynthConfig(n_emperors=96, n_types=314, n_coins=4526, min_coins_per_type=6),
}


def make_config(preset: str = "tiny", **overrides) -> SynthConfig:
    """A preset with some fields replaced.

    Raises:
        ConfigError: unknown preset, unknown field, or an out-of-range value.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown synth option(s) {unknown}; valid: {', '.join(sorted(known))}")
    overrides = {k: v for k, v in overrides.items() if v is not None or k == "n_near_duplicates"}
    try:
        return replace(PRESETS[preset], **overrides)
    except TypeError as error:  # pragma: no cover - guarded by the check above
        raise ConfigError(str(error)) from None
