"""Prometheus accounting of HTTP requests: an ASGI middleware around the whole application.

Every request the frontend answers is counted once, when its answer has been sent (or the
application failed), in the server's registry (:class:`denarius.serving.metrics.ServerMetrics`):

- ``denarius_http_requests_total{route, status}``: ``route`` is the HTTP method and the
  route's template (``"POST /v1/identify"``, ``"GET /v1/guidebook/{label}"``, ``"GET /static"``),
  never the raw path, so a client cannot create series; a path no route matches is
  ``"unmatched"``. ``status`` is the HTTP status sent (``"200"``, ``"429"``; ``"500"``
  when the application raised before answering).
- ``denarius_http_request_latency_seconds{route}``: from the request's arrival at the
  application to the last part of its answer (recorded just before that part is handed to
  the server, so a client holding its answer finds it counted).
- ``denarius_http_inflight_requests``: requests being handled now (the route is known only
  once the router has matched, so this one has no label).

They mirror the gRPC series (``denarius_requests_total{method, code}``,
``denarius_request_latency_seconds{method}``, ``denarius_inflight_requests{method}``):
``route`` plays the part of the RPC name and ``status`` that of the gRPC code.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["RequestMetrics", "route_label"]

# Methods with a label of their own; anything else a client sends is counted as OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATIC_PREFIX = "/static/"


def route_label(scope: dict) -> str:
    """``"<METHOD> <route template>"`` of a routed request, ``"unmatched"`` when no route took it."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None and scope.get("path", "").startswith(_STATIC_PREFIX):
        template = "/static"  # the StaticFiles mount sets no route object
    if template is None:
        return "unmatched"
    method = scope.get("method", "GET")
    return f"{method if method in _METHODS else 'OTHER'} {template}"


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request (see the module docstring).

    Args:
        app: the ASGI application (the routes, their exception handlers inside).
        metrics: the :class:`~denarius.serving.metrics.ServerMetrics` to record into.
    """

    def __init__(self, app: Any, *, metrics: Any):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent: dict[str, int] = {}
        recorded = False
        self.metrics.http_inflight.inc()

        def record() -> None:
            nonlocal recorded
            recorded = True
            self.metrics.http_inflight.dec()
            route = route_label(scope)  # the router has written its match into this scope
            self.metrics.http_requests.labels(route=route, status=str(sent.get("status", 500))).inc()
            self.metrics.http_latency.labels(route=route).observe(time.perf_counter() - started)

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not recorded:
                # Counted before the last byte leaves: a client that has its answer sees it counted.
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if not recorded:  # the application raised, or the client left, before the answer's end
                record()
