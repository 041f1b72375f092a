"""What a ``denarius bench`` run measures: the frozen configuration every bench section takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchConfig"]


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Attributes:
        bundle: model bundle folder.
        out: output folder (bench.json, bench.md, bench.png).
        quick: small sample sizes (a smoke run, e.g. in tests); figures are noisier.
        coins: coin pairs in the workload (JPEG photos made by the synthetic generator).
        batch_sizes: model-only batch sizes.
        concurrency: gRPC client concurrency levels.
        seconds: target duration of each timed loop (longer = steadier figures).
        sections: which sections to run.
        heldout, unknown, unknown2, train_manifest: the ``open_world`` section's dataset
            manifests: held-out coins of the bundle's catalogue, two sets of coins outside it,
            and the training manifest (held-out images byte-identical to it are dropped).
        open_set_far: the false-accept rate the open-set threshold is chosen for.
    """

    bundle: Path
    out: Path
    quick: bool = False
    coins: int = 96
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    concurrency: tuple[int, ...] = (1, 4, 16)
    seconds: float = 4.0
    sections: tuple[str, ...] = ("model_only", "engine", "torch_eager", "openvino", "preprocess", "grpc", "landmarks", "scan")
    heldout: Path | None = None
    unknown: Path | None = None
    unknown2: Path | None = None
    train_manifest: Path | None = None
    open_set_far: float = 0.05

    @classmethod
    def quick_config(cls, bundle: Path, out: Path, **overrides) -> BenchConfig:
        return cls(bundle=Path(bundle), out=Path(out), quick=True, coins=16, seconds=0.5, **overrides)
