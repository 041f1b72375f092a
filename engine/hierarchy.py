"""The emperor -> RIC tree and the paper's hierarchical combination.

Every RIC label (leaf) belongs to exactly one emperor (parent). For a coin pair the joint
score of leaf r is::

    score(r) = p(e | obverse) * p(r | reverse) * [parent(r) = e]

so only the emperor that owns r contributes (Kim & Pavlovic, section 3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from denarius.engine.errors import ConfigError

__all__ = ["Hierarchy"]


@dataclass(frozen=True)
class Hierarchy:
    """Class tables of both models and the tree linking them.

    Attributes:
        emperors: emperor class names, in the emperor model's output order (E,).
        rics: RIC class names, in the RIC model's output order (R,).
        parent: int64 array (R,), ``parent[r]`` is the emperor index owning RIC class r.
    """

    emperors: tuple[str, ...]
    rics: tuple[str, ...]
    parent: np.ndarray

    def __post_init__(self):
        parent = np.asarray(self.parent, dtype=np.int64)
        if parent.shape != (len(self.rics),):
            raise ConfigError(f"parent has shape {parent.shape}, expected ({len(self.rics)},)")
        if len(parent) and (parent.min() < 0 or parent.max() >= len(self.emperors)):
            raise ConfigError("parent holds an emperor index outside the emperor table")
        parent.setflags(write=False)
        object.__setattr__(self, "parent", parent)

    @classmethod
    def from_mapping(
        cls, ric_to_emperor: Mapping[str, str], *, emperors=None, rics=None
    ) -> Hierarchy:
        """Build from ``{ric: emperor}``; class orders default to sorted names."""
        emperors = tuple(emperors if emperors is not None else sorted(set(ric_to_emperor.values())))
        rics = tuple(rics if rics is not None else sorted(ric_to_emperor))
        index = {name: i for i, name in enumerate(emperors)}
        missing = [r for r in rics if r not in ric_to_emperor]
        if missing:
            raise ConfigError(f"RIC labels without an emperor: {missing[:10]}")
        unknown = sorted({ric_to_emperor[r] for r in rics} - set(index))
        if unknown:
            raise ConfigError(f"emperors not in the emperor table: {unknown[:10]}")
        parent = np.array([index[ric_to_emperor[r]] for r in rics], dtype=np.int64)
        return cls(emperors=emperors, rics=rics, parent=parent)

    def to_dict(self) -> dict:
        """JSON form: ``{"emperors": [...], "rics": [...], "ric_to_emperor": {ric: emperor}}``."""
        return {
            "emperors": list(self.emperors),
            "rics": list(self.rics),
            "ric_to_emperor": {r: self.emperors[p] for r, p in zip(self.rics, self.parent, strict=True)},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Hierarchy:
        return cls.from_mapping(data["ric_to_emperor"], emperors=data["emperors"], rics=data["rics"])

    def emperor_of(self, ric: str) -> str:
        return self.emperors[self.parent[self.rics.index(ric)]]

    def joint_scores(self, p_emperor: np.ndarray, p_ric: np.ndarray) -> np.ndarray:
        """Joint leaf scores p(e|Io) p(r|Ir) [parent(r)=e].

        Args:
            p_emperor: (N, E) emperor probabilities from the obverse model.
            p_ric: (N, R) RIC probabilities from the reverse model.
        Returns:
            (N, R) float64 joint scores; rows need not sum to 1.
        """
        p_emperor = np.asarray(p_emperor, dtype=np.float64)
        p_ric = np.asarray(p_ric, dtype=np.float64)
        if p_emperor.ndim != 2 or p_emperor.shape[1] != len(self.emperors):
            raise ConfigError(f"p_emperor has shape {p_emperor.shape}, expected (N, {len(self.emperors)})")
        if p_ric.shape != (p_emperor.shape[0], len(self.rics)):
            raise ConfigError(f"p_ric has shape {p_ric.shape}, expected ({p_emperor.shape[0]}, {len(self.rics)})")
        return p_emperor[:, self.parent] * p_ric

    def predict(self, p_emperor: np.ndarray, p_ric: np.ndarray) -> np.ndarray:
        """(N,) index of the best RIC leaf under the joint score."""
        return np.argmax(self.joint_scores(p_emperor, p_ric), axis=1)
