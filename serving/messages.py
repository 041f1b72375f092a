"""Request messages built from photos, without grpc: the protobuf side of a client.

The gRPC client (``serving/client.py``) sends these; ``denarius identify --bundle`` answers
the same request in-process, so it needs protobuf but not grpcio.
"""

from __future__ import annotations

import os
from pathlib import Path

from denarius.engine.errors import InputError
from denarius.serving.denarius.v1 import coins_pb2

__all__ = ["Image", "read_image", "identify_request", "METHODS", "SIDES"]

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
