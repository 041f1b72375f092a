"""Server interceptors: per-RPC metrics, bearer-token authentication and request parsing.

All three wrap the real method handler rather than replacing it, so a rejected streaming
call is still answered as a stream (a unary stand-in would wait for a request message first).
The server installs them in this order, outermost first: metrics (sees every outcome, the
rejections included), authentication (checked before any byte of the payload is parsed),
parsing (a message that is not valid protobuf is INVALID_ARGUMENT, not gRPC's UNKNOWN).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc._cython.cygrpc import ExecuteBatchError

from denarius.engine.errors import ConfigError, InputError
from denarius.serving.messages import MalformedRequest, parse_request
from denarius.serving.metrics import ServerMetrics

__all__ = ["TokenAuthInterceptor", "check_tokens", "MetricsInterceptor", "RequestParsingInterceptor", "InflightCalls", "InflightCall",
           "final_code", "OPEN_METHOD_PREFIXES", "abort_call", "end_if_expired", "quiet_undeliverable_answers"]

log = logging.getLogger(__name__)

# Load balancers and orchestrators probe health without credentials.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def check_tokens(tokens: Iterable[str]) -> tuple[str, ...]:
    """The configured bearer tokens as a tuple; ConfigError if one is empty or holds whitespace
    (it could never be sent in an ``Authorization: Bearer`` header)."""
    tokens = tuple(tokens)
    if any(not t or any(c.isspace() for c in t) for t in tokens):
        raise ConfigError("tokens must be non-empty and contain no whitespace")
    return tokens


def _digest(token: str | bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the token length.
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def _wrap(handler: grpc.RpcMethodHandler, wrap_unary: Callable, wrap_stream: Callable) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped (unary-response or stream-response)."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap_unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(
        wrap_stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer)


_UNDELIVERABLE = "ExecuteBatchError raised in core by servicer method"


class _UndeliverableAnswer(logging.Filter):
    """Turn gRPC core's ERROR with traceback for an answer sent to a call that had already
    ended into one WARNING line.

    A handler that finishes just as its deadline passes (or as its client goes away) returns
    an answer gRPC can no longer send; core logs that with a traceback as if the server had
    failed. Nothing was lost that anyone waits for: the client already has its status
    (DEADLINE_EXCEEDED or CANCELLED), and the metrics count the call by it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_UNDELIVERABLE):
            method = record.getMessage()[len(_UNDELIVERABLE):].strip(" []")
            record.msg, record.args = "an answer to %s was not sent: the call had ended (deadline passed or client gone)", (method,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def quiet_undeliverable_answers() -> None:
    """Install :class:`_UndeliverableAnswer` on gRPC's core logger (idempotent)."""
    core = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, _UndeliverableAnswer) for f in core.filters):
        core.addFilter(_UndeliverableAnswer())


def end_if_expired(context: Any) -> None:
    """Raise CancelledError when the call's deadline has passed: gRPC has ended the call with
    DEADLINE_EXCEEDED itself, and an answer or status sent now would fail in core."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise asyncio.CancelledError


async def abort_call(context: Any, code: grpc.StatusCode, message: str) -> None:
    """End the call with ``code``, unless it has ended already.

    Once the deadline has passed, gRPC ends the call with DEADLINE_EXCEEDED itself, and so
    does a client that gives up at its deadline: sending a status then fails in gRPC's core,
    which logs it as an error ("ExecuteBatchError raised in core by servicer method"). The
    handler then just stops (a cancel, counted DEADLINE_EXCEEDED or CANCELLED by the time left).
    """
    end_if_expired(context)
    try:
        await context.abort(code, message)
    except ExecuteBatchError:  # the call ended while its status was being sent
        raise asyncio.CancelledError from None


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` metadata on every method but health checks.

    Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
    configured token (no early exit), so timing reveals neither the token nor which matched.
    """

    def __init__(self, tokens: Iterable[str], *, open_prefixes: tuple[str, ...] = OPEN_METHOD_PREFIXES):
        self._digests = tuple(_digest(t) for t in tokens)
        if not self._digests:
            raise ValueError("TokenAuthInterceptor needs at least one token")
        self._open = open_prefixes

    def authorized(self, metadata) -> bool:
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value
        if not isinstance(header, str) or not header.startswith("Bearer "):
            return False
        offered = _digest(header[len("Bearer "):].strip())
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(offered, digest)
        return ok

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._open):
            return handler
        if self.authorized(handler_call_details.invocation_metadata):
            return handler
        has_header = any(k == "authorization" for k, _ in handler_call_details.invocation_metadata or ())
        message = ("invalid bearer token" if has_header else
                   "missing bearer token: send metadata 'authorization: Bearer <token>'")
        log.info("rejected %s: %s", method, message)

        def unary(_behavior):
            async def reject(_request, context):
                await abort_call(context, grpc.StatusCode.UNAUTHENTICATED, message)
            return reject

        def stream(_behavior):
            async def reject(_request, context):
                await abort_call(context, grpc.StatusCode.UNAUTHENTICATED, message)
                yield  # pragma: no cover - makes this an async generator
            return reject

        return _wrap(handler, unary, stream)


def _code_name(context: Any) -> str | None:
    """The status code the handler set (abort, set_code) as a name, or None."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # some grpc versions keep the raw number
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate.name
    return None


# The client's clock starts a call's deadline before the server's does (the timeout travels in
# the request headers), so a client whose deadline passed cancels the call a moment before the
# server's own deadline: a cancel this close to the deadline is the deadline.
DEADLINE_SLACK_S = 0.1


def final_code(context: Any, error: BaseException | None) -> str:
    """The status an RPC ended with, from its handler's outcome.

    ``error`` is what the handler raised (None: it returned or its stream ended). A code the
    handler set (abort, set_code) wins. Otherwise gRPC cancels the handler's task when the
    call ends early, for a deadline and a client's cancel alike (``CancelledError``); the
    two differ by the time left: none (within ``DEADLINE_SLACK_S``) at the deadline. A
    handler that returned after its deadline had passed answered nobody: DEADLINE_EXCEEDED.
    """
    code = _code_name(context)
    if code is not None:
        return code
    remaining = context.time_remaining()
    if remaining is not None and remaining <= (0 if error is None else DEADLINE_SLACK_S):
        return "DEADLINE_EXCEEDED"
    if error is None:
        return "OK"
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return "CANCELLED"  # the client cancelled, or the server stopped past its grace
    return "UNKNOWN"  # what gRPC answers for an exception that set no status


@dataclass(frozen=True)
class InflightCall:
    """One RPC being handled: its method name, when it started and its deadline
    (``time.monotonic()`` seconds; None = the client set none)."""

    method: str
    started: float
    deadline: float | None


class InflightCalls:
    """The RPCs being handled now, with their deadlines (the drain sizes its grace by them).

    Used from the event loop only (the interceptor's begin and end, the drain's snapshot).
    """

    def __init__(self) -> None:
        self._calls: dict[object, InflightCall] = {}

    def begin(self, method: str, time_remaining: float | None) -> object:
        now = time.monotonic()
        token = object()
        self._calls[token] = InflightCall(method, now, None if time_remaining is None else now + time_remaining)
        return token

    def end(self, token: object) -> None:
        self._calls.pop(token, None)

    def snapshot(self) -> list[InflightCall]:
        return list(self._calls.values())


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Count every RPC once by method and final status code and time it (outermost interceptor).

    The code is the one the call ended with (see :func:`final_code`): OK, the code of an
    abort (INVALID_ARGUMENT, UNAUTHENTICATED, ...), DEADLINE_EXCEEDED for a deadline that
    passed (unary or stream), CANCELLED for a client that cancelled.

    A unary request whose handler never ran, because gRPC refused its message (larger than
    ``max_message_bytes``; the client was told RESOURCE_EXHAUSTED), is counted
    RESOURCE_EXHAUSTED when gRPC drops the call (rarely it is a client that went away while
    still sending its message). An oversized message on a stream ends the call as gRPC's
    cancel, counted CANCELLED: nothing here tells the two apart. Calls beyond
    ``max_concurrent_rpcs`` are refused before any interceptor runs and are not counted.
    """

    def __init__(self, metrics: ServerMetrics, calls: InflightCalls | None = None):
        self._metrics = metrics
        self._calls = calls

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        metrics, calls = self._metrics, self._calls
        # A stream of requests and responses is timed whole in stream_duration_seconds; its
        # handler times each item's answer (IdentifyStream: request_latency_seconds).
        latency = metrics.stream_duration if handler.stream_stream else metrics.latency

        def begin(context: Any) -> object:
            metrics.inflight.labels(method=method).inc()
            return None if calls is None else calls.begin(method, context.time_remaining())

        def record(start: float, context: Any, error: BaseException | None, token: object) -> None:
            metrics.requests.labels(method=method, code=final_code(context, error)).inc()
            latency.labels(method=method).observe(time.perf_counter() - start)
            metrics.inflight.labels(method=method).dec()
            if calls is not None:
                calls.end(token)

        ran = [False]  # the handler started (it runs only once the request message arrived)

        def never_ran() -> None:
            if not ran[0]:
                metrics.requests.labels(method=method, code="RESOURCE_EXHAUSTED").inc()

        def unary(behavior: Callable):
            async def timed(request, context):
                ran[0] = True
                start, error = time.perf_counter(), None
                token = begin(context)
                try:
                    return await behavior(request, context)
                except BaseException as raised:
                    error = raised
                    raise
                finally:
                    record(start, context, error, token)
            return timed

        def stream(behavior: Callable):
            async def timed(request, context):
                ran[0] = True
                start, error = time.perf_counter(), None
                token = begin(context)
                try:
                    async for item in _responses(behavior, request, context):
                        yield item
                except BaseException as raised:
                    error = raised
                    raise
                finally:
                    record(start, context, error, token)
            return timed

        wrapped = _wrap(handler, unary, stream)
        if not (handler.stream_unary or handler.stream_stream):  # a stream of requests starts its handler at once
            # gRPC lets go of the handler when the call is over, whether it ran or not.
            weakref.finalize(wrapped.unary_unary or wrapped.unary_stream, never_ran)
        return wrapped


async def _responses(behavior: Callable, request: Any, context: Any) -> AsyncIterator:
    """The responses of a stream-response behaviour: an async generator, or a coroutine that
    writes them with ``context.write()``."""
    result = behavior(request, context)
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result


class RequestParsingInterceptor(grpc.aio.ServerInterceptor):
    """Parse requests inside the handler, so a malformed message is INVALID_ARGUMENT.

    gRPC deserialises a request before the handler (and every interceptor's wrapper) runs,
    and answers UNKNOWN when that raises: random bytes, a truncated length, a string field
    that is not UTF-8. This interceptor, the innermost, gives gRPC a pass-through
    deserialiser and parses with :func:`denarius.serving.messages.parse_request` as the
    handler starts; a failure aborts with INVALID_ARGUMENT "request is not a valid
    denarius.v1.IdentifyRequest (57 bytes): field 2 (obverse) at byte 0 claims ...".
    Being inside the authentication interceptor, it parses nothing of an unauthenticated call.

    Streams of requests are parsed item by item. On a method listed in ``tolerant_streams``
    a bad item becomes a :class:`~denarius.serving.messages.MalformedRequest` that the
    handler answers with an error item (IdentifyStream: one bad message must not cost the
    answers to the others in flight); on any other stream it aborts the call.
    """

    def __init__(self, *, tolerant_streams: Iterable[str] = ()):
        self._tolerant = frozenset(tolerant_streams)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer
        tolerant = handler_call_details.method in self._tolerant

        async def parsed(raw: bytes, context: Any) -> Any:
            try:
                return parse_request(parse, raw)
            except InputError as error:
                log.info("%s: %s", handler_call_details.method, error)
                await abort_call(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))

        async def parsed_stream(raw_iterator: Any, context: Any) -> AsyncIterator:
            index = 0
            async for raw in raw_iterator:
                try:
                    yield parse_request(parse, raw)
                except InputError as error:
                    log.info("%s: message %d of the stream: %s", handler_call_details.method, index, error)
                    if not tolerant:
                        await abort_call(context, grpc.StatusCode.INVALID_ARGUMENT, f"message {index} of the stream: {error}")
                    yield MalformedRequest(error, index)
                index += 1

        serialize = handler.response_serializer
        if handler.unary_unary:
            behavior = handler.unary_unary

            async def unary_unary(raw, context):
                return await behavior(await parsed(raw, context), context)
            return grpc.unary_unary_rpc_method_handler(unary_unary, None, serialize)
        if handler.unary_stream:
            streaming = handler.unary_stream

            async def unary_stream(raw, context):
                async for item in _responses(streaming, await parsed(raw, context), context):
                    yield item
            return grpc.unary_stream_rpc_method_handler(unary_stream, None, serialize)
        if handler.stream_unary:
            consumer = handler.stream_unary

            async def stream_unary(raw_iterator, context):
                return await consumer(parsed_stream(raw_iterator, context), context)
            return grpc.stream_unary_rpc_method_handler(stream_unary, None, serialize)
        both = handler.stream_stream

        async def stream_stream(raw_iterator, context):
            async for item in _responses(both, parsed_stream(raw_iterator, context), context):
                yield item
        return grpc.stream_stream_rpc_method_handler(stream_stream, None, serialize)
