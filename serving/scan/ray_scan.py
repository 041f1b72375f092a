"""``denarius scan --ray ADDRESS|auto``: the same scan on Ray Data, one engine per actor.

The pending coins become a Ray dataset (``ray.data.from_items``); ``map_batches`` runs them
through an actor pool of :class:`EngineActor` (a callable class holding one ``Engine`` and
one ``LocalScanner``, the same code as the local runner) and the driver collects the output
in input order (``preserve_order``) and writes it through the same journal, so the lines are
those of a local scan and a killed Ray scan resumes like a local one.

Choosing the cluster (``--ray``):

- ``auto``: the cluster this machine belongs to (``RAY_ADDRESS``, or a ``ray start`` head
  running here); when there is none, a local Ray instance is started for the scan;
- ``local``: always a fresh local instance;
- ``HOST:PORT``: the cluster's GCS address (``ray start --head`` prints it; port 6379 by
  default), from a driver running on a node of that cluster.
- ``ray://...`` (Ray Client) is refused: Ray Data does not run through Ray Client. Run the
  driver on a cluster node instead (e.g. ``ray job submit`` or a shell on the head).

Running against a real cluster:

1. Install Denarius with the ``ray`` extra on every node, the same version as the driver
   (``pip install 'denarius[cpu,ray]'`` or ``[gpu,ray]``), or ship it with a runtime env.
2. Put the bundle and the images on storage every node mounts at the same path (NFS, a
   FUSE-mounted bucket): actors open the bundle by the path given to ``--bundle`` and read
   the images by the paths in the manifest (the rows carry paths, not bytes). The output is
   written by the driver only.
3. Run the driver on a node of the cluster (the head, or any worker)::

       denarius scan /mnt/coins/manifest.csv --bundle /mnt/bundles/v3 \\
           --out results.jsonl --ray auto --workers 8 --batch-size 64

   (``--ray 10.0.0.5:6379``, the GCS address, does the same from a node where
   ``RAY_ADDRESS`` is not set.) ``--workers`` is the number of engine actors (one engine each). GPUs: with
   ``--backend ort-cuda|tensorrt``, or ``auto`` on a cluster that has GPUs, every actor
   requests ``num_gpus=1``; a TensorRT bundle needs plans for the workers' GPU.
4. Killed or failed, rerun the same command: finished coins are skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from denarius.engine.engine import Engine
from denarius.engine.errors import BackendUnavailable, ConfigError
from denarius.serving.scan.inputs import CoinItem
from denarius.serving.scan.local import LocalScanner

__all__ = ["EngineActor", "RayRunner", "connect"]

log = logging.getLogger(__name__)

GPU_BACKENDS = ("ort-cuda", "tensorrt")


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise BackendUnavailable(f"--ray needs Ray Data ({error}); install it with: pip install 'denarius[ray]'") from None
    return ray


def connect(address: str):
    """Connect to (or start) Ray for ``address`` (see the module docstring); returns ``ray``.

    Raises:
        ConfigError: a Ray Client address (``ray://``), which Ray Data cannot use.
        BackendUnavailable: Ray is not installed, or the cluster cannot be reached.
    """
    if address.startswith("ray://"):
        raise ConfigError(
            f"--ray {address}: Ray Data does not run through Ray Client (ray://). Run the scan on a node of the "
            "cluster with --ray auto, or give the cluster's GCS address (HOST:6379, printed by `ray start --head`)"
        )
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if address == "local":
        ray.init(include_dashboard=False, log_to_driver=False)
    elif address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
        except (ConnectionError, RuntimeError) as error:
            if os.environ.get("RAY_ADDRESS"):
                raise BackendUnavailable(f"cannot reach the Ray cluster at RAY_ADDRESS={os.environ['RAY_ADDRESS']}: {error}") from None
            log.info("no running Ray cluster found (%s); starting a local one", error)
            ray.init(include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise BackendUnavailable(f"cannot connect to the Ray cluster at {address!r}: {error}") from None
    return ray


def _rows(items: Sequence[CoinItem]) -> list[dict]:
    """Plain rows for ``ray.data.from_items`` (strings only: they travel through Arrow)."""
    return [
        {
            "coin_id": item.coin_id,
            "obverse": "" if item.obverse is None else str(item.obverse),
            "reverse": "" if item.reverse is None else str(item.reverse),
            "problem_kind": "" if item.problem is None else item.problem[0],
            "problem_message": "" if item.problem is None else item.problem[1],
        }
        for item in items
    ]


def _items(batch: dict[str, np.ndarray]) -> list[CoinItem]:
    return [
        CoinItem(
            coin_id=str(coin_id),
            obverse=Path(obverse) if obverse else None,
            reverse=Path(reverse) if reverse else None,
            problem=(str(kind), str(message)) if kind else None,
        )
        for coin_id, obverse, reverse, kind, message in zip(
            batch["coin_id"], batch["obverse"], batch["reverse"], batch["problem_kind"], batch["problem_message"], strict=True)
    ]


class EngineActor:
    """One Ray actor's worth of scanning: an Engine + LocalScanner, called per batch.

    ``__call__`` takes a numpy batch of the rows made by ``_rows`` and returns
    ``{"coin_id": (N,) str, "line": (N,) str}``, a JSON line per coin, in batch order.
    """

    def __init__(self, *, bundle: str, backend: str, precision: str | None, batch_size: int, top_k: int,
                 landmarks: bool, threads: int):
        self.engine = Engine(bundle, backend=backend, precision=precision, max_batch=batch_size, preprocess_workers=1)
        self.scanner = LocalScanner(self.engine, top_k=top_k, workers=threads, landmarks=landmarks)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = _items(batch)
        records = self.scanner.scan_group(items)
        return {
            "coin_id": np.array([item.coin_id for item in items], dtype=object),
            "line": np.array([json.dumps(record, separators=(",", ":")) for record in records], dtype=object),
        }


class RayRunner:
    """Scans on Ray Data; see the module docstring."""

    def __init__(self, config):
        from denarius.engine.bundle import load_bundle

        if config.bundle is None:
            raise ConfigError("--ray needs --bundle (a path every Ray node can read)")
        self.config = config
        self.ray = connect(config.ray)
        bundle = load_bundle(config.bundle)
        self.model_version = bundle.version
        self.precision = config.precision or "default"
        gpus = float(self.ray.cluster_resources().get("GPU", 0.0))
        self.num_gpus = 1 if config.backend in GPU_BACKENDS or (config.backend == "auto" and gpus >= 1) else 0
        if config.backend in GPU_BACKENDS and gpus < 1:
            raise BackendUnavailable(f"--backend {config.backend} needs GPUs but the Ray cluster has none")
        log.info("Ray: %s, %d engine actor(s), %s GPU per actor", self.ray.cluster_resources(), config.workers, self.num_gpus)

    def close(self) -> None:
        pass  # the Ray connection belongs to the process (a caller may have started it)

    def iter_batches(self, items: Sequence[CoinItem]) -> Iterator[list[dict]]:
        if not items:
            return
        ray = self.ray
        config = self.config
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the scan shows its own bar
        dataset = ray.data.from_items(_rows(items))
        results = dataset.map_batches(
            EngineActor,
            fn_constructor_kwargs=dict(
                bundle=str(Path(config.bundle).resolve()), backend=config.backend, precision=config.precision,
                batch_size=config.batch_size, top_k=config.top_k, landmarks=config.landmarks, threads=1),
            batch_size=config.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=config.workers),
            num_gpus=self.num_gpus,
            num_cpus=1,
        )
        expected = iter(items)
        for batch in results.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            records = [json.loads(line) for line in batch["line"]]
            for record in records:  # preserve_order: the same order as the input
                assert record["coin_id"] == next(expected).coin_id, "Ray returned coins out of order"
            yield records
