"""The HTTP/JSON API and the numismatist's web page, served beside gRPC in the same process.

``HttpFrontend(runtime, HttpConfig(...))`` serves ``POST /v1/identify``, ``POST /v1/landmarks``,
``GET /v1/model``, ``/healthz``, ``/readyz``, ``/openapi.json`` and the page at ``/`` (static
files in ``static/``, no build step). Requests become the gRPC request messages and go to
the same :class:`~denarius.serving.runtime.Runtime` methods as the gRPC servicer; errors get
their HTTP status from the one table in :mod:`denarius.serving.status`. Needs the ``serve``
extra (FastAPI, uvicorn, python-multipart).
"""

from denarius.serving.http.app import HttpApi, HttpConfig
from denarius.serving.http.frontend import HttpFrontend

__all__ = ["HttpApi", "HttpConfig", "HttpFrontend"]
