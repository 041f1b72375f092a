"""The HTTP/JSON API and the web page, as one FastAPI application over the gRPC server's runtime.

Every route turns its body into the request message a gRPC client would send
(:mod:`denarius.serving.http.body`), calls the same :class:`~denarius.serving.runtime.Runtime`
methods as :class:`~denarius.serving.servicer.CoinServicer` (identification through the
engine's dynamic batcher, landmark searches through the landmark batcher, shared with the
gRPC server when it runs in the same process) and answers the response message as proto3
JSON. Errors take their status from the one table in :mod:`denarius.serving.status`.

=========================  ============================  ======================================
route                      request                       answer
=========================  ============================  ======================================
``POST /v1/identify``      IdentifyRequest (form/JSON)   IdentifyResponse
``POST /v1/landmarks``     LandmarksRequest (form/JSON)  LandmarksResponse (``?heatmap=false``
                                                         leaves the heatmap values out)
``GET /v1/model``          -                             ModelInfo
``GET /v1/guidebook``      -                             the bundle's guidebook index (JSON);
                                                         404 when the bundle has none
``GET /v1/guidebook/{l}``  ``?kind=ric|emperor``         the PNG of label ``l``'s guidebook (the
                                                         mean landmarks of its coins); 404 JSON
                                                         when there is none
``GET /healthz``           -                             200 while the process serves HTTP
``GET /readyz``            -                             200 once the model is loaded, 503
                                                         while loading or draining
``GET /openapi.json``      -                             the OpenAPI document
``GET /``                  -                             the web page (``static/``)
=========================  ============================  ======================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from google.protobuf.message import Message
from starlette.exceptions import HTTPException as StarletteHTTPException

from denarius.engine.errors import BackendUnavailable, Cancelled, ConfigError, DeadlineExceeded, Overloaded
from denarius.engine.landmarks.guidebook import KINDS as GUIDEBOOK_KINDS
from denarius.engine.landmarks.guidebook import BundleGuidebook
from denarius.serving.denarius.v1 import coins_pb2
from denarius.serving.http.body import read_message
from denarius.serving.http.convert import message_json
from denarius.serving.http.errors import ERROR_SCHEMA, HttpProblem, error_response, request_id_headers, response_for
from denarius.serving.http.request_metrics import RequestMetrics
from denarius.serving.http.schema import form_schema, message_schemas, ref
from denarius.serving.interceptors import TokenAuthInterceptor, check_tokens
from denarius.serving.landmark_slots import LandmarkSlots
from denarius.serving.logs import check_request_id
from denarius.serving.metrics import ServerMetrics
from denarius.serving.runtime import SERVER_VERSION, Runtime

__all__ = ["HttpConfig", "HttpApi", "STATIC_DIR"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP frontend's settings; :meth:`from_server_config` takes the gRPC server's limits.

    Attributes:
        host, port: listen address; port 0 = any free port.
        tokens: accepted bearer tokens (``Authorization: Bearer <token>``); empty = open.
        max_body_bytes: largest request body (larger -> 413), the gRPC message limit.
        max_concurrent: requests to ``/v1/`` handled at once (more -> 429).
        landmark_slots: landmark searches running or waiting at once (more -> 429), when the
            frontend is not given the gRPC servicer's limit (``HttpFrontend(landmark_slots=)``).
        landmark_workers, landmark_batch: the landmark batcher the frontend opens when it
            is not given the gRPC server's.
        default_top_k: candidates when a request leaves ``top_k`` at 0.
        timeout_s: each request's deadline (504 past it; a landmark search stops).
        grace_s: how long in-flight requests may finish when the frontend stops.
        tls_cert, tls_key: PEM files: HTTPS with the gRPC server's certificate; both or neither.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    tokens: tuple[str, ...] = field(default=(), repr=False)
    max_body_bytes: int = 16 * 1024 * 1024
    max_concurrent: int = 512
    landmark_slots: int = 5
    landmark_workers: int = 1
    landmark_batch: int = 8
    default_top_k: int = 5
    timeout_s: float = 300.0
    grace_s: float = 10.0
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("HTTPS needs both tls_cert and tls_key (or neither)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"http port must be in [0, 65535], got {self.port}")
        for name in ("max_body_bytes", "max_concurrent", "landmark_slots", "landmark_workers", "landmark_batch", "default_top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0 or self.grace_s < 0:
            raise ConfigError("timeout_s must be > 0 and grace_s >= 0")
        check_tokens(self.tokens)

    @classmethod
    def from_server_config(cls, config: Any, *, port: int, host: str | None = None) -> HttpConfig:
        """The HTTP settings of a :class:`~denarius.serving.server.ServerConfig`: its tokens,
        message limit, concurrency limit, landmark slots, default top-k, the Landmarks time
        limit (as every request's deadline), grace period and TLS certificate."""
        return cls(
            host=config.host if host is None else host, port=port, tokens=config.tokens,
            max_body_bytes=config.max_message_bytes, max_concurrent=config.max_concurrent_rpcs,
            landmark_slots=config.landmark_workers + config.landmark_queue,
            landmark_workers=config.landmark_workers, landmark_batch=config.landmark_batch,
            default_top_k=config.default_top_k, timeout_s=config.landmark_timeout_s, grace_s=config.grace_s,
            tls_cert=config.tls_cert, tls_key=config.tls_key,
        )


def _doc_responses(schema: dict | None, *, auth: bool, body: bool) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route: its answer and the errors it can give."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    out: dict[int | str, dict[str, Any]] = {}
    if schema is not None:
        out[200] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    described = {400: "a bad photo or parameter (the message names the side or field)",
                 401: "missing or wrong bearer token", 413: "the body is over the size limit",
                 415: "not multipart/form-data or application/json", 429: "overloaded: retry after Retry-After seconds",
                 500: "unexpected failure (the message has the request id)", 501: "this bundle cannot run that method",
                 503: "the model is loading or the server is draining", 504: "the deadline passed"}
    for status, text in described.items():
        if (status == 401 and not auth) or (status in (413, 415) and not body):
            continue
        out[status] = {"description": text, **error}
    return out


def _body_doc(message: type[Message]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": form_schema(message.DESCRIPTOR)},
        "application/json": {"schema": ref(message.DESCRIPTOR)},
    }}}


class HttpApi:
    """The routes over one runtime; :attr:`app` is the ASGI application.

    Args:
        runtime: returns the loaded Runtime, or None while the bundle is still loading.
        landmarks: returns the LandmarkBatcher to run searches on (None while loading).
        config: limits and tokens.
        draining: returns True once the server is shutting down (readyz says 503).
        landmark_slots: the process' one landmark limit, shared with the gRPC servicer
            (``CoinServicer.landmark_slots``); None = a limit of this frontend's own,
            ``config.landmark_slots``.
        metrics: the server's :class:`~denarius.serving.metrics.ServerMetrics`: every
            request is counted and timed there (``denarius_http_*``); None = not recorded.
    """

    def __init__(self, *, runtime: Callable[[], Runtime | None], landmarks: Callable[[], Any],
                 config: HttpConfig, draining: Callable[[], bool] = lambda: False,
                 landmark_slots: LandmarkSlots | None = None, metrics: ServerMetrics | None = None):
        self.config = config
        self._runtime, self._landmarks, self._draining = runtime, landmarks, draining
        self._auth = TokenAuthInterceptor(config.tokens) if config.tokens else None
        self._inflight = 0
        self.landmark_slots = landmark_slots if landmark_slots is not None else LandmarkSlots(config.landmark_slots)
        self._metrics = metrics
        self._counts_lock = threading.Lock()
        self.landmarks_cancelled = 0  # searches that ended early because their client left or timed out
        self.app = self._build()

    # -- plumbing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _using(self) -> Iterator[Runtime]:
        """The runtime served now, held for one request (a bundle swap closes it only after
        its last request; see :meth:`Runtime.acquire`)."""
        while True:
            runtime = self._runtime()
            if runtime is None:
                raise BackendUnavailable("the model bundle is still loading; retry shortly")
            if runtime.acquire():
                break
            if self._runtime() is runtime:  # retired and not replaced: closing
                raise BackendUnavailable("the server is shutting down; retry on another replica")
        try:
            yield runtime
        finally:
            runtime.release()

    async def _authorize(self, request: Request) -> None:
        if self._auth is None:
            return
        header = request.headers.get("authorization")
        if self._auth.authorized([("authorization", header)] if header is not None else []):
            return
        message = "invalid bearer token" if header is not None else "missing bearer token: send header 'Authorization: Bearer <token>'"
        log.info("rejected %s %s: %s", request.method, request.url.path, message)
        raise HttpProblem(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": "Bearer"})

    async def _answer(self, request: Request, work: Callable[[dict], Awaitable[Message]],
                      shape: Callable[[dict], None] | None = None) -> Response:
        """Run one API call: the concurrency limit, the request id, errors -> the status table."""
        offered = request.headers.get("x-request-id", "")
        call = {"rid": offered if request_id_headers(offered) else uuid.uuid4().hex[:16]}
        if self._inflight >= self.config.max_concurrent:
            return error_response(429, "RESOURCE_EXHAUSTED",
                                  f"{self._inflight} requests are in flight, this server's limit; retry later or use another replica",
                                  request_id=call["rid"])
        self._inflight += 1
        try:
            answer = message_json(await work(call))
            if shape is not None:
                shape(answer)
            return JSONResponse(answer, headers=request_id_headers(call["rid"]))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes its JSON error (5xx ones logged)
            return response_for(error, call["rid"])
        finally:
            self._inflight -= 1

    async def _wait(self, future: Future, request: Request, *, gave_up: threading.Event | None = None) -> Any:
        """The future's result; if the client disconnects first, stop its work (499)."""
        waited = asyncio.wrap_future(future)
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({waited, watcher}, timeout=self.config.timeout_s + 5.0,
                                         return_when=asyncio.FIRST_COMPLETED)
            if waited in done:
                return waited.result()
            if gave_up is not None:
                gave_up.set()
            future.cancel()
            if watcher in done:
                raise Cancelled("the client went away")
            raise DeadlineExceeded(f"the request ran past this server's {self.config.timeout_s:.0f} s deadline")
        finally:
            watcher.cancel()
            if not waited.done():
                waited.cancel()

    # -- the API --------------------------------------------------------------------------------
    async def identify(self, request: Request, call: dict) -> Message:
        received = time.perf_counter()
        message = await read_message(request, coins_pb2.IdentifyRequest(), limit=self.config.max_body_bytes)
        call["rid"] = check_request_id(message.request_id) if message.request_id else call["rid"]  # InputError: 400
        with self._using() as runtime:
            pair = runtime.pair_from_request(message)  # InputError when neither side is present
            deadline = time.monotonic() + self.config.timeout_s
            future = runtime.submit(pair, top_k=message.top_k or self.config.default_top_k, deadline=deadline)
            result = await self._wait(future, request)
            return runtime.identification_response(result, request_id=call["rid"], received=received)

    async def landmarks(self, request: Request, call: dict) -> Message:
        received = time.perf_counter()
        message = await read_message(request, coins_pb2.LandmarksRequest(), limit=self.config.max_body_bytes)
        call["rid"] = check_request_id(message.request_id) if message.request_id else call["rid"]  # InputError: 400
        with self._using() as runtime:
            job = runtime.landmark_job(message)  # validates everything before queueing
            # A server's runtime has its own batcher: the search runs on the bundle it started on.
            batcher = runtime.landmark_batcher if runtime.landmark_batcher is not None else self._landmarks()
            if batcher is None:
                raise BackendUnavailable("the landmark workers are still starting; retry shortly")
            deadline = time.monotonic() + self.config.timeout_s
            gave_up = threading.Event()
            job.should_stop = lambda: gave_up.is_set() or time.monotonic() >= deadline
            job.deadline = deadline
            slots = self.landmark_slots

            def settled(done: Future) -> None:  # on a landmark worker's thread
                if done.cancelled() or isinstance(done.exception(), (Cancelled, DeadlineExceeded)):
                    with self._counts_lock:
                        self.landmarks_cancelled += 1
                    if self._metrics is not None:
                        self._metrics.landmarks_cancelled.inc()
                slots.release()

            # As in the gRPC servicer, a slot (shared with it) is held until the search really ends.
            if not slots.try_acquire():
                raise Overloaded(slots.busy_message())
            try:
                future = batcher.submit(job)
            except BaseException:
                slots.release()
                raise
            future.add_done_callback(settled)
            try:
                result = await self._wait(future, request, gave_up=gave_up)
            except asyncio.CancelledError:
                gave_up.set()
                raise
            started = job.started if job.started is not None else received
            return runtime.landmarks_response(result, request_id=call["rid"], received=received, started=started)

    async def model(self, request: Request, call: dict) -> Message:
        with self._using() as runtime:
            return runtime.model_info()

    # -- guidebooks (files of the bundle, sha256-checked on every read) --------------------------
    async def _guidebook_answer(self, work: Callable[[Runtime], Response]) -> Response:
        rid = uuid.uuid4().hex[:16]
        try:
            with self._using() as runtime:
                return await asyncio.to_thread(work, runtime)
        except Exception as error:  # noqa: BLE001 - every failure becomes its JSON error
            return response_for(error, rid)

    @staticmethod
    def _guidebook_of(runtime: Runtime) -> BundleGuidebook:
        book = BundleGuidebook.of(runtime.bundle)
        if book is None:
            raise HttpProblem(404, "NOT_FOUND", f"the bundle being served (version {runtime.bundle.version}) has no guidebook; "
                                                "build one with `denarius guidebook BUNDLE --images MANIFEST`")
        return book

    def guidebook_index(self, runtime: Runtime) -> Response:
        book = self._guidebook_of(runtime)
        entries = [{key: value for key, value in entry.to_dict().items() if key != "file"}
                   | {"url": f"v1/guidebook/{quote(entry.label, safe='')}?kind={entry.kind}"} for entry in book.entries]
        return JSONResponse({"model_version": runtime.bundle.version, "method": book.index.get("method", ""),
                             "settings": book.index.get("settings", {}), "entries": entries})

    def guidebook_png(self, runtime: Runtime, label: str, kind: str | None) -> Response:
        if kind is not None and kind not in GUIDEBOOK_KINDS:
            raise HttpProblem(400, "INVALID_ARGUMENT", f"kind must be one of {', '.join(GUIDEBOOK_KINDS)}, got {kind[:40]!r}")
        book = self._guidebook_of(runtime)
        entry = book.find(label, kind)
        if entry is None:
            known = book.labels(kind or "ric") or book.labels("emperor")
            raise HttpProblem(404, "NOT_FOUND", f"no guidebook for {label[:100]!r} in this bundle (it had no held-out coins of "
                                                f"that class); the guidebook has: {', '.join(known[:20])}"
                                                f"{', ...' if len(known) > 20 else ''}")
        headers = {"X-Guidebook-Coins": str(entry.coins), "X-Guidebook-Kind": entry.kind, "Cache-Control": "no-cache"}
        return Response(book.png(entry), media_type="image/png", headers=headers)

    # -- the application ------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        app = FastAPI(title="Denarius", version=SERVER_VERSION, docs_url=None, redoc_url=None,
                      description="Identify Roman imperial coins from an obverse/reverse photo pair and show their "
                                  "characteristic landmarks. The messages are the gRPC service's (denarius.v1), in "
                                  "the proto3 JSON mapping; photos go as multipart file parts or base64 JSON.")
        auth = self._auth is not None
        guard = [Depends(self._authorize)]
        if auth:
            # Documents the scheme (the check itself is _authorize, the gRPC interceptor's comparison).
            guard.append(Depends(HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")))
        landmark_query = {"parameters": [{
            "name": "heatmap", "in": "query", "required": False, "schema": {"type": "boolean", "default": True},
            "description": "false: leave the heatmap values out of the answer (the overlay PNG is enough for a page)"}]}

        @app.post("/v1/identify", dependencies=guard, response_class=JSONResponse, summary="Identify one coin",
                  description="Ranked RIC candidates of one coin from its obverse and/or reverse photo "
                              "(gRPC CoinService.Identify).",
                  responses=_doc_responses(ref(coins_pb2.IdentifyResponse.DESCRIPTOR), auth=auth, body=True),
                  openapi_extra=_body_doc(coins_pb2.IdentifyRequest))
        async def identify(request: Request) -> Response:
            return await self._answer(request, lambda call: self.identify(request, call))

        @app.post("/v1/landmarks", dependencies=guard, response_class=JSONResponse, summary="Landmarks of one side",
                  description="The characteristic landmarks of one coin side: heatmap, regions and, with "
                              "include_overlay, a 512-px overlay PNG (gRPC CoinService.Landmarks).",
                  responses=_doc_responses(ref(coins_pb2.LandmarksResponse.DESCRIPTOR), auth=auth, body=True),
                  openapi_extra={**_body_doc(coins_pb2.LandmarksRequest), **landmark_query})
        async def landmarks(request: Request) -> Response:
            keep = request.query_params.get("heatmap", "true").strip().lower()
            if keep not in ("true", "false", "1", "0"):
                return error_response(400, "INVALID_ARGUMENT", f"heatmap must be true or false, got {keep[:40]!r}")

            def shape(answer: dict) -> None:
                if keep in ("false", "0"):
                    answer.pop("heatmap", None)
            return await self._answer(request, lambda call: self.landmarks(request, call), shape)

        @app.get("/v1/model", dependencies=guard, response_class=JSONResponse, summary="The model being served",
                 responses=_doc_responses(ref(coins_pb2.ModelInfo.DESCRIPTOR), auth=auth, body=False))
        async def model(request: Request) -> Response:
            return await self._answer(request, lambda call: self.model(request, call))

        guidebook_schema = {"type": "object", "required": ["model_version", "entries"], "properties": {
            "model_version": {"type": "string"}, "method": {"type": "string"}, "settings": {"type": "object"},
            "entries": {"type": "array", "items": {"type": "object", "properties": {
                "kind": {"type": "string", "enum": list(GUIDEBOOK_KINDS)}, "label": {"type": "string"},
                "side": {"type": "string"}, "coins": {"type": "integer"}, "representative": {"type": "string"},
                "url": {"type": "string", "description": "the PNG, relative to the API's root"}}}}}}
        not_found: dict[int | str, dict[str, Any]] = {404: {"description": "the bundle has no guidebook (or none for this label)",
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}}

        @app.get("/v1/guidebook", dependencies=guard, response_class=JSONResponse, summary="The bundle's class guidebooks",
                 description="Which RIC labels and emperors have a guidebook: the mean landmark map over held-out coins "
                             "of that class (`denarius guidebook`), and how many coins each averages.",
                 responses={**_doc_responses(guidebook_schema, auth=auth, body=False), **not_found})
        async def guidebook_index(request: Request) -> Response:
            return await self._guidebook_answer(self.guidebook_index)

        @app.get("/v1/guidebook/{label:path}", dependencies=guard, summary="The guidebook of one class (PNG)",
                 description="The mean landmark map of a RIC label (or, with kind=emperor or when no RIC label has "
                             "that name, an emperor) drawn over its most representative coin, 512 x 512 px.",
                 responses={**_doc_responses(None, auth=auth, body=False), **not_found,
                            200: {"description": "the PNG", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
                 openapi_extra={"parameters": [
                     {"name": "label", "in": "path", "required": True, "schema": {"type": "string"},
                      "description": "the RIC label or emperor, URL-encoded"},
                     {"name": "kind", "in": "query", "required": False, "schema": {"type": "string", "enum": list(GUIDEBOOK_KINDS)},
                      "description": "ric (RIC label, reverse) or emperor (obverse); default: RIC labels first"}]})
        async def guidebook_png(request: Request) -> Response:
            label, kind = request.path_params["label"], request.query_params.get("kind")
            return await self._guidebook_answer(lambda runtime: self.guidebook_png(runtime, label, kind))

        status_schema = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}

        @app.get("/healthz", response_class=JSONResponse, summary="Liveness: the process answers",
                 responses={200: {"description": "alive", "content": {"application/json": {"schema": status_schema}}}})
        async def healthz() -> Response:
            return JSONResponse({"status": "alive"})

        @app.get("/readyz", response_class=JSONResponse, summary="Readiness: the model is loaded and not draining",
                 responses={200: {"description": "ready", "content": {"application/json": {"schema": status_schema}}},
                            503: {"description": "loading or draining",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}})
        async def readyz() -> Response:
            if self._draining():
                return error_response(503, "UNAVAILABLE", "the server is shutting down; use another replica")
            if self._runtime() is None:
                return error_response(503, "UNAVAILABLE", "the model bundle is still loading")
            return JSONResponse({"status": "SERVING"})

        @app.get("/", include_in_schema=False)
        async def page() -> Response:
            return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.exception_handler(HttpProblem)
        async def problem(_request: Request, error: HttpProblem) -> Response:
            return response_for(error, "")

        @app.exception_handler(StarletteHTTPException)
        async def http_error(_request: Request, error: StarletteHTTPException) -> Response:
            names = {404: "NOT_FOUND", 405: "UNIMPLEMENTED", 400: "INVALID_ARGUMENT"}
            return error_response(error.status_code, names.get(error.status_code, "UNKNOWN"), str(error.detail),
                                  headers=dict(error.headers or {}))

        @app.exception_handler(RequestValidationError)
        async def invalid(_request: Request, error: RequestValidationError) -> Response:
            return error_response(400, "INVALID_ARGUMENT", f"invalid request: {error.errors()}")

        base_openapi = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                document = base_openapi()
                schemas = document.setdefault("components", {}).setdefault("schemas", {})
                for request_type in (coins_pb2.IdentifyRequest, coins_pb2.LandmarksRequest):
                    schemas.update(message_schemas(request_type.DESCRIPTOR, request=True))
                for response_type in (coins_pb2.IdentifyResponse, coins_pb2.LandmarksResponse, coins_pb2.ModelInfo):
                    schemas.update(message_schemas(response_type.DESCRIPTOR, request=False))
                schemas["ErrorBody"] = ERROR_SCHEMA
                app.openapi_schema = document
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]
        if self._metrics is not None:
            app.add_middleware(RequestMetrics, metrics=self._metrics)
        return app


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: only that message is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
