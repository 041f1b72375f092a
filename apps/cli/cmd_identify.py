"""``denarius identify (--server HOST:PORT | --bundle BUNDLE) OBVERSE REVERSE``.

Prints the ranked candidates as a table, or the IdentifyResponse as JSON with ``--json``.
With ``--bundle`` the same request runs in-process on a local bundle (no server), giving
the same response message. A side given as ``-`` was not photographed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXAMPLES = (
    'denarius identify --bundle bundles/v1 obverse.jpg reverse.jpg',
    'denarius identify --server 127.0.0.1:50051 obverse.jpg reverse.jpg --json',
)  # shown under `denarius identify --help`

def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--token-file/--token-env, --tls, --ca-cert, --server-name, --timeout (shared with landmarks)."""
    group = parser.add_argument_group("server connection (with --server)")
    tokens = group.add_mutually_exclusive_group()
    tokens.add_argument("--token-file", type=Path, help="file whose first token line is sent as the bearer token")
    tokens.add_argument("--token-env", metavar="VAR", help="environment variable holding the bearer token")
    group.add_argument("--tls", action="store_true", help="connect with TLS (system CA roots unless --ca-cert)")
    group.add_argument("--ca-cert", type=Path, help="PEM CA/self-signed certificate to trust (implies --tls)")
    group.add_argument("--server-name", help="expected TLS certificate host name, if not the --server host")
    group.add_argument("--timeout", type=float, default=30.0, help="deadline of the call in seconds (default 30)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", metavar="HOST:PORT", help="a running `denarius serve`")
    where.add_argument("--bundle", type=Path, help="run in-process on this local model bundle")
    parser.add_argument("obverse", help="obverse (portrait) photo, or - when not photographed")
    parser.add_argument("reverse", help="reverse photo, or - when not photographed")
    parser.add_argument("--top-k", type=int, default=5, help="candidates to show (default 5)")
    parser.add_argument("--json", action="store_true", help="print the response as JSON instead of a table")
    add_connection_arguments(parser)
    local = parser.add_argument_group("in-process (with --bundle)")
    local.add_argument("--backend", default="auto", help="auto, ort-cpu, openvino, ort-cuda or tensorrt")
    local.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"))


def client_from_args(args: argparse.Namespace):
    """A CoinClient for ``args.server`` with the connection options above."""
    from denarius.engine.errors import ConfigError
    from denarius.serving.client import CoinClient

    token = None
    if args.token_file is not None:
        from denarius.serving.server import load_tokens

        token = load_tokens(token_file=args.token_file)[0]
    elif args.token_env is not None:
        token = os.environ.get(args.token_env)
        if not token:
            raise ConfigError(f"environment variable {args.token_env} is not set or empty")
    return CoinClient(args.server, token=token, tls=args.tls, ca_cert=args.ca_cert,
                      server_name=args.server_name, timeout=args.timeout)


def rpc_error_message(error) -> str:
    """'CODE: details' of a grpc.RpcError, for `denarius <cmd>: error: ...`."""
    return f"{error.code().name}: {error.details()}"


def format_table(response) -> str:
    """A readable table of an IdentifyResponse."""
    lines = [
        f"model {response.model_version}, mode {response.mode}, "
        f"{response.timing.total_ms:.1f} ms, request {response.request_id}",
    ]
    if response.HasField("open_set_score"):
        verdict = "UNKNOWN: not in the catalogue (best guesses below)" if response.unknown else "in the catalogue"
        lines.append(f"open set: {verdict}, score {response.open_set_score:.4f}")
    if response.mode == "emperor":
        lines.append(f"{'#':>2}  {'emperor':<28} {'p(emperor|obverse)':>18}")
        for c in response.candidates:
            lines.append(f"{c.rank:>2}  {c.emperor:<28} {c.score:>18.4f}")
        return "\n".join(lines)
    width = max([len("RIC type")] + [len(c.ric) for c in response.candidates])
    lines.append(f"{'#':>2}  {'RIC type':<{width}}  {'emperor':<16} {'score':>8} {'p(ric|rev)':>10} {'p(emp|obv)':>10}")
    for c in response.candidates:
        p_emp = f"{c.p_emperor:.4f}" if c.HasField("p_emperor") else "-"
        p_ric = f"{c.p_ric:.4f}" if c.HasField("p_ric") else "-"
        lines.append(f"{c.rank:>2}  {c.ric:<{width}}  {c.emperor:<16} {c.score:>8.4f} {p_ric:>10} {p_emp:>10}")
    if response.candidates:
        best = response.candidates[0]
        if best.obverse_description:
            lines.append(f"obverse of #1: {best.obverse_description}")
        if best.reverse_description:
            lines.append(f"reverse of #1: {best.reverse_description}")
    return "\n".join(lines)


def to_json(message) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)


def _side(value: str) -> str | None:
    return None if value == "-" else value


def run(args: argparse.Namespace) -> int:
    from denarius.engine.errors import ConfigError, DenariusError

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    obverse, reverse = _side(args.obverse), _side(args.reverse)
    if obverse is None and reverse is None:
        raise ConfigError("give at least one photo (OBVERSE or REVERSE other than -)")
    if args.server is not None:
        import grpc

        try:
            with client_from_args(args) as client:
                response = client.identify(obverse, reverse, top_k=args.top_k)
        except grpc.RpcError as error:
            raise DenariusError(rpc_error_message(error)) from None
    else:
        from denarius.serving.messages import identify_request
        from denarius.serving.runtime import Runtime

        request = identify_request(obverse, reverse, top_k=args.top_k, request_id="local")
        received = time.perf_counter()
        runtime = Runtime.open(args.bundle, backend=args.backend,
                               precision=None if args.precision == "auto" else args.precision, warmup=False)
        try:
            result = runtime.identify_now(runtime.pair_from_request(request), top_k=args.top_k)
            response = runtime.identification_response(result, request_id="local", received=received)
        finally:
            runtime.close()
    sys.stdout.write((to_json(response) if args.json else format_table(response)) + "\n")
    return 0
