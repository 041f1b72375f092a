"""Synthetic Roman imperial coins with ground-truth landmarks (``denarius synth``).

Public API::

    from denarius.training.synth import generate, SynthConfig, PRESETS
    summary = generate("data/synth-tiny", preset="tiny", seed=1)

Modules: ``presets`` (the config), ``catalogue`` (emperors, RIC types, descriptions),
``relief`` (the die height map), ``layout`` (where a die puts its design),
``portrait`` / ``reverse`` / ``legend`` (what is drawn),
``render`` (from height map to photograph), ``coin`` (one coin), ``writer`` (the dataset).
"""

from denarius.training.synth.presets import PRESETS, SynthConfig, make_config
from denarius.training.synth.writer import SynthSummary, generate

__all__ = ["generate", "SynthConfig", "SynthSummary", "PRESETS", "make_config"]
