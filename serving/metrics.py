"""Prometheus metrics of the gRPC server, in a registry of its own on a separate HTTP port.

Exported series (all prefixed ``denarius_``):

- ``requests_total{method, code}``: every RPC once, by method name and the name of the gRPC
  status code it ended with: DEADLINE_EXCEEDED and CANCELLED for calls that ran out of time
  or whose client gave up, streams included (see ``serving/interceptors.py``
  ``MetricsInterceptor``). For IdentifyStream, one per stream; ``stream_items_total{code}``
  counts its items.
- ``request_latency_seconds{method}``: histogram of RPC wall time on the server.
- ``batch_size``: histogram of the batch sizes the dynamic batcher formed.
- ``queue_depth``: requests waiting in the batcher queue (sampled at scrape time).
- ``inflight_requests{method}``: RPCs being handled now.
- ``stream_outstanding``: IdentifyStream requests read and not yet answered (all streams);
  ``stream_outstanding_peak``: the most ever outstanding on one stream (<= the window).
- ``landmarks_cancelled_total``: landmark searches that ended early because their caller
  cancelled or ran past its deadline, whether they were running or still queued.
- ``landmark_run_size``: histogram of the landmark searches sharing each run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServerMetrics"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)


class ServerMetrics:
    """The metric objects of one server, registered in ``self.registry`` only."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "denarius_requests", "Finished RPCs by method and gRPC status code",
            ["method", "code"], registry=self.registry,
        )
        self.stream_items = Counter(
            "denarius_stream_items", "IdentifyStream items answered, by status code",
            ["code"], registry=self.registry,
        )
        self.latency = Histogram(
            "denarius_request_latency_seconds", "Server-side RPC latency",
            ["method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "denarius_batch_size", "Sizes of the batches formed by the dynamic batcher",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.landmarks_cancelled = Counter(
            "denarius_landmarks_cancelled",
            "Landmark searches ended early (running or still queued) because the caller cancelled or ran past its deadline",
            registry=self.registry,
        )
        self.landmark_run_size = Histogram(
            "denarius_landmark_run_size", "Landmark searches that shared one run (optimiser batch)",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.queue_depth = Gauge(
            "denarius_queue_depth", "Requests waiting in the batcher queue", registry=self.registry,
        )
        self.stream_outstanding = Gauge(
            "denarius_stream_outstanding",
            "IdentifyStream requests read but not yet answered, over all streams", registry=self.registry,
        )
        self.stream_outstanding_peak = Gauge(
            "denarius_stream_outstanding_peak",
            "Most requests ever outstanding on one IdentifyStream (bounded by the stream window)",
            registry=self.registry,
        )
        self.inflight = Gauge(
            "denarius_inflight_requests", "RPCs being handled", ["method"], registry=self.registry,
        )
        self._http: Any = None  # prometheus_client's WSGIServer while serving
        self._stream_peak = 0

    def note_stream_outstanding(self, count: int) -> None:
        """Record that one stream has ``count`` requests outstanding (for the peak gauge)."""
        if count > self._stream_peak:
            self._stream_peak = count
            self.stream_outstanding_peak.set(count)

    def track_queue_depth(self, read: Callable[[], int]) -> None:
        """Sample the queue depth by calling ``read()`` at every scrape."""
        self.queue_depth.set_function(lambda: float(read()))

    def start_http(self, *, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0 = a free port) in a daemon thread; returns the port."""
        from prometheus_client import start_http_server

        from denarius.engine.errors import ConfigError

        try:
            self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {error.strerror or error} "
                              "(choose another --metrics-port, or -1 to disable)") from None
        bound = self._http.server_port
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
