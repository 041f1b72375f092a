"""Log lines a client cannot forge: request ids checked, client text escaped, JSON on request.

A client chooses its ``request_id`` and other strings that reach the server's log (a target
label in an error message, an HTTP path). Three things keep them from writing log lines of
their own:

- :func:`check_request_id`: an id is at most :data:`MAX_REQUEST_ID_CHARS` characters, all
  printable (``str.isprintable``: no control characters, no line or paragraph separators,
  no bidi overrides, no spaces but U+0020). The servicer refuses any other id with
  INVALID_ARGUMENT (the message says which rule and where) and logs the call under an id of
  its own, with the offered one shown by :func:`preview` (escaped, cut to 40 characters).
- :func:`escape`: every non-printable character as its Python escape (``\\n``, ``\\x1b``,
  ``\\u202e``); printable text is unchanged.
- The formatters below apply :func:`escape` to every record's message, whatever logged it,
  and indent each line of a traceback, so no line the log holds can start with client text.
  :class:`JsonFormatter` writes one JSON object per line (``time``, ``level``, ``logger``,
  ``message``, ``request_id`` where known, ``exception``).

The request being handled is known through :data:`current_request_id`, a context variable
the servicer sets in each call's task (asyncio copies it into the tasks that call starts).
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging

from denarius.engine.errors import InputError

__all__ = ["MAX_REQUEST_ID_CHARS", "check_request_id", "escape", "preview", "current_request_id",
           "TextFormatter", "JsonFormatter", "LOG_FORMATS", "configure_logging"]

MAX_REQUEST_ID_CHARS = 128
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("denarius_request_id", default=None)


def escape(text: str) -> str:
    """``text`` with every non-printable character written as its Python escape sequence."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def preview(text: str, limit: int = 40) -> str:
    """A short, escaped, quoted view of a client string for a log line: ``'ab\\ncd'`` or
    ``'abcd...' (1048576 characters)``."""
    if len(text) <= limit:
        return f"'{escape(text)}'"
    return f"'{escape(text[:limit])}...' ({len(text)} characters)"


def check_request_id(request_id: str) -> str:
    """``request_id`` if it is at most MAX_REQUEST_ID_CHARS printable characters.

    Raises:
        InputError: too long, or a non-printable character (the message names it, escaped,
        and its position; it never repeats the id itself).
    """
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InputError(f"request_id is {len(request_id)} characters long; at most {MAX_REQUEST_ID_CHARS} are allowed")
    if not request_id.isprintable():
        index, char = next((i, c) for i, c in enumerate(request_id) if not c.isprintable())
        raise InputError(f"request_id holds a non-printable character ({escape(char)}) at position {index}; "
                         "use printable characters only (letters, digits, punctuation, spaces)")
    return request_id


def _indented(block: str) -> str:
    return "\n".join("    " + escape(line) for line in block.splitlines())


class TextFormatter(logging.Formatter):
    """The usual ``time LEVEL logger: message`` line, message escaped, tracebacks indented."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None):
        super().__init__(fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(stack_info)


class JsonFormatter(logging.Formatter):
    """One JSON object per record and line: time (UTC, ISO 8601), level, logger, message,
    request_id (when a call is being handled), exception and stack (when present)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True)


def configure_logging(*, level: int = logging.INFO, log_format: str = "text") -> None:
    """Send the root logger's records to stderr in ``log_format`` ("text" or "json")."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {LOG_FORMATS}, got {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler])
