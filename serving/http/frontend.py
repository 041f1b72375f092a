"""``HttpFrontend``: the HTTP/JSON API and the web page, served by uvicorn in the gRPC process.

It runs on an asyncio loop, the gRPC server's (``await frontend.start()`` beside
``grpc.aio``'s server) or, as a context manager, on a loop in a thread of its own (tests,
or beside a :class:`~denarius.serving.server.BackgroundServer`)::

    frontend = HttpFrontend(runtime, HttpConfig(port=8080, tokens=("t0k3n",)))
    await frontend.start()          # bound and accepting; frontend.port is the port
    ...
    await frontend.stop()           # readyz 503, finish in-flight requests (grace), close

    with HttpFrontend(lambda: servicer.runtime, config, landmarks=lambda: servicer.landmark_batcher) as frontend:
        requests.post(f"http://127.0.0.1:{frontend.port}/v1/identify", files=...)

``runtime`` is a :class:`~denarius.serving.runtime.Runtime` or a callable that returns it
(None while the bundle loads: the API answers 503 until then). ``landmarks`` is the
:class:`~denarius.engine.landmarks.batcher.LandmarkBatcher` to share with the gRPC servicer
(or a callable returning it); without one the frontend opens its own on the runtime's
landmark service and closes it when it stops. ``landmark_slots`` is the gRPC servicer's
:class:`~denarius.serving.landmark_slots.LandmarkSlots` (one landmark limit for both ports;
without it the frontend keeps ``config.landmark_slots`` of its own), and ``metrics`` the
server's :class:`~denarius.serving.metrics.ServerMetrics` (HTTP requests are counted there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from denarius.engine.errors import ConfigError
from denarius.serving.http.app import HttpApi, HttpConfig
from denarius.serving.landmark_slots import LandmarkSlots
from denarius.serving.metrics import ServerMetrics
from denarius.serving.runtime import Runtime

__all__ = ["HttpFrontend"]

log = logging.getLogger(__name__)

_POLL_S = 0.01


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process' owner (``denarius serve``) drains on SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _provider(value: Any) -> Callable[[], Any]:
    return value if callable(value) else (lambda: value)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Its protocol is set explicitly: asyncio turns Nagle off
    (TCP_NODELAY) only on connections accepted from an IPPROTO_TCP socket, and without it
    every keep-alive request waited ~40 ms for a delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(512)
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen for HTTP on {host}:{port}: {error.strerror}") from None
    return sock


class HttpFrontend:
    """One HTTP listener over one runtime; see the module docstring for the lifecycle."""

    def __init__(self, runtime: Runtime | Callable[[], Runtime | None], config: HttpConfig, *, landmarks: Any = None,
                 landmark_slots: LandmarkSlots | None = None, metrics: ServerMetrics | None = None):
        self.config = config
        self._runtime = _provider(runtime)
        self._given_landmarks = None if landmarks is None else _provider(landmarks)
        self._own_landmarks = None
        self._lock = threading.Lock()
        self._draining = False
        self.api = HttpApi(runtime=self._runtime, landmarks=self._landmark_batcher, config=config,
                           draining=lambda: self._draining, landmark_slots=landmark_slots, metrics=metrics)
        self.port: int | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _landmark_batcher(self):
        if self._given_landmarks is not None:
            return self._given_landmarks()
        with self._lock:
            runtime = self._runtime()
            if self._own_landmarks is None and runtime is not None and not self._draining:
                from denarius.engine.landmarks.batcher import LandmarkBatcher

                self._own_landmarks = LandmarkBatcher(runtime.landmarks, workers=self.config.landmark_workers,
                                                      max_batch=self.config.landmark_batch)
            return self._own_landmarks

    def begin_drain(self) -> None:
        """From now on /readyz answers 503 (load balancers stop sending); requests still run."""
        self._draining = True

    # -- on the caller's loop ------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and start serving on the running loop; returns once connections are accepted.

        Raises:
            ConfigError: the address cannot be bound.
        """
        sock = _bind(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        cert, key = self.config.tls_cert, self.config.tls_key
        tls = cert is not None and key is not None
        config = uvicorn.Config(self.api.app, lifespan="off", log_config=None, access_log=False, server_header=False,
                                timeout_graceful_shutdown=max(math.ceil(self.config.grace_s), 1), timeout_keep_alive=5,
                                ssl_certfile=str(cert) if tls else None, ssl_keyfile=str(key) if tls else None)
        try:
            config.load()  # reads the certificate now, so a bad one fails start() rather than the first request
        except (OSError, ValueError) as error:
            sock.close()
            raise ConfigError(f"cannot serve HTTPS with {self.config.tls_cert}: {error}") from None
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._task.result()  # re-raises what stopped it
                raise ConfigError(f"the HTTP server on port {self.port} stopped while starting")
            await asyncio.sleep(_POLL_S)
        log.info("HTTP API and web page on %s://%s:%d/", "https" if tls else "http", self.config.host, self.port)

    async def stop(self, *, grace_s: float | None = None) -> None:
        """readyz 503, stop accepting, let in-flight requests finish within the grace period
        (``grace_s``, default the config's), then close the frontend's own landmark batcher.
        Idempotent."""
        self.begin_drain()
        if self._server is not None and self._task is not None:
            if grace_s is not None:
                self._server.config.timeout_graceful_shutdown = max(math.ceil(grace_s), 1)
            self._server.should_exit = True
            try:
                await self._task
            finally:
                self._server, self._task = None, None
        with self._lock:
            own, self._own_landmarks = self._own_landmarks, None
        if own is not None:
            await asyncio.get_running_loop().run_in_executor(None, own.close)

    # -- on a loop of its own (context manager) ------------------------------------------------
    def __enter__(self) -> HttpFrontend:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="denarius-http", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), self._loop).result(timeout=30)
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(timeout=self.config.grace_s + 30)
            self._close_loop()

    def _close_loop(self) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        self._loop = self._thread = None
