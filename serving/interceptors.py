"""Server interceptors: bearer-token authentication and per-RPC metrics.

Both wrap the real method handler rather than replacing it, so a rejected streaming call is
still answered as a stream (a unary stand-in would wait for a request message first).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import grpc

from denarius.serving.metrics import ServerMetrics

__all__ = ["TokenAuthInterceptor", "MetricsInterceptor", "OPEN_METHOD_PREFIXES"]

log = logging.getLogger(__name__)

# Load balancers and orchestrators probe health without credentials.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def _digest(token: str | bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the token length.
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def _wrap(handler: grpc.RpcMethodHandler, wrap_unary, wrap_stream) -> grpc.RpcMethodHandler:
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
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            return reject

        def stream(_behavior):
            async def reject(_request, context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
                yield  # pragma: no cover - makes this an async generator
            return reject

        return _wrap(handler, unary, stream)


def _code_name(context, default: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # some grpc versions keep the raw number
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate.name
    return default


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Count every RPC by method and final status code and time it (outermost interceptor)."""

    def __init__(self, metrics: ServerMetrics):
        self._metrics = metrics

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        metrics = self._metrics

        def record(start: float, code: str) -> None:
            metrics.requests.labels(method=method, code=code).inc()
            metrics.latency.labels(method=method).observe(time.perf_counter() - start)
            metrics.inflight.labels(method=method).dec()

        def unary(behavior: Callable[..., Awaitable]):
            async def timed(request, context):
                start, code = time.perf_counter(), "UNKNOWN"
                metrics.inflight.labels(method=method).inc()
                try:
                    response = await behavior(request, context)
                    code = _code_name(context, "OK")
                    return response
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = _code_name(context, "UNKNOWN")
                    raise
                finally:
                    record(start, code)
            return timed

        def stream(behavior):
            async def timed(request, context):
                start, code = time.perf_counter(), "UNKNOWN"
                metrics.inflight.labels(method=method).inc()
                try:
                    result = behavior(request, context)
                    if hasattr(result, "__aiter__"):
                        async for item in result:
                            yield item
                    else:  # a handler that writes with context.write() and returns
                        await result
                    code = _code_name(context, "OK")
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = _code_name(context, "UNKNOWN")
                    raise
                finally:
                    record(start, code)
            return timed

        return _wrap(handler, unary, stream)
