"""The gRPC server: CoinService + grpc.health.v1 + reflection + Prometheus metrics.

Lifecycle of :class:`CoinServer`::

    start()   bind the port, health NOT_SERVING; load + verify the bundle (the folder, or
              the highest version of a model repository: serving/repository.py), open the
              engine, start the batcher, warm up; health SERVING
    reload()  (SIGHUP, or a poll every --watch-interval) load + verify + warm up the bundle
              chosen now in an executor thread while the old one keeps serving, then switch
              the servicer's reference to it on the event loop: a request takes the runtime
              once at its start, so the ones in flight finish on the old bundle, which closes
              once the last of them is done. A bundle that fails to load is logged and
              counted (denarius_model_reloads_total{outcome="failed"}), and the old one keeps
              serving. Health stays SERVING throughout; two bundles are in memory until the
              old one closes.
    drain()   health NOT_SERVING while still accepting calls for the drain delay (load
              balancers stop routing here), then stop accepting and wait for the in-flight
              calls: until the last of them ends, at most until the latest of their
              deadlines (a landmark search's is at most --landmark-timeout after it
              arrived) plus one second, and never longer than the grace cap; then close the
              batcher, the engine and the metrics endpoint

``serve(config)`` runs that in the foreground, reloads on SIGHUP and drains on SIGTERM/SIGINT (exit code 0);
:class:`BackgroundServer` runs it in a thread for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from denarius.engine import decode_budget
from denarius.engine.errors import ConfigError, DenariusError
from denarius.serving import repository
from denarius.serving.denarius.v1 import coins_pb2, coins_pb2_grpc, watchlist_pb2
from denarius.serving.interceptors import (
    InflightCall,
    InflightCalls,
    MetricsInterceptor,
    RequestParsingInterceptor,
    TokenAuthInterceptor,
    check_tokens,
    quiet_undeliverable_answers,
)
from denarius.serving.metrics import ServerMetrics

if TYPE_CHECKING:
    from denarius.serving.http import HttpFrontend
    from denarius.serving.servicer import CoinServicer

__all__ = ["ServerConfig", "CoinServer", "BackgroundServer", "Reload", "serve", "load_tokens", "SERVICE_NAME"]

log = logging.getLogger(__name__)

DRAIN_SLACK_S = 1.0  # past the latest deadline, for the answer to be written
WORK_METHODS = frozenset(coins_pb2.DESCRIPTOR.services_by_name["CoinService"].methods_by_name)  # what a drain waits for
# A drain cuts what is left at least this long after NOT_SERVING (the drain delay and the wait for
# calls in flight count), so that a health Watch stream sends NOT_SERVING before it is cut (it
# was cut first in about one drain in three without a drain delay).
WATCH_FLUSH_S = 0.2
SERVICE_NAME = coins_pb2.DESCRIPTOR.services_by_name["CoinService"].full_name  # "denarius.v1.CoinService"
WATCHLIST_SERVICE = watchlist_pb2.DESCRIPTOR.services_by_name["Watchlist"].full_name  # "denarius.v1.Watchlist"


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``denarius serve`` can set.

    Attributes:
        bundle: a model bundle directory, or a model repository of versioned bundles
            ``<bundle>/<version>/manifest.json`` (the highest complete version is served; see
            ``denarius.serving.repository``).
        watch_interval_s: poll the bundle (repository) this often for a new version and
            reload when the bundle it resolves to differs from the one served (another
            version folder, or a rewritten manifest.json); None = reload on SIGHUP only.
        host, port: gRPC listen address; loopback by default, port 0 = any free port.
        metrics_host, metrics_port: Prometheus ``/metrics`` endpoint; loopback by default
            (not ``host``); port 0 = any free port, None = no endpoint. It requires one of
            ``tokens`` when there are any (401 otherwise).
        metrics_tls_cert, metrics_tls_key: PEM files for HTTPS on the metrics endpoint; both
            or neither. Neither = the gRPC pair (``tls_cert``, ``tls_key``) when that is
            set, so a TLS server's metrics are TLS too; else plain HTTP.
        backend, precision: passed to the engine ("auto"/"ort-cpu"/..., None = the backend's
            default, or "fp32"/"fp16"/"int8").
        max_batch, max_wait_ms, max_queue: dynamic batcher: largest batch, longest wait for a
            batch to fill, and the queue bound beyond which calls get RESOURCE_EXHAUSTED.
        eager_dispatch: send a partial batch at once when no other request is being
            preprocessed (no idle wait at low load); False always waits up to ``max_wait_ms``.
        max_message_bytes: largest request/response message (bigger -> RESOURCE_EXHAUSTED).
        max_pixels: per-image pixel limit checked on the header before decoding; None =
            the bundle's preprocessing spec.
        decode_memory_bytes: bytes all image decodes in flight may hold together (estimated
            from each header; see engine/decode_budget.py); None = 1/8 of the host's memory.
        max_concurrent_rpcs: RPCs handled at once; beyond it gRPC answers RESOURCE_EXHAUSTED.
        stream_window: IdentifyStream requests in flight per stream (flow control).
        landmark_workers, landmark_queue: threads running landmark searches, and how many
            more may wait for one before RESOURCE_EXHAUSTED.
        landmark_batch: most waiting optimised searches with the same settings that share
            one optimiser run (see engine/landmarks/batcher.py); 1 = every search alone.
        default_top_k: candidates returned when a request leaves top_k at 0.
        landmark_timeout_s: the longest a Landmarks call may take, from its arrival (queue
            included), whatever deadline its client set; past it DEADLINE_EXCEEDED.
        grace_s: the cap on how long in-flight RPCs may run once the server stops accepting
            after a SIGTERM; the wait itself ends when the last in-flight call does (or its
            deadline passes, see the module docstring). Keep it above landmark_timeout_s,
            so no admitted landmark search is cut.
        drain_delay_s: after a SIGTERM, keep accepting calls this long while health says
            NOT_SERVING, so load balancers stop routing here before the port closes.
        http_host, http_port: the HTTP/JSON API and web page (serving/http/), in this process
            on the same runtime, tokens and limits; port 0 = any free port, None = no HTTP;
            host None = ``host``. HTTPS with ``tls_cert``/``tls_key`` when they are set.
        tls_cert, tls_key: PEM files; both or neither (then the port is plaintext).
        bundle_key: Ed25519 public key (PEM) the bundle's manifest.json must be signed with
            (``denarius bundle-sign``); None = signatures are not checked.
        tokens: accepted bearer tokens; empty = no authentication.
        watchlist: a watchlist directory: serve denarius.v1.Watchlist and add watchlist
            matches to Identify/IdentifyStream answers (None = neither).
        warmup: run one batch through the models before reporting SERVING.
    """

    bundle: Path
    watch_interval_s: float | None = None
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9095
    metrics_tls_cert: Path | None = None
    metrics_tls_key: Path | None = None
    backend: str = "auto"
    precision: str | None = None
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    eager_dispatch: bool = True
    preprocess_workers: int = 2
    threads: int | None = None
    max_message_bytes: int = 16 * 1024 * 1024
    max_pixels: int | None = None
    decode_memory_bytes: int | None = None
    max_concurrent_rpcs: int = 512
    stream_window: int = 16
    landmark_workers: int = 1
    landmark_queue: int = 4
    landmark_batch: int = 8
    default_top_k: int = 5
    landmark_timeout_s: float = 120.0
    grace_s: float = 130.0
    drain_delay_s: float = 2.0
    http_host: str | None = None
    http_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    bundle_key: Path | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)
    warmup: bool = True
    watchlist: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "bundle", Path(self.bundle))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key (or neither)")
        if (self.metrics_tls_cert is None) != (self.metrics_tls_key is None):
            raise ConfigError("metrics TLS needs both --metrics-tls-cert and --metrics-tls-key (or neither)")
        if self.watch_interval_s is not None and not self.watch_interval_s > 0:
            raise ConfigError(f"watch_interval_s must be > 0, got {self.watch_interval_s}")
        if self.landmark_timeout_s <= 0:
            raise ConfigError(f"landmark_timeout_s must be > 0, got {self.landmark_timeout_s}")
        for name in ("tls_cert", "tls_key", "metrics_tls_cert", "metrics_tls_key", "bundle_key"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
                if not Path(value).is_file():
                    raise ConfigError(f"{name.replace('_', '-')} file not found: {value}")
        for name in ("max_batch", "max_queue", "max_message_bytes", "max_concurrent_rpcs",
                     "stream_window", "landmark_workers", "landmark_batch", "default_top_k", "preprocess_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.landmark_queue, self.max_wait_ms, self.grace_s, self.drain_delay_s) < 0:
            raise ConfigError("landmark_queue, max_wait_ms, grace_s and drain_delay_s must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in [0, 65535], got {self.port}")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"http_port must be in [0, 65535], got {self.http_port}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.decode_memory_bytes is not None and self.decode_memory_bytes < 1024 * 1024:
            raise ConfigError(f"decode_memory_bytes must be >= 1 MiB, got {self.decode_memory_bytes}")
        object.__setattr__(self, "tokens", check_tokens(self.tokens))


@dataclass(frozen=True)
class Reload:
    """What one :meth:`CoinServer.reload` did.

    Attributes:
        outcome: "ok" (the new bundle is served), "failed" (it did not load; the old one
            keeps serving), "unchanged" (a poll found the bundle served, or a version that
            already failed and has not changed since) or "skipped" (not serving: loading or
            draining).
        model_version: the model version served after it (None when nothing is served).
        previous: the model version served before it.
        bundle: the bundle folder it loaded or tried (None when it got that far).
        load_s: seconds to load, verify and warm up the new bundle (0 when none was loaded).
        error: why it failed.
    """

    outcome: str
    model_version: str | None = None
    previous: str | None = None
    bundle: Path | None = None
    load_s: float = 0.0
    error: str = ""


def load_tokens(*, token_file: str | os.PathLike | None = None, token_env: str | None = None) -> tuple[str, ...]:
    """Bearer tokens, one per line of ``token_file`` (``#`` comments) and/or comma-separated
    in the environment variable ``token_env``.

    Raises:
        ConfigError: the file or variable is missing or holds no token.
    """
    tokens: list[str] = []
    if token_file is not None:
        path = Path(token_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise ConfigError(f"cannot read token file {path}: {error.strerror}") from None
        tokens += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not tokens:
            raise ConfigError(f"token file {path} holds no token (one token per line)")
    if token_env is not None:
        value = os.environ.get(token_env)
        if not value:
            raise ConfigError(f"environment variable {token_env} is not set or empty")
        tokens += [t.strip() for t in value.split(",") if t.strip()]
    return tuple(dict.fromkeys(tokens))


class CoinServer:
    """One gRPC server process' worth of state; see the module docstring for the lifecycle."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.metrics = ServerMetrics()
        self.calls = InflightCalls()  # what the drain waits for
        self.health = health_aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self._http: HttpFrontend | None = None  # when config.http_port is set
        self._server: grpc.aio.Server | None = None
        self._servicer: CoinServicer | None = None
        self._stopped = asyncio.Event()
        self._reload_lock = asyncio.Lock()  # one reload at a time; a drain waits for the one under way
        self._serving: repository.Choice | None = None  # the bundle served now
        self._failed: tuple | None = None  # (folder, folder_stamp) of the last bundle that failed to load
        self._watcher: asyncio.Task | None = None
        self.decode_budget = decode_budget.DecodeBudget(
            config.decode_memory_bytes or decode_budget.default_budget_bytes())
        self._previous_budget: decode_budget.DecodeBudget | None = None

    async def _set_health(self, status) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def start(self) -> None:
        """Bind, then load and warm up the model; returns once health is SERVING.

        Raises:
            ConfigError: the port cannot be bound. Bundle/engine errors propagate (the
            server is stopped again first).
        """
        from denarius.serving.servicer import CoinServicer

        config = self.config
        quiet_undeliverable_answers()
        options = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        # Outermost first: metrics see every outcome; the token is checked before the payload
        # is parsed; parsing inside the handler makes a malformed message INVALID_ARGUMENT.
        interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(self.metrics, self.calls)]
        if config.tokens:
            interceptors.append(TokenAuthInterceptor(config.tokens))
        interceptors.append(RequestParsingInterceptor(tolerant_streams=(f"/{SERVICE_NAME}/IdentifyStream",)))
        server = grpc.aio.server(
            interceptors=interceptors, options=options, maximum_concurrent_rpcs=config.max_concurrent_rpcs)
        self._servicer = servicer = CoinServicer(config, self.metrics)
        coins_pb2_grpc.add_CoinServiceServicer_to_server(self._servicer, server)
        extra_services: tuple[str, ...] = ()
        if config.watchlist is not None:  # faiss and SQLite only for a server that has a watchlist
            from denarius.serving.watchlist_service import serve_watchlist

            servicer.watchlist, extra_services = serve_watchlist(config.watchlist, server), (WATCHLIST_SERVICE,)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, *extra_services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        address = f"{config.host}:{config.port}"
        if ":" in config.host and not config.host.startswith("["):
            address = f"[{config.host}]:{config.port}"
        try:
            if config.tls_cert is not None and config.tls_key is not None:  # both or neither (__post_init__)
                credentials = grpc.ssl_server_credentials(
                    [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())])
                self.port = server.add_secure_port(address, credentials)
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise ConfigError(f"cannot listen on {address}: {error}") from None
        if not self.port:
            raise ConfigError(f"cannot listen on {address} (in use, or not a local address?)")
        self._server = server
        self._previous_budget = decode_budget.install(self.decode_budget)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        log.info("listening on %s:%d (%s), loading %s", config.host, self.port,
                 "TLS" if config.tls_cert else "plaintext", config.bundle)
        try:
            if config.metrics_port is not None:
                self._start_metrics()
            if config.http_port is not None:
                await self._start_http()
            loop = asyncio.get_running_loop()
            choice = await loop.run_in_executor(None, repository.choose, config.bundle)
            if choice.version is not None:
                log.info("model repository %s: serving version %s, the highest", config.bundle, choice.version)
            await loop.run_in_executor(None, servicer.load, choice.path)
            self._serving = choice
        except BaseException:
            await self.drain(grace_s=0, delay_s=0)
            raise
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on port %d", SERVICE_NAME, self.port)
        if config.watch_interval_s is not None:
            self._watcher = asyncio.ensure_future(self._watch(config.watch_interval_s))

    # -- reloading ---------------------------------------------------------------------------
    def _retire_timeout(self) -> float:
        """How long a swapped-out bundle waits for the requests holding it before it closes anyway:
        past any admitted request's limit (a landmark search's is ``landmark_timeout_s``)."""
        return max(self.config.landmark_timeout_s, self.config.grace_s) + DRAIN_SLACK_S

    async def reload(self, *, force: bool = True) -> Reload:
        """Load the bundle ``config.bundle`` resolves to now and serve it, without dropping a call.

        The bundle is loaded, verified and warmed up in an executor thread while the old one
        keeps serving; then the servicer's reference (which the HTTP API reads too) switches
        to it on the event loop. Requests already holding the old runtime finish on it; it
        closes once the last of them is done. Health stays SERVING. A bundle that fails is
        logged and counted, and the old one keeps serving. One reload runs at a time.

        Args:
            force: load even when the bundle chosen is the one served, or one that failed
                before and has not changed (SIGHUP); False (the watcher) skips those.
        """
        async with self._reload_lock:
            servicer = self._servicer
            if self._server is None or servicer is None or servicer.runtime is None:
                log.warning("reload skipped: the server is not serving (still loading, or draining)")
                return Reload("skipped", error="the server is not serving (still loading, or draining)")
            previous = servicer.runtime.bundle.version
            loop = asyncio.get_running_loop()
            try:
                choice = await loop.run_in_executor(None, repository.choose, self.config.bundle)
            except DenariusError as error:
                return self._reload_failed(None, previous, 0.0, str(error))
            if not force:
                if self._serving is not None and (choice.path, choice.stamp) == (self._serving.path, self._serving.stamp):
                    return Reload("unchanged", model_version=previous, previous=previous, bundle=choice.path)
                if self._failed is not None and self._failed[0] == choice.path:
                    if await loop.run_in_executor(None, repository.folder_stamp, choice.path) == self._failed[1]:
                        return Reload("unchanged", model_version=previous, previous=previous, bundle=choice.path)
            log.info("reloading: loading %s while version %s keeps serving", choice.describe(), previous)
            started = time.monotonic()
            opening = loop.run_in_executor(None, servicer.open_runtime, choice.path)
            try:
                new = await asyncio.shield(opening)
            except asyncio.CancelledError:  # the bundle still loads: close it when it has
                opening.add_done_callback(_close_unused)
                raise
            except DenariusError as error:
                return self._reload_failed(choice.path, previous, time.monotonic() - started, str(error))
            except Exception as error:
                log.exception("reloading %s failed unexpectedly", choice.path)
                return self._reload_failed(choice.path, previous, time.monotonic() - started, repr(error))
            load_s = time.monotonic() - started
            if self._server is None:  # a drain began while it loaded: it is not served
                await loop.run_in_executor(None, new.close)
                return Reload("skipped", model_version=None, previous=previous, bundle=choice.path, load_s=load_s,
                              error="the server began draining while the bundle loaded")
            old = servicer.swap(new, timeout=self._retire_timeout())
            self._serving, self._failed = choice, None
            self.metrics.reloads.labels(outcome="ok").inc()
            log.info("reloaded: serving version %s (%s) instead of %s; loaded and warmed up in %.2f s; "
                     "the old bundle closes after its %d requests in flight", new.bundle.version, choice.describe(),
                     previous, load_s, old.users if old is not None else 0)
            return Reload("ok", model_version=new.bundle.version, previous=previous, bundle=choice.path, load_s=load_s)

    def _reload_failed(self, folder: Path | None, previous: str, load_s: float, error: str) -> Reload:
        if folder is not None:
            self._failed = (folder, repository.folder_stamp(folder))
        self.metrics.reloads.labels(outcome="failed").inc()
        log.error("reload failed, version %s keeps serving: %s", previous, error)
        return Reload("failed", model_version=previous, previous=previous, bundle=folder, load_s=load_s, error=error)

    async def _watch(self, interval: float) -> None:
        """Every ``interval`` seconds: reload if the bundle chosen now is not the one served."""
        while True:
            await asyncio.sleep(interval)
            try:  # shielded: a drain cancelling the watcher waits for a load under way instead
                await asyncio.shield(self.reload(force=False))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the model watcher failed; it goes on polling")

    def _start_metrics(self) -> None:
        """/metrics on its own host (loopback by default), TLS like gRPC, the same tokens."""
        config = self.config
        tls = None
        if config.metrics_tls_cert is not None and config.metrics_tls_key is not None:
            tls = (config.metrics_tls_cert, config.metrics_tls_key)
        elif config.tls_cert is not None and config.tls_key is not None:
            tls = (config.tls_cert, config.tls_key)
        authorize: Callable[[str | None], bool] | None = None
        if config.tokens:
            auth = TokenAuthInterceptor(config.tokens)

            def check(header: str | None) -> bool:
                return auth.authorized([("authorization", header)] if header is not None else [])
            authorize = check
        self.metrics_port = self.metrics.start_http(
            host=config.metrics_host, port=config.metrics_port or 0, tls=tls, authorize=authorize)

    def drain_grace(self, cap: float) -> tuple[float, str]:
        """How long to wait for the calls in flight now: (seconds, why).

        The latest deadline among them plus DRAIN_SLACK_S (a Landmarks call's deadline is at
        most ``landmark_timeout_s`` after it arrived; a call without one counts as the cap),
        never more than ``cap``; 0 when nothing is in flight. Only CoinService calls count:
        health watches and reflection streams are not work, and end with the server.
        """
        calls = self._work()
        if not calls:
            return 0.0, "no call in flight"
        now, latest, unbounded = time.monotonic(), 0.0, 0
        for call in calls:
            deadline = call.deadline
            if call.method == "Landmarks":
                limit = call.started + self.config.landmark_timeout_s
                deadline = limit if deadline is None else min(deadline, limit)
            if deadline is None:
                unbounded += 1
            else:
                latest = max(latest, deadline - now)
        if unbounded:
            return cap, f"{len(calls)} calls in flight, {unbounded} without a deadline: the cap"
        needed = max(0.0, latest) + DRAIN_SLACK_S
        why = f"{len(calls)} calls in flight, the latest deadline in {latest:.1f} s"
        if needed > cap:
            log.warning("draining: in-flight calls may run %.1f s, past the grace cap of %.1f s: "
                        "the slowest will be cut (raise --grace)", needed, cap)
        return min(cap, needed), why

    async def _start_http(self) -> None:
        """The HTTP API on this loop, over the servicer's runtime, landmark batcher and landmark
        limit (one limit for both ports), counted in this server's metrics (503 until loaded)."""
        from denarius.serving.http import HttpConfig, HttpFrontend

        servicer = self._servicer
        assert servicer is not None
        config = HttpConfig.from_server_config(self.config, port=self.config.http_port or 0, host=self.config.http_host)
        frontend = HttpFrontend(lambda: servicer.runtime, config, landmarks=lambda: servicer.landmark_batcher,
                                landmark_slots=servicer.landmark_slots, metrics=self.metrics)
        self._http = frontend  # set first: a failed start is stopped by the drain that follows
        await frontend.start()
        self.http_port = frontend.port

    async def drain(self, *, grace_s: float | None = None, delay_s: float | None = None) -> None:
        """NOT_SERVING, (drain delay,) stop accepting, finish in-flight RPCs within the grace
        period, close the engine. Idempotent."""
        grace = self.config.grace_s if grace_s is None else grace_s
        delay = self.config.drain_delay_s if delay_s is None else delay_s
        if self._server is None:
            return
        server, self._server = self._server, None
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        await self.health.enter_graceful_shutdown()  # NOT_SERVING for good: no later set() revives it
        not_serving_at = time.monotonic()
        http, self._http = self._http, None
        if http is not None:
            http.begin_drain()  # /readyz 503 too
        if delay > 0:
            log.info("draining: NOT_SERVING, still accepting calls for %.1f s", delay)
            await asyncio.sleep(delay)
        wait, why = self.drain_grace(grace)
        log.info("draining: no new calls; waiting up to %.1f s for the in-flight calls (%s; cap %.1f s)", wait, why, grace)
        started = time.monotonic()
        # Refuses new calls at once; the loop below ends the wait (stop(0)) before this would.
        stopping = [asyncio.ensure_future(server.stop(wait + 1.0))]
        if http is not None:  # returns as soon as its in-flight requests are done, at most after the cap
            stopping.append(asyncio.ensure_future(http.stop(grace_s=grace)))
        while self._work() and time.monotonic() - started < wait:
            await asyncio.sleep(0.05)
        left = len(self._work())
        # Open health watches need the loop for a moment to send their NOT_SERVING.
        await asyncio.sleep(max(0.0, WATCH_FLUSH_S - (time.monotonic() - not_serving_at)))
        await server.stop(0)  # cuts what is left: calls past the grace, health watches, reflection streams
        await asyncio.gather(*stopping)
        log.info("draining: in-flight calls done after %.1f s%s", time.monotonic() - started,
                 f"; {left} cut at the grace" if left else "")
        async with self._reload_lock:  # a bundle still loading is closed by its reload
            pass
        if self._servicer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._servicer.close)
        self.metrics.close()
        decode_budget.uninstall(self.decode_budget, self._previous_budget)
        log.info("stopped")
        self._stopped.set()

    def _work(self) -> list[InflightCall]:
        return [call for call in self.calls.snapshot() if call.method in WORK_METHODS]

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _close_unused(opening: asyncio.Future) -> None:
    """Close a runtime whose reload was cancelled while it loaded (in a thread: closing blocks)."""
    if opening.cancelled() or opening.exception() is not None:
        return
    threading.Thread(target=opening.result().close, name="denarius-close-unused", daemon=True).start()


class BackgroundServer:
    """Run a :class:`CoinServer` on an event loop in a daemon thread (tests, benchmarks)::

        with BackgroundServer(config) as server:
            CoinClient(f"127.0.0.1:{server.port}")...
    """

    def __init__(self, config: ServerConfig):
        self.server = CoinServer(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="denarius-server", daemon=True)

    @property
    def port(self) -> int:
        if self.server.port is None:
            raise RuntimeError("the server is not started: use it as a context manager")
        return self.server.port

    @property
    def metrics_port(self) -> int | None:
        return self.server.metrics_port

    @property
    def http_port(self) -> int | None:
        return self.server.http_port

    def call(self, coroutine, *, timeout: float | None = None):
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def reload(self, *, force: bool = True, timeout: float | None = 300) -> Reload:
        """:meth:`CoinServer.reload` on the server's loop (what SIGHUP runs in ``serve``)."""
        return self.call(self.server.reload(force=force), timeout=timeout)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        try:
            self.call(self.server.start())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self, *, grace_s: float | None = None, delay_s: float | None = None) -> None:
        if self._thread.is_alive():
            self.call(self.server.drain(grace_s=grace_s, delay_s=delay_s))
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __exit__(self, *exc) -> None:
        self.stop(grace_s=1.0, delay_s=0.0)


def serve(config: ServerConfig) -> int:
    """Serve in the foreground until SIGTERM/SIGINT, then drain; returns the exit code 0.

    SIGHUP reloads the bundle (:meth:`CoinServer.reload`): the same folder again, or the
    highest version of a model repository.
    """

    async def main() -> None:
        server = CoinServer(config)
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)
        reloads: set[asyncio.Task] = set()

        def hangup() -> None:
            log.info("SIGHUP received: reloading the bundle")
            task = loop.create_task(server.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)
        loop.add_signal_handler(signal.SIGHUP, hangup)
        await server.start()
        # The parent process (or an orchestrator) can read the bound ports from the log.
        log.info("ready: port=%d metrics_port=%s http_port=%s", server.port, server.metrics_port, server.http_port)
        await stop_requested.wait()
        log.info("signal received: draining")
        await server.drain()

    asyncio.run(main())
    return 0
