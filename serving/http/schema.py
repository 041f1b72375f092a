"""JSON Schemas of the API's messages, derived from their protobuf descriptors.

The HTTP/JSON API speaks the proto3 JSON mapping of the gRPC messages
(``google.protobuf.json_format``), so the schemas in its OpenAPI document are generated from
the same descriptors and cannot drift from the ``.proto`` files:

- :func:`message_schemas`: ``{name: schema}`` for a message and every message it contains,
  as OpenAPI ``components/schemas`` (references ``#/components/schemas/<Name>``);
- :func:`form_schema`: the ``multipart/form-data`` form of a request message, bytes fields
  as file parts and nested fields flattened to dotted names (``windows.size``).

Field names are the proto names (``top_k``); the parser also accepts lowerCamelCase.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["message_schemas", "form_schema", "ref"]

_INTEGER_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
          FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}


def ref(descriptor: Descriptor) -> dict[str, str]:
    """A reference to a message's schema in ``components/schemas``."""
    return {"$ref": f"#/components/schemas/{descriptor.name}"}


def _scalar(field: FieldDescriptor, *, request: bool) -> dict[str, Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return {"type": "string"}
    if kind == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "format": "byte"}  # base64
    if kind == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return {"type": "number"}
    if kind in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[kind]
        return {"type": "integer", "minimum": low, "maximum": high}
    if kind in _INT64:
        return {"type": ["string", "integer"]}  # the JSON mapping writes 64-bit integers as strings
    if kind == FieldDescriptor.TYPE_ENUM:
        names = [value.name for value in field.enum_type.values]
        if request:  # a request may name the value or give its number
            return {"anyOf": [{"type": "string", "enum": names}, {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}]}
        return {"type": "string", "enum": names}
    raise ValueError(f"no JSON schema for field type {kind} of {field.full_name}")


def _field(field: FieldDescriptor, *, request: bool) -> dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _field(value, request=request)}
    one = ref(field.message_type) if field.type == FieldDescriptor.TYPE_MESSAGE else _scalar(field, request=request)
    if _is_repeated(field):
        return {"type": "array", "items": one}
    return one


def _is_repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 6 (label is deprecated there)
    return bool(repeated) if repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED


def message_schemas(descriptor: Descriptor, *, request: bool) -> dict[str, dict[str, Any]]:
    """``{message name: JSON schema}`` of ``descriptor`` and of every message it contains.

    Args:
        request: a request schema rejects unknown fields (the parser does) and accepts
            enum numbers; a response schema allows fields a newer server may add.
    """
    out: dict[str, dict[str, Any]] = {}
    pending = [descriptor]
    while pending:
        message = pending.pop()
        if message.name in out:
            continue
        out[message.name] = {
            "type": "object",
            "properties": {field.name: _field(field, request=request) for field in message.fields},
            "additionalProperties": not request,
        }
        for field in message.fields:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                nested = field.message_type
                if nested.GetOptions().map_entry:
                    nested = nested.fields_by_name["value"].message_type
                if nested is not None:
                    pending.append(nested)
    return out


def form_schema(descriptor: Descriptor) -> dict[str, Any]:
    """The ``multipart/form-data`` schema of a request message (files for bytes fields)."""
    properties: dict[str, Any] = {}

    def add(message: Descriptor, prefix: str) -> None:
        for field in message.fields:
            name = prefix + field.name
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if field.message_type.fields:
                    add(field.message_type, name + ".")
                else:  # an empty message (Pixels): present or not
                    properties[name] = {"type": "boolean"}
            elif field.type == FieldDescriptor.TYPE_BYTES:
                properties[name] = {"type": "string", "format": "binary"}
            else:
                properties[name] = _scalar(field, request=True)

    add(descriptor, "")
    return {"type": "object", "properties": properties, "additionalProperties": False}
