"""Prometheus metrics of the gRPC server, in a registry of its own on a separate HTTP port.

Exported series (all but the process ones prefixed ``denarius_``):

- ``build_info{version, model_version, backend, precision}``: 1, once the bundle is loaded;
  one sample, the bundle served now (a reload replaces the label set at the swap).
- ``model_reloads_total{outcome}``: bundle reloads (SIGHUP, ``--watch-interval``,
  ``CoinServer.reload``) by outcome: ``ok`` (the new bundle is served) or ``failed`` (it did
  not load, verify or warm up; the old one keeps serving).
- ``model_runtimes``: bundles open: 1, or more while a swapped-out one finishes the requests
  that started on it.
- ``requests_total{method, code}``: every RPC once, by method name and the name of the gRPC
  status code it ended with: DEADLINE_EXCEEDED and CANCELLED for calls that ran out of time
  or whose client gave up, streams included (see ``serving/interceptors.py``
  ``MetricsInterceptor``). For IdentifyStream, one per stream; ``stream_items_total{code}``
  counts its items.
- ``request_latency_seconds{method}``: histogram of the server-side latency of one answer:
  a unary call's wall time; for IdentifyStream each item's, from reading it to handing its
  response to gRPC (``stream_duration_seconds{method}`` has the whole streams).
- ``stage_seconds{method, stage}``: where an answer's time went. Identify and
  IdentifyStream items: ``queue_wait`` (waiting for a preprocessing thread, then for a
  batch), ``preprocess`` (decode, crop, normalise), ``inference`` (the batch's model run).
  Landmarks: ``queue_wait`` (waiting for a landmark worker), ``preprocess`` (decode and
  crop), ``inference`` (the search, the class probabilities and the overlay).
- ``batch_size``: histogram of the batch sizes the dynamic batcher formed.
- ``queue_depth``: requests waiting in the batcher queue (sampled at scrape time).
- ``inflight_requests{method}``: RPCs being handled now.
- ``stream_outstanding``: IdentifyStream requests read and not yet answered (all streams);
  ``stream_outstanding_peak``: the most ever outstanding on one stream (<= the window).
- ``landmarks_cancelled_total``: landmark searches that ended early because their caller
  cancelled or ran past its deadline, whether they were running or still queued.
- ``landmark_run_size``: histogram of the landmark searches sharing each run.
- ``http_requests_total{route, status}``, ``http_request_latency_seconds{route}``,
  ``http_inflight_requests``: the HTTP/JSON API's requests (``--http-port``), the gRPC
  series' counterparts: ``route`` is the HTTP method and route template
  (``"POST /v1/identify"``; ``"unmatched"`` for a path no route serves), ``status`` the
  HTTP status sent (see ``serving/http/request_metrics.py``).
- ``process_*``, ``python_info``, ``python_gc_*``: prometheus_client's process, platform
  and garbage-collector collectors.

No ``*_created`` series are exposed (they would double every counter and histogram).

The endpoint (:class:`MetricsHTTPServer`) answers ``GET /metrics`` only (404 for any other
path), in the text format or OpenMetrics as the scraper's Accept header asks, gzipped when
accepted. It binds its own address (``--metrics-host``, loopback by default), can run TLS,
and, when the server has bearer tokens, requires one of them (401 without).
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder, gzip_accepted

from denarius.engine.errors import ConfigError
from denarius.serving.logs import escape

__all__ = ["ServerMetrics", "MetricsHTTPServer", "STAGES", "METRICS_PATH"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
STAGES = ("queue_wait", "preprocess", "inference")
METRICS_PATH = "/metrics"


class ServerMetrics:
    """The metric objects of one server, registered in ``self.registry`` only."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.build_info = Gauge(
            "denarius_build_info", "Always 1: the server's version and the model it serves (set once the bundle is loaded)",
            ["version", "model_version", "backend", "precision"], registry=self.registry,
        )
        self.reloads = Counter(
            "denarius_model_reloads", "Bundle reloads by outcome: ok (the new bundle is served) or failed (the old one kept)",
            ["outcome"], registry=self.registry,
        )
        for outcome in ("ok", "failed"):
            self.reloads.labels(outcome=outcome)
        self.runtimes = Gauge(
            "denarius_model_runtimes", "Bundles open: the one served, plus swapped-out ones finishing their requests",
            registry=self.registry,
        )
        self.requests = Counter(
            "denarius_requests", "Finished RPCs by method and gRPC status code",
            ["method", "code"], registry=self.registry,
        )
        self.stream_items = Counter(
            "denarius_stream_items", "IdentifyStream items answered, by status code",
            ["code"], registry=self.registry,
        )
        self.latency = Histogram(
            "denarius_request_latency_seconds",
            "Server-side latency of one answer: a unary RPC, or one IdentifyStream item (read to response)",
            ["method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stream_duration = Histogram(
            "denarius_stream_duration_seconds", "Wall time of whole streaming calls (IdentifyStream, reflection)",
            ["method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stages = Histogram(
            "denarius_stage_seconds",
            "Time of one answer spent per stage: queue_wait, preprocess, inference",
            ["method", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry,
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
        # The HTTP/JSON API beside gRPC (serving/http/request_metrics.py records these).
        self.http_requests = Counter(
            "denarius_http_requests", "Finished HTTP requests by route (method and route template) and HTTP status",
            ["route", "status"], registry=self.registry,
        )
        self.http_latency = Histogram(
            "denarius_http_request_latency_seconds",
            "Server-side latency of one HTTP request, from its arrival to the last byte of its answer",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.http_inflight = Gauge(
            "denarius_http_inflight_requests", "HTTP requests being handled", registry=self.registry,
        )
        self._http: MetricsHTTPServer | None = None
        self._stream_peak = 0

    def set_build_info(self, *, version: str, model_version: str, backend: str, precision: str) -> None:
        """The one ``denarius_build_info`` sample (a bundle loaded again replaces it)."""
        self.build_info.clear()
        self.build_info.labels(version=version, model_version=model_version, backend=backend, precision=precision).set(1)

    def observe_stages(self, method: str, *, queue_wait: float, preprocess: float, inference: float) -> None:
        """One answer's time per stage (seconds; see the module docstring)."""
        for stage, seconds in zip(STAGES, (queue_wait, preprocess, inference), strict=True):
            self.stages.labels(method=method, stage=stage).observe(max(0.0, seconds))

    def note_stream_outstanding(self, count: int) -> None:
        """Record that one stream has ``count`` requests outstanding (for the peak gauge)."""
        if count > self._stream_peak:
            self._stream_peak = count
            self.stream_outstanding_peak.set(count)

    def track_queue_depth(self, read: Callable[[], int]) -> None:
        """Sample the queue depth by calling ``read()`` at every scrape."""
        self.queue_depth.set_function(lambda: float(read()))

    def track_runtimes(self, read: Callable[[], int]) -> None:
        """Sample the number of open bundles by calling ``read()`` at every scrape."""
        self.runtimes.set_function(lambda: float(read()))

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry's samples, without ``_created`` ones, in the format ``accept`` asks
        for (text by default); returns (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(_WithoutCreated(self.registry)), content_type  # type: ignore[arg-type]

    def start_http(self, *, host: str, port: int, tls: tuple[Path, Path] | None = None,
                   authorize: Callable[[str | None], bool] | None = None) -> int:
        """Serve ``GET /metrics`` on ``host:port`` (0 = a free port) in daemon threads; returns the port.

        Args:
            tls: (certificate chain, private key) PEM files: serve HTTPS.
            authorize: called with the request's Authorization header (None when absent);
                False answers 401. None = no authentication.
        Raises:
            ConfigError: the address cannot be bound, or the TLS files cannot be loaded.
        """
        self._http = MetricsHTTPServer(self, host=host, port=port, tls=tls, authorize=authorize)
        self._http.start()
        log.info("metrics on %s://%s:%d%s%s", "https" if tls else "http", host, self._http.port, METRICS_PATH,
                 " (bearer token required)" if authorize else "")
        return self._http.port

    def close(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None


class _WithoutCreated:
    """A registry view that leaves out the ``<name>_created`` samples of counters and histograms."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        for family in self._registry.collect():
            if family.type in ("counter", "histogram", "summary"):
                created = family.name + "_created"
                family.samples = [sample for sample in family.samples if sample.name != created]
            yield family


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on the connections handled at once (more are closed)."""

    daemon_threads = True
    block_on_close = False
    max_connections = 16

    def __init__(self, address, handler, family: int):
        self.address_family = family
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        log.debug("metrics: connection from %s failed", client_address, exc_info=True)


class MetricsHTTPServer:
    """The ``/metrics`` endpoint of one :class:`ServerMetrics` (see the module docstring)."""

    timeout_s = 10.0  # a connection that sends nothing (or no TLS handshake) this long is closed

    def __init__(self, metrics: ServerMetrics, *, host: str, port: int, tls: tuple[Path, Path] | None = None,
                 authorize: Callable[[str | None], bool] | None = None):
        self.host = host
        context = None
        if tls is not None:
            cert, key = tls
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                context.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"cannot load the metrics TLS certificate {cert} / key {key}: {error}") from None
        handler = type("MetricsHandler", (_Handler,), {"metrics": metrics, "authorize": staticmethod(authorize) if authorize else None,
                                                       "timeout": self.timeout_s})
        bind = host.strip("[]")
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        try:
            self._server = _Server((bind, port), handler, family)
        except OSError as error:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {error.strerror or error} "
                              "(choose another --metrics-port, or -1 to disable)") from None
        if context is not None:
            # The handshake happens on the handler's thread, under its timeout, not in accept().
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="denarius-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    metrics: ServerMetrics
    authorize: Callable[[str | None], bool] | None = None
    server_version = "denarius-metrics"
    sys_version = ""

    def setup(self) -> None:
        super().setup()  # sets the socket timeout
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        if urlsplit(self.path).path != METRICS_PATH:
            self._plain(404, f"not found: the metrics are at {METRICS_PATH}\n")
            return
        if self.authorize is not None and not self.authorize(self.headers.get("Authorization")):
            self._plain(401, "a bearer token is required: send 'Authorization: Bearer <token>'\n",
                        {"WWW-Authenticate": 'Bearer realm="metrics"'})
            return
        body, content_type = self.metrics.exposition(self.headers.get("Accept"))
        headers = {"Content-Type": content_type}
        if gzip_accepted(self.headers.get("Accept-Encoding") or ""):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        self._send(200, body, headers)

    def _plain(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the request line is the client's: escaped
        log.debug("metrics %s: %s", self.client_address[0], escape(format % args))
