"""The ``--server`` mode of ``denarius landmarks``: ask a running server instead of a local bundle.

``apps/cli/cmd_landmarks.py`` (owned by the landmarks work) can call this as::

    from denarius.apps.cli import remote_landmarks
    remote_landmarks.add_arguments(parser)          # --server HOST:PORT + token/TLS/timeout options
    ...
    if args.server:
        return remote_landmarks.run(args, image=args.image, side=args.side, method=args.method,
                                    epsilon=args.epsilon, window=args.window, stride=args.stride,
                                    superpixels=args.superpixels, target=args.target,
                                    output=args.output, as_json=args.json)

``run`` prints a table (target, probabilities, top regions) or, with ``as_json``, the
LandmarksResponse as JSON (heatmap values left out unless ``include_heatmap``), and writes the
overlay PNG to ``output`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from denarius.apps.cli.cmd_identify import add_connection_arguments, client_from_args, rpc_error_message

__all__ = ["add_arguments", "fetch", "format_table", "run"]


def add_arguments(parser: argparse.ArgumentParser, *, add_server: bool = True) -> None:
    """Add ``--server HOST:PORT`` (unless the caller has its own) and the connection options."""
    if add_server:
        parser.add_argument("--server", metavar="HOST:PORT", help="ask a running `denarius serve` instead")
    add_connection_arguments(parser)


def fetch(args: argparse.Namespace, *, image, side: str, **options):
    """Call Landmarks on ``args.server``; options as ``CoinClient.landmarks``. Raises DenariusError."""
    import grpc

    from denarius.engine.errors import DenariusError

    try:
        with client_from_args(args) as client:
            return client.landmarks(image, side=side, **options)
    except grpc.RpcError as error:
        raise DenariusError(rpc_error_message(error)) from None


def format_table(response) -> str:
    """Readable summary of a LandmarksResponse."""
    from denarius.serving.denarius.v1 import coins_pb2

    method = coins_pb2.Method.Name(response.method).lower()
    lines = [f"model {response.model_version}, method {method}, regions {response.region_kind}, "
             f"{response.timing.total_ms:.0f} ms, request {response.request_id}"]
    masked = f", p(target | landmarks only) = {response.masked_probability:.4f}" if response.HasField(
        "masked_probability") else ""
    lines.append(f"target {response.target}: p(target | image) = {response.probability:.4f}{masked}")
    if method == "optimized":
        lines.append(f"epsilon {response.epsilon:g}, {response.iterations} iterations, "
                     f"{'converged' if response.converged else 'stopped at the cap'}")
    lines.append("class probabilities: " + ", ".join(f"{p.label} {p.probability:.3f}" for p in response.probabilities))
    lines.append(f"{'#':>2}  {'x':>4} {'y':>4} {'w':>4} {'h':>4}  score")
    for rank, region in enumerate(response.regions, start=1):
        lines.append(f"{rank:>2}  {region.x:>4} {region.y:>4} {region.width:>4} {region.height:>4}  {region.score:.4g}")
    return "\n".join(lines)


def run(
    args: argparse.Namespace,
    *,
    image,
    side: str,
    output: str | Path | None = None,
    as_json: bool = False,
    include_heatmap: bool = False,
    **options,
) -> int:
    """Fetch landmarks from ``args.server``, write the overlay PNG to ``output``, print; returns 0."""
    from google.protobuf import json_format

    response = fetch(args, image=image, side=side, overlay=output is not None, **options)
    if output is not None:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(response.overlay_png)
    if as_json:
        data = json_format.MessageToDict(response, preserving_proto_field_name=True)
        data.pop("overlay_png", None)
        if not include_heatmap:
            data.get("heatmap", {}).pop("data", None)
        if output is not None:
            data["overlay_path"] = str(output)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(format_table(response) + ("" if output is None else f"\noverlay written to {output}") + "\n")
    return 0
