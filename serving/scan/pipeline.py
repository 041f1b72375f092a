"""``denarius scan``: identify a whole collection into a resumable JSON-lines file.

    from denarius.serving.scan import ScanConfig, run_scan
    summary = run_scan(ScanConfig(input="coins/", bundle="bundle/", out="results.jsonl"))
    print(summary.format())

Three runners produce the same lines (``serving/scan/records.py``) through the same journal
(``serving/scan/journal.py``, exactly-once and resumable):

- local (default): decode + preprocess in a thread pool (OpenCV releases the GIL) while the
  engine infers the previous batch; full batches of ``batch_size`` coins go to
  ``Engine.identify`` as preprocessed (3, S, S) float32 arrays, so nothing is decoded twice;
- ``server``: the same job through a running Denarius server's IdentifyStream
  (``serving/scan/remote.py``);
- ``ray``: the same job on Ray Data with an actor pool of engines (``serving/scan/ray_scan.py``).

Each batch of results is appended as one write and fsynced before the next, with a progress
bar (coins/s, ETA); the returned :class:`ScanSummary` has the counts, errors by kind and
the throughput.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from denarius.engine.engine import Engine
from denarius.engine.errors import ConfigError
from denarius.serving.scan.inputs import ScanInput, discover
from denarius.serving.scan.journal import Journal
from denarius.serving.scan.local import LocalScanner

__all__ = ["ScanConfig", "ScanSummary", "run_scan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanConfig:
    """Everything ``denarius scan`` can set.

    Attributes:
        input: a manifest CSV or a folder of pairs (see ``serving/scan/inputs.py``).
        out: the JSON-lines output; its job header is ``<out>.scan.json``.
        bundle: model bundle folder (required unless ``server`` is given).
        top_k: candidates per coin.
        batch_size: coins per engine batch (and per fsynced write).
        workers: decode/preprocess threads (local runner), or Ray actors (``ray``).
        landmarks: add each side's landmark boxes (slow: an optimisation per side).
        server: "HOST:PORT" of a running Denarius server; scan through it.
        ray: a Ray address or "auto"; scan on Ray Data.
        restart: discard an existing output and start over.
        backend, precision: engine backend ("auto", "ort-cpu", ...) and precision (None =
            the backend's default); local and Ray runners.
        progress: show a tqdm progress bar (stderr).
        token: bearer token for ``server``.
    """

    input: Path
    out: Path
    bundle: Path | None = None
    top_k: int = 5
    batch_size: int = 32
    workers: int = 2
    landmarks: bool = False
    server: str | None = None
    ray: str | None = None
    restart: bool = False
    backend: str = "auto"
    precision: str | None = None
    progress: bool = True
    token: str | None = field(default=None, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "input", Path(self.input))
        object.__setattr__(self, "out", Path(self.out))
        if self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a folder; give the JSON-lines file to write, e.g. {self.out / 'results.jsonl'}")
        if self.bundle is not None:
            object.__setattr__(self, "bundle", Path(self.bundle))
        if self.top_k < 1 or self.batch_size < 1 or self.workers < 1:
            raise ConfigError(f"top_k, batch_size and workers must be >= 1, got {self.top_k}, {self.batch_size}, {self.workers}")
        if self.server and self.ray:
            raise ConfigError("give --server or --ray, not both")
        if self.bundle is None and not self.server:
            raise ConfigError("--bundle is required (or --server HOST:PORT to scan through a running server)")
        if self.server and self.landmarks:
            raise ConfigError("--landmarks is not available with --server (the scan asks IdentifyStream only); scan locally")

    @property
    def runner(self) -> str:
        return "server" if self.server else "ray" if self.ray else "local"


@dataclass(frozen=True)
class ScanSummary:
    """What one ``run_scan`` did.

    Attributes:
        coins: coins in the input (error items included).
        already_done: coins found finished in the output and skipped (resume).
        scanned: lines written by this run; ``ok + errors``.
        errors_by_kind: {kind: count} of this run's error lines.
        unpaired: the input's unpaired-image reports (folder input).
        repaired_bytes: torn tail cut off the output at start (an interrupted run).
        seconds, coins_per_s: wall time of the scanning itself and ``scanned / seconds``.
    """

    out: str
    runner: str
    model_version: str
    coins: int
    already_done: int
    scanned: int
    ok: int
    errors: int
    errors_by_kind: dict = field(default_factory=dict)
    unpaired: tuple[str, ...] = ()
    repaired_bytes: int = 0
    seconds: float = 0.0
    coins_per_s: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["unpaired"] = list(self.unpaired)
        return data

    def format(self) -> str:
        lines = [
            f"scan ({self.runner}, model {self.model_version}) -> {self.out}",
            f"  coins in input   {self.coins}",
            f"  already done     {self.already_done}" + ("  (resumed)" if self.already_done else ""),
            f"  scanned now      {self.scanned}  ({self.ok} ok, {self.errors} errors)",
            f"  throughput       {self.coins_per_s:.1f} coins/s over {self.seconds:.1f} s",
        ]
        if self.repaired_bytes:
            lines.append(f"  repaired         cut {self.repaired_bytes} bytes of an interrupted write")
        for kind, count in sorted(self.errors_by_kind.items()):
            lines.append(f"  errors: {kind:<12} {count}")
        if self.unpaired:
            lines.append(f"  unpaired images  {len(self.unpaired)}:")
            lines += [f"    {line}" for line in self.unpaired[:20]]
            if len(self.unpaired) > 20:
                lines.append(f"    ... and {len(self.unpaired) - 20} more (see the error lines in the output)")
        return "\n".join(lines)


# --------------------------------------------------------------------------- driver


class _LocalRunner:
    """The in-process runner: one Engine, one LocalScanner."""

    def __init__(self, config: ScanConfig):
        self.config = config
        assert config.bundle is not None  # ScanConfig requires a bundle unless a server is given
        # The engine's own pool only copies our preprocessed arrays into its batch buffers.
        self.engine = Engine(config.bundle, backend=config.backend, precision=config.precision,
                             max_batch=config.batch_size, preprocess_workers=1)
        try:
            self.scanner = LocalScanner(self.engine, top_k=config.top_k, workers=config.workers, landmarks=config.landmarks)
        except BaseException:
            self.engine.close()
            raise
        self.model_version = self.engine.version
        self.precision = config.precision or "default"

    def iter_batches(self, items):
        return self.scanner.iter_batches(items, batch_size=self.config.batch_size)

    def close(self) -> None:
        self.scanner.close()
        self.engine.close()


def _open_runner(config: ScanConfig):
    if config.server:
        from denarius.serving.scan.remote import RemoteRunner

        return RemoteRunner(config)
    if config.ray:
        from denarius.serving.scan.ray_scan import RayRunner

        return RayRunner(config)
    return _LocalRunner(config)


def job_header(config: ScanConfig, scan_input: ScanInput, runner) -> dict:
    """What must match for an output to be resumed.

    The input path, the model and the options that change a line. Batch size, workers and
    the runner (local, Ray) may change between runs: they give the same lines. The input's
    content may grow: coins already in the output are skipped, new ones are scanned.
    """
    return {
        "input": str(scan_input.source),
        "model_version": runner.model_version,
        "precision": runner.precision,
        "top_k": config.top_k,
        "landmarks": config.landmarks,
    }


def run_scan(config: ScanConfig) -> ScanSummary:
    """Scan ``config.input`` into ``config.out``; resumes a previous run of the same job.

    Raises:
        InputError, ManifestError: the input cannot be read (nothing is written).
        ConfigError: the output belongs to another job (use ``restart``) or is in use.
        BundleError, BackendUnavailable: the bundle/back end cannot be opened.
    """
    from tqdm import tqdm

    scan_input = discover(config.input)
    for line in scan_input.unpaired:
        log.warning("unpaired: %s", line)
    runner = _open_runner(config)
    try:
        with Journal(config.out, header=job_header(config, scan_input, runner), restart=config.restart) as journal:
            pending = [item for item in scan_input.items if item.coin_id not in journal.done]
            already = len(scan_input.items) - len(pending)
            if already:
                log.info("resuming %s: %d of %d coins already done", config.out, already, len(scan_input.items))
            kinds: Counter = Counter()
            ok = 0
            start = time.perf_counter()
            with tqdm(total=len(pending), unit="coin", desc="scan", disable=not config.progress, smoothing=0.1) as bar:
                for records in runner.iter_batches(pending):
                    journal.append(records)
                    for record in records:
                        if record["error"] is None:
                            ok += 1
                        else:
                            kinds[record["error"]["kind"]] += 1
                    bar.update(len(records))
            seconds = time.perf_counter() - start
            scanned = ok + sum(kinds.values())
            return ScanSummary(
                out=str(config.out), runner=config.runner, model_version=runner.model_version,
                coins=len(scan_input.items), already_done=already, scanned=scanned, ok=ok,
                errors=scanned - ok, errors_by_kind=dict(sorted(kinds.items())), unpaired=scan_input.unpaired,
                repaired_bytes=journal.repaired_bytes, seconds=round(seconds, 3),
                coins_per_s=round(scanned / seconds, 2) if seconds > 0 else 0.0,
            )
    finally:
        runner.close()
