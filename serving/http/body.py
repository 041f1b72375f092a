"""Reading a request body into a request message, within the server's message size limit.

The limit is the gRPC server's ``max_message_bytes``: a body that declares more
(``Content-Length``) is refused before a byte of it is read, and a chunked body is cut off
as soon as it passes the limit (HTTP 413, both). Multipart forms are parsed as they stream
in (Starlette's parser, files spooled to disk past 1 MiB); JSON bodies are read whole.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TypeVar

from google.protobuf.message import Message
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from denarius.engine.errors import Cancelled, InputError
from denarius.serving.http.convert import FORM_TYPES, JSON_TYPES, message_from_form, message_from_json
from denarius.serving.http.errors import HttpProblem

__all__ = ["read_message", "too_large"]

M = TypeVar("M", bound=Message)

MAX_FORM_FILES = 8
MAX_FORM_FIELDS = 64


def too_large(limit: int, size: int | None = None) -> HttpProblem:
    said = f"{size:,} bytes" if size is not None else "more"
    return HttpProblem(413, "RESOURCE_EXHAUSTED",
                       f"the request body is {said}, over this server's limit of {limit:,} bytes "
                       f"({limit / 2**20:.0f} MiB); send smaller photos")


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_large(limit)
            yield chunk
    except ClientDisconnect:
        raise Cancelled("the client went away while sending the request body") from None


async def read_message(request: Request, message: M, *, limit: int) -> M:
    """Fill ``message`` from the request body (JSON or a form), reading at most ``limit`` bytes.

    Raises:
        HttpProblem: 413 over the limit, 415 an unsupported content type.
        InputError: the body does not parse (names the field).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large(limit, int(declared))
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind in JSON_TYPES:
        body = b"".join([chunk async for chunk in _limited(request, limit)])
        return message_from_json(body, message)
    if kind not in FORM_TYPES:
        raise HttpProblem(415, "INVALID_ARGUMENT",
                          f"unsupported content type {kind or '(none)'!r}: send multipart/form-data (photos as file parts) "
                          "or application/json (photos as base64)")
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=MAX_FORM_FILES,
                             max_fields=MAX_FORM_FIELDS, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise InputError(f"the multipart body does not parse: {error.message}") from None
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    try:
        for name, value in form.multi_items():
            if name in fields or name in files:
                raise InputError(f"form field {name!r} is given twice")
            if isinstance(value, UploadFile):
                content = await value.read()
                if content or value.filename:  # an empty file input sends a nameless, empty part
                    files[name] = content
            else:
                fields[name] = value
    finally:
        await form.close()
    return message_from_form(fields, files, message)
