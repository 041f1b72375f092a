"""denarius.engine.errors -> gRPC status codes (and their HTTP statuses): the one place
where that mapping lives.

A client acts on the code (retry, back off, fix the input), so the mapping follows the
gRPC status code guide; the HTTP/JSON API (``serving/http/``) answers the same code's
HTTP status, as Google's ``google.rpc.Code`` mapping gives it:

==================== ===================== ==== ==============================================
error                code                  HTTP what the client should do
==================== ===================== ==== ==============================================
InputError           INVALID_ARGUMENT      400  fix the request (the message names the side)
ConfigError          INVALID_ARGUMENT      400  fix the parameter
Overloaded           RESOURCE_EXHAUSTED    429  back off and retry, or go to another replica
DeadlineExceeded     DEADLINE_EXCEEDED     504  retry with a longer deadline
Cancelled            CANCELLED             499  the caller gave up; long work stopped early
BatcherClosed        UNAVAILABLE           503  this replica is shutting down: retry elsewhere
BackendUnavailable   UNAVAILABLE           503  not loaded yet, or another replica has the backend
UnsupportedOpError   UNIMPLEMENTED         501  this bundle cannot run that method
BundleError          FAILED_PRECONDITION   400  the bundle lacks a file the request needs
ManifestError        FAILED_PRECONDITION   400  (not expected at serving time)
NotFound             NOT_FOUND             404  no such watchlist specimen: list them
AlreadyExists        ALREADY_EXISTS        409  that specimen id is listed: remove it first
anything else        INTERNAL              500  report the request id in the message
==================== ===================== ==== ==============================================

Two answers come from the transports themselves, not from this table: a bad or missing
bearer token (UNAUTHENTICATED, HTTP 401) and a message over the size limit
(RESOURCE_EXHAUSTED in gRPC, HTTP 413).
"""

from __future__ import annotations

import grpc

from denarius.engine.errors import (
    AlreadyExists,
    BackendUnavailable,
    BatcherClosed,
    BundleError,
    Cancelled,
    ConfigError,
    DeadlineExceeded,
    DenariusError,
    InputError,
    ManifestError,
    NotFound,
    Overloaded,
    UnsupportedOpError,
)

__all__ = ["status_for", "http_status_for", "internal_message", "STATUS_BY_ERROR", "HTTP_BY_CODE"]

# Most specific first: the first isinstance match wins.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BatcherClosed, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Cancelled, grpc.StatusCode.CANCELLED),
    (BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (UnsupportedOpError, grpc.StatusCode.UNIMPLEMENTED),
    (BundleError, grpc.StatusCode.FAILED_PRECONDITION),
    (ManifestError, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
)


def status_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception; INTERNAL for anything unexpected."""
    if isinstance(error, DenariusError):
        for kind, code in STATUS_BY_ERROR:
            if isinstance(error, kind):
                return code
    return grpc.StatusCode.INTERNAL


# google.rpc.Code's HTTP mapping (googleapis/google/rpc/code.proto), for every gRPC code.
HTTP_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def http_status_for(error: BaseException) -> tuple[int, grpc.StatusCode]:
    """The HTTP status of an exception and the gRPC code it comes from (500/INTERNAL if unexpected)."""
    code = status_for(error)
    return HTTP_BY_CODE[code], code


def internal_message(request_id: str) -> str:
    """The client-facing message of an unexpected failure (details stay in the server log)."""
    return f"internal error while handling request {request_id}; the server log has the details under this id"
