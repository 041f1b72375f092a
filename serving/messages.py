"""Request messages without grpc: built from photos (the client side) and parsed from wire
bytes (the server side).

The gRPC client (``serving/client.py``) sends these; ``denarius identify --bundle`` answers
the same request in-process, so it needs protobuf but not grpcio. The server parses every
request with :func:`parse_request` inside its handlers (``serving/interceptors.py``), so a
message that is not valid protobuf is an ``InputError`` (INVALID_ARGUMENT) that says which
message and where it broke, not gRPC's UNKNOWN.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from denarius.engine.errors import InputError
from denarius.serving.denarius.v1 import coins_pb2

__all__ = ["Image", "read_image", "identify_request", "METHODS", "SIDES",
           "parse_request", "message_name", "wire_problem", "MalformedRequest"]

Image = bytes | str | os.PathLike
METHODS = {"optimized": coins_pb2.OPTIMIZED, "occlusion": coins_pb2.OCCLUSION, "saliency": coins_pb2.SALIENCY}
SIDES = {"obverse": coins_pb2.OBVERSE, "reverse": coins_pb2.REVERSE}


def read_image(image: Image, *, side: str) -> bytes:
    """Encoded image bytes from bytes or a file path (the server decodes and validates)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    path = Path(image)
    try:
        return path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}", side=side) from None


def identify_request(
    obverse: Image | None = None, reverse: Image | None = None, *, top_k: int = 0, request_id: str = ""
) -> coins_pb2.IdentifyRequest:
    """Build an IdentifyRequest from image bytes or paths (None = side not sent)."""
    request = coins_pb2.IdentifyRequest(request_id=request_id, top_k=top_k)
    if obverse is not None:
        request.obverse = read_image(obverse, side="obverse")
    if reverse is not None:
        request.reverse = read_image(reverse, side="reverse")
    return request


# -- parsing requests ------------------------------------------------------------------------
_SCAN_FIELDS = 10_000  # wire_problem gives up after this many fields (it runs on the event loop)
_SCAN_DEPTH = 16


def message_name(message_class: Any) -> str:
    """The full protobuf name of a message class, or of the class a ``FromString`` belongs to
    ("denarius.v1.IdentifyRequest"); "protobuf message" when it has none."""
    owner = getattr(message_class, "__self__", message_class)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "")) or "protobuf message"


class _Broken(Exception):
    pass


def _varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    for end in range(pos, min(pos + 10, len(data))):
        byte = data[end]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, end + 1
        shift += 7
    if len(data) - pos >= 10:
        raise _Broken(f"{what} at byte {pos} is a varint longer than 10 bytes")
    raise _Broken(f"{what} at byte {pos} is cut off by the end of the message")


def _scan(data: bytes, descriptor: Any, depth: int, budget: list[int]) -> None:
    pos, end = 0, len(data)
    while pos < end:
        budget[0] -= 1
        if budget[0] < 0 or depth > _SCAN_DEPTH:
            return  # too long to walk on the event loop: no location, protobuf's reason only
        start = pos
        key, pos = _varint(data, pos, "a field tag")
        number, wire = key >> 3, key & 7
        field = descriptor.fields_by_number.get(number) if descriptor is not None else None
        name = f"field {number}" + (f" ({field.name})" if field is not None else "")
        if number == 0:
            raise _Broken(f"byte {start}: field number 0 is not allowed")
        if wire == 0:
            _, pos = _varint(data, pos, f"the value of {name}")
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise _Broken(f"{name} at byte {start} is cut off by the end of the message")
        elif wire == 2:
            length, pos = _varint(data, pos, f"the length of {name}")
            if length > end - pos:
                raise _Broken(f"{name} at byte {start} claims {length:,} bytes but only {end - pos:,} remain "
                              "(truncated, or not a protobuf message)")
            payload = data[pos : pos + length]
            pos += length
            if field is None:
                continue
            if field.type == FieldDescriptor.TYPE_STRING:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise _Broken(f"{name} at byte {start} is not valid UTF-8 ({error.reason} at its byte {error.start}); "
                                  "send binary data in a bytes field") from None
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                try:
                    _scan(payload, field.message_type, depth + 1, budget)
                except _Broken as inner:
                    raise _Broken(f"in {name} at byte {start}: {inner}") from None
        elif wire in (3, 4):
            raise _Broken(f"{name} at byte {start} uses the group wire type {wire} (not valid in these proto3 messages)")
        else:
            raise _Broken(f"{name} at byte {start} has the invalid wire type {wire}")


def wire_problem(data: bytes, descriptor: Any = None) -> str | None:
    """Where ``data`` first breaks the protobuf wire format (of ``descriptor``'s message, whose
    string fields must be UTF-8), or None when no break is found in its first fields."""
    try:
        _scan(bytes(data), descriptor, 0, [_SCAN_FIELDS])
    except _Broken as broken:
        return str(broken)
    return None


def parse_request(message_class: Any, data: bytes) -> Any:
    """Parse wire bytes as ``message_class`` (a message class or its ``FromString``).

    Raises:
        InputError: "request is not a valid denarius.v1.IdentifyRequest (57 bytes): field 2
            (obverse) at byte 0 claims 1,000 bytes but only 55 remain (...)".
    """
    parse = getattr(message_class, "FromString", message_class)
    try:
        return parse(data)
    except (DecodeError, ValueError, TypeError, RuntimeError) as error:
        owner = getattr(parse, "__self__", None)
        where = wire_problem(data, getattr(owner, "DESCRIPTOR", None))
        reason = str(error).split("': ", 1)[-1] if "Error parsing message" in str(error) else str(error)
        detail = where if where is not None else (reason or type(error).__name__)
        raise InputError(f"request is not a valid {message_name(parse)} ({len(data):,} bytes): {detail}") from None


class MalformedRequest:
    """Stands in a request stream for a message that did not parse: IdentifyStream answers it
    with an INVALID_ARGUMENT item, as it does any other bad coin, and the stream goes on.

    Attributes:
        error: the :class:`InputError` of :func:`parse_request`.
        index: its position in the stream (0-based).
    """

    request_id = ""

    def __init__(self, error: InputError, index: int):
        self.error, self.index = error, index

    def __repr__(self) -> str:
        return f"MalformedRequest(index={self.index}, error={str(self.error)!r})"
