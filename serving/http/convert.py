"""HTTP bodies <-> the gRPC messages: the HTTP API has no request or response types of its own.

A request body is either the proto3 JSON mapping of the request message (bytes fields as
base64: ``{"obverse": "/9j/4AAQ...", "top_k": 3}``) or a ``multipart/form-data`` form whose
file parts fill the bytes fields and whose other parts are the scalar fields (nested ones
by dotted name, ``windows.size``). Either becomes the very message a gRPC client sends, for
the same :class:`~denarius.serving.runtime.Runtime` methods; the response message goes back
through :func:`message_json`. Anything that does not parse is an ``InputError`` (HTTP 400)
that says which field.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from denarius.engine.errors import InputError

__all__ = ["message_from_json", "message_from_form", "message_json", "JSON_TYPES", "FORM_TYPES"]

JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data",)
_TRUE, _FALSE = ("true", "1", "on", "yes", ""), ("false", "0", "off", "no")

M = TypeVar("M", bound=Message)


def _parse_dict(data: Any, message: M) -> M:
    if not isinstance(data, dict):
        raise InputError(f"the request body must be a JSON object ({message.DESCRIPTOR.name}), not {type(data).__name__}")
    try:
        return json_format.ParseDict(data, message, max_recursion_depth=16)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError, RecursionError) as error:
        raise InputError(f"not a valid {message.DESCRIPTOR.name}: {error}") from None


def message_from_json(body: bytes, message: M) -> M:
    """Parse a proto3-JSON body into ``message``.

    Raises:
        InputError: not UTF-8 JSON, not an object, an unknown field, a wrong type, bad base64.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise InputError("the request body is JSON nested too deeply") from None
    return _parse_dict(data, message)


def _field_path(descriptor: Descriptor, name: str) -> list[FieldDescriptor]:
    """The fields a dotted form name walks through ("windows.size" -> [windows, size])."""
    path: list[FieldDescriptor] = []
    message: Descriptor | None = descriptor
    for part in name.split("."):
        field = None
        if message is not None:
            field = message.fields_by_name.get(part) or next(
                (f for f in message.fields if f.json_name == part), None)
        if field is None:
            valid = ", ".join(sorted(f.name for f in descriptor.fields))
            raise InputError(f"unknown form field {name!r} for {descriptor.name}; valid: {valid}")
        path.append(field)
        message = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    return path


def _form_value(field: FieldDescriptor, name: str, value: str) -> Any:
    """A form string as the JSON value the field takes (json_format parses numbers in strings)."""
    if field.type == FieldDescriptor.TYPE_BOOL or field.type == FieldDescriptor.TYPE_MESSAGE:
        lowered = value.strip().lower()
        if lowered not in _TRUE + _FALSE:
            raise InputError(f"form field {name!r} must be true or false, got {value[:40]!r}")
        if field.type == FieldDescriptor.TYPE_BOOL:
            return lowered in _TRUE
        return {} if lowered in _TRUE else None  # an empty message (Pixels): present or not
    return value


def message_from_form(fields: Mapping[str, str], files: Mapping[str, bytes], message: M) -> M:
    """Fill ``message`` from a form: ``files`` for its bytes fields, ``fields`` for the rest.

    Raises:
        InputError: an unknown field, a value that does not parse, a file for a non-bytes
            field or text for a bytes field.
    """
    descriptor = message.DESCRIPTOR
    data: dict[str, Any] = {}
    for name, value in fields.items():
        path = _field_path(descriptor, name)
        leaf = path[-1]
        if leaf.type == FieldDescriptor.TYPE_BYTES:
            raise InputError(f"form field {name!r} must be a file part (filename set), not text")
        if leaf.type == FieldDescriptor.TYPE_MESSAGE and leaf.message_type.fields:
            raise InputError(f"form field {name!r} is a message: give its fields as {name}.<field>")
        converted = _form_value(leaf, name, value)
        if converted is None:
            continue
        node = data
        for field in path[:-1]:
            child = node.setdefault(field.name, {})
            if not isinstance(child, dict):
                raise InputError(f"form field {name!r} conflicts with {field.name!r}")
            node = child
        node[leaf.name] = converted
    for name in files:
        path = _field_path(descriptor, name)
        if len(path) != 1 or path[0].type != FieldDescriptor.TYPE_BYTES:
            raise InputError(f"form field {name!r} is not an image field; image fields: "
                             + ", ".join(f.name for f in descriptor.fields if f.type == FieldDescriptor.TYPE_BYTES))
    parsed = _parse_dict(data, message)
    for name, content in files.items():
        setattr(parsed, _field_path(descriptor, name)[0].name, content)
    return parsed


def message_json(message: Message) -> dict[str, Any]:
    """A response message as proto3 JSON: proto field names, defaults included, enums by name,
    bytes as base64; fields with presence (``p_ric``, ``masked_probability``) only when set."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
