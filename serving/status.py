"""denarius.engine.errors -> gRPC status codes: the one place where that mapping lives.

A client acts on the code (retry, back off, fix the input), so the mapping follows the
gRPC status code guide:

==================== ===================== ==================================================
error                code                  what the client should do
==================== ===================== ==================================================
InputError           INVALID_ARGUMENT      fix the request (the message names the side)
ConfigError          INVALID_ARGUMENT      fix the parameter
Overloaded           RESOURCE_EXHAUSTED    back off and retry, or go to another replica
DeadlineExceeded     DEADLINE_EXCEEDED     retry with a longer deadline
Cancelled            CANCELLED             the caller gave up; long work stopped early
BatcherClosed        UNAVAILABLE           this replica is shutting down: retry elsewhere
BackendUnavailable   UNAVAILABLE           not loaded yet, or another replica has the backend
UnsupportedOpError   UNIMPLEMENTED         this bundle cannot run that method
BundleError          FAILED_PRECONDITION   the bundle lacks a file the request needs
ManifestError        FAILED_PRECONDITION   (not expected at serving time)
anything else        INTERNAL              report the request id in the message
==================== ===================== ==================================================
"""

from __future__ import annotations

import grpc

from denarius.engine.errors import (
    BackendUnavailable,
    BatcherClosed,
    BundleError,
    Cancelled,
    ConfigError,
    DeadlineExceeded,
    DenariusError,
    InputError,
    ManifestError,
    Overloaded,
    UnsupportedOpError,
)

__all__ = ["status_for", "internal_message", "STATUS_BY_ERROR"]

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
)


def status_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception; INTERNAL for anything unexpected."""
    if isinstance(error, DenariusError):
        for kind, code in STATUS_BY_ERROR:
            if isinstance(error, kind):
                return code
    return grpc.StatusCode.INTERNAL


def internal_message(request_id: str) -> str:
    """The client-facing message of an unexpected failure (details stay in the server log)."""
    return f"internal error while handling request {request_id}; the server log has the details under this id"
