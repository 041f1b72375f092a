"""Error answers of the HTTP API: one JSON body for every failure.

Every error is ``{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "...",
"request_id": "..."}}`` (Google's JSON error shape), with the HTTP status in ``code`` and
the gRPC status name in ``status``. The project's errors get their status from the one
table in :mod:`denarius.serving.status` (:func:`~denarius.serving.status.http_status_for`);
:class:`HttpProblem` carries the answers that belong to HTTP itself (a missing token, a
body over the size limit, too many requests in flight, an unknown path).
"""

from __future__ import annotations

import logging
import re

from fastapi.responses import JSONResponse

from denarius.engine.errors import DenariusError
from denarius.serving.status import http_status_for, internal_message

__all__ = ["HttpProblem", "error_response", "response_for", "request_id_headers", "ERROR_SCHEMA", "RETRY_AFTER_S"]

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # the Retry-After of a 429 / 503: the queues drain in well under a second
_HEADER_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "status", "message"],
            "properties": {
                "code": {"type": "integer", "description": "the HTTP status"},
                "status": {"type": "string", "description": "the gRPC status name, e.g. INVALID_ARGUMENT"},
                "message": {"type": "string", "description": "what was wrong and what to do about it"},
                "request_id": {"type": "string", "description": "the id the server log has this request under"},
            },
        },
    },
}


def request_id_headers(request_id: str) -> dict[str, str]:
    """``X-Request-Id`` when the id can travel in a header (a client may choose any UTF-8
    id in the body; the body always carries it)."""
    return {"X-Request-Id": request_id} if _HEADER_SAFE.fullmatch(request_id) else {}


class HttpProblem(Exception):
    """A failure the HTTP layer answers itself (401, 404, 405, 413, 429, ...)."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, dict(headers or {})


def error_response(status: int, code: str, message: str, *, request_id: str = "",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body with its status (a 429 or 503 says when to retry)."""
    body = {"code": status, "status": code, "message": message}
    extra = request_id_headers(request_id) | dict(headers or {})
    if request_id:
        body["request_id"] = request_id
    if status in (429, 503):
        extra.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse({"error": body}, status_code=status, headers=extra)


def response_for(error: BaseException, request_id: str) -> JSONResponse:
    """The answer to an exception a handler raised: the status table for Denarius errors,
    500 with the request id (the traceback goes to the log) for anything else."""
    if isinstance(error, HttpProblem):
        return error_response(error.status, error.code, str(error), request_id=request_id, headers=error.headers)
    status, code = http_status_for(error)
    if isinstance(error, DenariusError) and status != 500:
        log.info("request %s: %s: %s", request_id, code.name, error)
        return error_response(status, code.name, str(error), request_id=request_id)
    log.error("request %s failed unexpectedly", request_id, exc_info=error)
    return error_response(500, "INTERNAL", internal_message(request_id), request_id=request_id)
